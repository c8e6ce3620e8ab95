"""Extension (延期) rules as plain functions: what may be asked, what may be granted, and where
a granted clock's warning and next ladder step fall."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.escalation.calendar import BusinessCalendar, load_calendar
from services.escalation.extensions import (
    ExtensionConflict,
    InvalidExtension,
    check_decision,
    check_request,
    moved_warning,
    replanned_step,
    requested_deadline,
)

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def calendar() -> BusinessCalendar:
    return load_calendar(CONFIG / "calendar.yaml", "Asia/Shanghai")


DUE = local(2026, 11, 20, 10, 0)  # Friday
WARN = local(2026, 11, 19, 17, 22, 30)
NOW = local(2026, 11, 19, 11, 0)


def test_extra_working_days_count_on_the_calendar(calendar: BusinessCalendar) -> None:
    due, provisional = requested_deadline(
        DUE, requested_due_at=None, extra_working_days=2, calendar=calendar
    )
    assert (due, provisional) == (local(2026, 11, 24, 10, 0), None)  # over the weekend


def test_national_day_holidays_do_not_count(calendar: BusinessCalendar) -> None:
    # Due Wednesday 30 September 2026; 1–7 October are holidays, Saturday 10 October is worked.
    due, _ = requested_deadline(
        local(2026, 9, 30, 10, 0), requested_due_at=None, extra_working_days=2, calendar=calendar
    )
    assert due == local(2026, 10, 9, 10, 0)


def test_a_year_the_calendar_lacks_is_counted_weekdays_and_flagged(
    calendar: BusinessCalendar,
) -> None:
    due, provisional = requested_deadline(
        local(2026, 12, 30, 10, 0), requested_due_at=None, extra_working_days=3, calendar=calendar
    )
    assert due == local(2027, 1, 4, 10, 0)
    assert provisional is not None and "2027" in provisional


def test_a_date_is_taken_as_given(calendar: BusinessCalendar) -> None:
    asked = local(2026, 11, 22, 9, 0)
    assert requested_deadline(
        DUE, requested_due_at=asked, extra_working_days=None, calendar=calendar
    ) == (asked, None)


def test_a_request_needs_a_running_clock_and_a_later_future_deadline() -> None:
    later = DUE + timedelta(days=1)
    check_request(clock_status="running", due_at=DUE, requested=later, now=NOW, pending=False)
    with pytest.raises(ExtensionConflict, match="stopped"):
        check_request(clock_status="met", due_at=DUE, requested=later, now=NOW, pending=False)
    with pytest.raises(ExtensionConflict, match="pending"):
        check_request(clock_status="running", due_at=DUE, requested=later, now=NOW, pending=True)
    with pytest.raises(InvalidExtension, match="not later"):
        check_request(clock_status="running", due_at=DUE, requested=DUE, now=NOW, pending=False)
    with pytest.raises(InvalidExtension, match="passed"):
        # An overdue clock may be extended, but not to a time already gone.
        check_request(
            clock_status="running",
            due_at=DUE,
            requested=DUE + timedelta(hours=1),
            now=DUE + timedelta(hours=2),
            pending=False,
        )


def test_a_decision_is_taken_once_and_approval_needs_a_running_clock() -> None:
    later = DUE + timedelta(days=1)
    common = {"due_at": DUE, "requested": later, "now": NOW}
    check_decision(request_status="pending", approved=True, clock_status="running", **common)
    # Refusing after the clock stopped closes the request; approving would move nothing.
    check_decision(request_status="pending", approved=False, clock_status="met", **common)
    with pytest.raises(ExtensionConflict, match="stopped"):
        check_decision(request_status="pending", approved=True, clock_status="late", **common)
    for decided in ("approved", "refused"):
        with pytest.raises(ExtensionConflict, match="already decided"):
            check_decision(request_status=decided, approved=False, clock_status="running", **common)
    with pytest.raises(ExtensionConflict, match="passed"):
        check_decision(
            request_status="pending",
            approved=True,
            clock_status="running",
            due_at=DUE,
            requested=later,
            now=later,
        )


def test_the_warning_keeps_its_lead(calendar: BusinessCalendar) -> None:
    by_days = moved_warning(
        due_at=DUE,
        warn_at=WARN,
        new_due_at=local(2026, 11, 24, 10, 0),
        extra_working_days=2,
        calendar=calendar,
    )
    assert by_days == local(2026, 11, 23, 17, 22, 30)  # Monday, two working days later
    by_date = moved_warning(
        due_at=DUE,
        warn_at=WARN,
        new_due_at=DUE + timedelta(hours=5),
        extra_working_days=None,
        calendar=calendar,
    )
    assert by_date == WARN + timedelta(hours=5)


def test_a_moved_clock_warns_again_only_if_the_warning_is_ahead() -> None:
    new_due, new_warn = local(2026, 11, 24, 10, 0), local(2026, 11, 23, 17, 22, 30)
    ahead = replanned_step(warn_at=new_warn, due_at=new_due, now=NOW)
    assert (ahead.step, ahead.due_at) == ("warning", new_warn)
    past = replanned_step(warn_at=new_warn, due_at=new_due, now=new_warn + timedelta(minutes=1))
    assert (past.step, past.due_at) == ("overdue", new_due)
