"""The escalation ladder of a clock: what comes after each step, and when.

A running clock climbs, one step at a time:

1. ``warning``   at its warn time (``warn_at_fraction`` of its time, computed with the deadline);
2. ``overdue``   at its deadline;
3. ``chase``     (催办) the policy's ``chase_after`` after the deadline;
4. ``supervise`` (督办) the policy's ``supervise_after`` after the chase; a supervised case also
   goes on the county leadership stream, in the same transaction (no further delay).

Each step is scheduled from the time its predecessor was *scheduled for*, never from when it
fired: a scheduler that was down does not push the ladder back, it fires the missed steps late
and says how late. Stopping the clock (accepted, resolved; for a whistle clock the receipt, the
reply or the case's closing) cancels whatever step is pending.

Plain functions: no database, no clock. ``BusinessCalendar`` is itself pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from services.escalation.calendar import BusinessCalendar, UncoveredYearError
from services.escalation.deadlines import add_duration
from services.escalation.policies import DeadlinePolicy, Duration

Step = Literal["warning", "overdue", "chase", "supervise"]
LADDER: tuple[Step, ...] = ("warning", "overdue", "chase", "supervise")


@dataclass(frozen=True)
class PlannedStep:
    step: Step
    due_at: datetime
    # Set when the calendar lacked a year the step reaches into (counted Monday to Friday).
    provisional_reason: str | None = None


def first_step(warn_at: datetime) -> PlannedStep:
    """The step a newly started clock waits for: its warning."""
    return PlannedStep("warning", warn_at)


def next_step(
    step: Step,
    scheduled_for: datetime,
    *,
    due_at: datetime,
    policy: DeadlinePolicy,
    calendar: BusinessCalendar,
) -> PlannedStep | None:
    """The step after ``step`` (which was scheduled for ``scheduled_for``) of a clock due at
    ``due_at`` under ``policy``; None after the last."""
    if step == "warning":
        return PlannedStep("overdue", due_at)
    if step == "overdue":
        return _after("chase", scheduled_for, policy.chase_after, calendar)
    if step == "chase":
        return _after("supervise", scheduled_for, policy.supervise_after, calendar)
    return None


def lateness(scheduled_for: datetime, fired_at: datetime) -> int:
    """Whole seconds a step fired after it was scheduled for; 0 if not after."""
    return max(0, int((fired_at - scheduled_for) // timedelta(seconds=1)))


def _after(step: Step, start: datetime, delay: Duration, calendar: BusinessCalendar) -> PlannedStep:
    try:
        return PlannedStep(step, add_duration(start, delay, calendar))
    except UncoveredYearError as exc:
        # As for deadlines: counted Monday to Friday and flagged, never lost.
        return PlannedStep(step, add_duration(start, delay, calendar.provisional()), str(exc))
