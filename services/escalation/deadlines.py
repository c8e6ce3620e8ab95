"""Deadline arithmetic: when a clock started at ``start`` under a policy falls due.

Working days are Monday to Friday in the county's time zone; the State Council holiday
calendar with its make-up working days (调休) is not applied yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.escalation.policies import DeadlinePolicy, Duration


@dataclass(frozen=True)
class ComputedDeadline:
    kind: str
    due_at: datetime
    warn_at: datetime


def add_duration(start: datetime, duration: Duration, zone: ZoneInfo) -> datetime:
    if duration.unit == "hours":
        return start + timedelta(hours=duration.amount)
    local = start.astimezone(zone)
    whole_days = int(duration.amount)
    day = local
    while day.weekday() >= 5:  # a clock started at the weekend runs from Monday
        day = (day + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    added = 0
    while added < whole_days:
        day += timedelta(days=1)
        if day.weekday() < 5:
            added += 1
    return day.astimezone(start.tzinfo)


def deadlines_for(
    policy: DeadlinePolicy, start: datetime, zone: ZoneInfo
) -> list[ComputedDeadline]:
    computed = []
    for kind, duration in (
        ("first_response", policy.first_response),
        ("resolution", policy.resolution),
    ):
        due = add_duration(start, duration, zone)
        warn = start + (due - start) * policy.warn_at_fraction
        computed.append(ComputedDeadline(kind, due, warn))
    return computed
