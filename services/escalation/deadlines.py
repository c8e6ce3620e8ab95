"""Deadline arithmetic: when a clock started at ``start`` under a policy falls due.

Durations in hours are natural time: an emergency does not wait for Monday. Durations in working
days follow the county's business calendar (``services/escalation/calendar.py``): the State
Council's holidays and make-up working days (调休), the county's working hours and time zone. A
clock started outside working hours counts from the next working time, and N working days fall
due at that local time on the N-th following working day. A deadline that needs a year the
calendar does not cover raises ``UncoveredYearError`` in the calendar; :func:`deadlines_for`
then counts Monday to Friday for that year and marks the deadline provisional, with the reason,
so that it is visible on the deadline, in its event and in a metric instead of being guessed
silently or lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.escalation.calendar import BusinessCalendar, UncoveredYearError
from services.escalation.policies import DeadlinePolicy, Duration


@dataclass(frozen=True)
class ComputedDeadline:
    kind: str
    due_at: datetime
    warn_at: datetime
    provisional_reason: str | None = None


def add_duration(start: datetime, duration: Duration, calendar: BusinessCalendar) -> datetime:
    if duration.unit == "hours":
        return start + timedelta(hours=duration.amount)
    return calendar.add_working_days(start, int(duration.amount))


def warn_time(
    start: datetime, duration: Duration, fraction: float, calendar: BusinessCalendar
) -> datetime:
    """When ``fraction`` of the duration has passed, measured the way the duration is.

    For working days that is working time: 75 % of seven working days across the Spring
    Festival must not fall on a holiday night before any work was possible.
    """
    if duration.unit == "hours":
        return start + timedelta(hours=duration.amount) * fraction
    return calendar.add_working_time(
        start, calendar.working_day_length * int(duration.amount) * fraction
    )


def deadlines_for(
    policy: DeadlinePolicy, start: datetime, calendar: BusinessCalendar
) -> list[ComputedDeadline]:
    return [
        deadline_for(kind, start, duration, policy.warn_at_fraction, calendar)
        for kind, duration in (
            ("first_response", policy.first_response),
            ("resolution", policy.resolution),
        )
    ]


REFERRAL_ACCEPTANCE = "referral_acceptance"
"""移送: the township's acceptance of a case a county department referred to it."""
ASSISTANCE_RESPONSE = "assistance_response"
"""协助: the township unit's response to a department's request for assistance."""
ANSWER_KINDS = (REFERRAL_ACCEPTANCE, ASSISTANCE_RESPONSE)
"""Clocks the township answers within the policy's first-response time, from the request."""


def answer_deadline(
    kind: str, policy: DeadlinePolicy, start: datetime, calendar: BusinessCalendar
) -> ComputedDeadline:
    """A clock of :data:`ANSWER_KINDS`: due the policy's first-response time after ``start``."""
    return deadline_for(kind, start, policy.first_response, policy.warn_at_fraction, calendar)


LEGAL_REVIEW = "legal_review"
"""法制审核: a legal reviewer's approval or return of a major penalty decision."""


def legal_review_deadline(
    policy: DeadlinePolicy, start: datetime, calendar: BusinessCalendar
) -> ComputedDeadline:
    """A legal review's clock: due the policy's ``legal_review`` time after its request."""
    return deadline_for(LEGAL_REVIEW, start, policy.legal_review, policy.warn_at_fraction, calendar)


def deadline_for(
    kind: str, start: datetime, duration: Duration, fraction: float, calendar: BusinessCalendar
) -> ComputedDeadline:
    """One clock of ``duration`` from ``start``, warned at ``fraction`` of it."""
    try:
        due = add_duration(start, duration, calendar)
        warn = warn_time(start, duration, fraction, calendar)
        reason = None
    except UncoveredYearError as exc:
        provisional = calendar.provisional()
        due = add_duration(start, duration, provisional)
        warn = warn_time(start, duration, fraction, provisional)
        reason = str(exc)
    return ComputedDeadline(kind, due, warn, reason)


def stop_outcome(due_at: datetime, stopped_at: datetime) -> tuple[str, int]:
    """``("met", 0)`` when stopped by its due time, else ``("late", seconds late)``."""
    late = stopped_at - due_at
    if late <= timedelta(0):
        return "met", 0
    return "late", int(late.total_seconds())
