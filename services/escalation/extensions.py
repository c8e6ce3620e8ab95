"""Extensions (延期): the rules for asking more time on a running clock and for granting it.

The acting unit asks for a later deadline, either a date (``requested_due_at``) or a number of
working days added to the deadline in force (``extra_working_days``, counted on the business
calendar). The township's command centre or a county supervisor decides. An approval moves the
clock's deadline and its warning; the pending ladder step is cancelled and the moved clock
climbs its ladder again from the step the new times call for.

- Only a running clock can be extended, and only to a deadline later than the one in force and
  still in the future.
- A clock has at most one pending request; a decided request is never decided again.
- The warning keeps its lead before the deadline: moved by the same working days when the
  extension is given in working days, by the same natural time when it is given as a date.
- A summoned department replies within the case's resolution deadline: the running reply
  clocks due with an extended resolution clock move with it, their warnings by the same rule
  (``services/escalation/whistle_protocol.py``).

Plain functions: no database, no clock (``now`` is an argument).
"""

from __future__ import annotations

from datetime import datetime

from services.escalation.calendar import BusinessCalendar, UncoveredYearError
from services.escalation.ladder import PlannedStep, first_step


class ExtensionConflict(Exception):
    """The request or decision is well formed but the clock's state forbids it (409)."""


class InvalidExtension(ValueError):
    """The requested deadline itself is unacceptable (422)."""


def requested_deadline(
    due_at: datetime,
    *,
    requested_due_at: datetime | None,
    extra_working_days: int | None,
    calendar: BusinessCalendar,
) -> tuple[datetime, str | None]:
    """The deadline asked for, and why it is provisional if the calendar lacked its year."""
    if requested_due_at is not None:
        return requested_due_at, None
    if extra_working_days is None or extra_working_days < 1:
        raise InvalidExtension("give requested_due_at or a positive extra_working_days")
    try:
        return calendar.add_working_days(due_at, extra_working_days), None
    except UncoveredYearError as exc:
        return calendar.provisional().add_working_days(due_at, extra_working_days), str(exc)


def check_request(
    *, clock_status: str, due_at: datetime, requested: datetime, now: datetime, pending: bool
) -> None:
    if clock_status != "running":
        raise ExtensionConflict(f"the clock has stopped ({clock_status}): nothing to extend")
    if pending:
        raise ExtensionConflict("this clock already has a pending extension request")
    _check_later(due_at, requested, now, InvalidExtension)


def check_decision(
    *,
    request_status: str,
    approved: bool,
    clock_status: str,
    due_at: datetime,
    requested: datetime,
    now: datetime,
) -> None:
    if request_status != "pending":
        raise ExtensionConflict(f"the request was already decided ({request_status})")
    if not approved:
        return  # a refusal only closes the request: nothing moves
    if clock_status != "running":
        raise ExtensionConflict(f"the clock has stopped ({clock_status}); it cannot be extended")
    _check_later(due_at, requested, now, ExtensionConflict)


def moved_warning(
    *,
    due_at: datetime,
    warn_at: datetime,
    new_due_at: datetime,
    extra_working_days: int | None,
    calendar: BusinessCalendar,
) -> datetime:
    """The moved clock's warning time: as far before the new deadline as before the old one."""
    if extra_working_days is None:
        moved = warn_at + (new_due_at - due_at)
    else:
        try:
            moved = calendar.add_working_days(warn_at, extra_working_days)
        except UncoveredYearError:
            moved = calendar.provisional().add_working_days(warn_at, extra_working_days)
    return min(moved, new_due_at)


def replanned_step(*, warn_at: datetime, due_at: datetime, now: datetime) -> PlannedStep:
    """The step a moved clock waits for: its warning if that is still ahead, else overdue."""
    if warn_at > now:
        return first_step(warn_at)
    return PlannedStep("overdue", due_at)


def _check_later(
    due_at: datetime, requested: datetime, now: datetime, error: type[Exception]
) -> None:
    if requested <= due_at:
        raise error(
            f"the requested deadline {requested.isoformat()} is not later than the one in "
            f"force, {due_at.isoformat()}"
        )
    if requested <= now:
        raise error(f"the requested deadline {requested.isoformat()} has already passed")
