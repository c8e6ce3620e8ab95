"""The whistle protocol's rules (吹哨报到): a summoned department's deadlines and status, worked
out by hand on the business calendar (working hours 08:30–12:00 and 14:30–17:30, 6.5 h a day;
times are Asia/Shanghai)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from contracts.envelope import CloudEvent, new_event
from contracts.events import CaseChased, ExtensionDecided, WhistleNotified
from services.escalation.calendar import BusinessCalendar, load_calendar
from services.escalation.deadlines import ComputedDeadline
from services.escalation.dept_listen import describe, receipt_for, receipt_number
from services.escalation.policies import DeadlinePolicy, PolicyBook, load_policies
from services.escalation.whistle_protocol import department_copy, whistle_deadlines, whistle_status

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def calendar() -> BusinessCalendar:
    return load_calendar(CONFIG / "calendar.yaml", "Asia/Shanghai")


@pytest.fixture(scope="module")
def book() -> PolicyBook:
    return load_policies(CONFIG / "policies.yaml")


def _policy(book: PolicyBook, urgency: str) -> DeadlinePolicy:
    policy = book.for_urgency(urgency)
    assert policy is not None
    return policy


def test_an_emergency_whistle_must_be_reported_in_two_hours_across_midnight(
    book: PolicyBook, calendar: BusinessCalendar
) -> None:
    # Saturday 22:30: natural time, an emergency does not wait for Monday.
    start = local(2026, 11, 21, 22, 30)
    receipt, reply = whistle_deadlines(_policy(book, "emergency"), start, calendar, None)
    assert (receipt.kind, receipt.due_at, receipt.warn_at) == (
        "whistle_receipt",
        local(2026, 11, 22, 0, 30),
        local(2026, 11, 22, 0, 0),
    )
    # No case clock to follow: the policy's 24 hours from the whistle.
    assert (reply.kind, reply.due_at) == ("whistle_reply", local(2026, 11, 22, 22, 30))


def test_a_general_whistle_gets_a_working_day_and_the_cases_resolution_deadline(
    book: PolicyBook, calendar: BusinessCalendar
) -> None:
    start = local(2026, 11, 19, 10, 0)  # Thursday
    case = ComputedDeadline(
        "resolution", local(2026, 11, 30, 10, 0), local(2026, 11, 26, 11, 37, 30)
    )
    receipt, reply = whistle_deadlines(_policy(book, "general"), start, calendar, case)
    assert receipt.due_at == local(2026, 11, 20, 10, 0)
    assert receipt.warn_at == local(2026, 11, 19, 17, 22, 30)  # 75 % of 6.5 h of working time
    assert (reply.due_at, reply.warn_at) == (case.due_at, case.warn_at)


def test_a_whistle_on_the_eve_of_national_day_is_due_after_the_holiday(
    book: PolicyBook, calendar: BusinessCalendar
) -> None:
    # Wednesday 30 September 2026; 1–7 October are holidays, Saturday 10 October is worked.
    receipt, _ = whistle_deadlines(
        _policy(book, "general"), local(2026, 9, 30, 10, 0), calendar, None
    )
    assert receipt.due_at == local(2026, 10, 8, 10, 0)


def test_a_whistle_blown_after_the_cases_warning_is_warned_at_the_fraction_left(
    book: PolicyBook, calendar: BusinessCalendar
) -> None:
    start = local(2026, 11, 27, 10, 0)
    case = ComputedDeadline("resolution", local(2026, 12, 7, 10, 0), local(2026, 11, 26, 9, 0))
    _, reply = whistle_deadlines(_policy(book, "general"), start, calendar, case)
    assert reply.due_at == case.due_at
    assert reply.warn_at == start + (case.due_at - start) * 0.75


def test_a_whistle_blown_too_late_for_the_cases_deadline_gets_the_policys_time(
    book: PolicyBook, calendar: BusinessCalendar
) -> None:
    """The township whistled when the case was (nearly) due: the department is not late from
    the moment it hears of it; it gets the resolution time counted from the whistle."""
    start = local(2026, 11, 27, 10, 0)  # Friday
    case = ComputedDeadline("resolution", local(2026, 11, 27, 16, 0), local(2026, 11, 26, 9, 0))
    receipt, reply = whistle_deadlines(_policy(book, "general"), start, calendar, case)
    assert receipt.due_at == local(2026, 11, 30, 10, 0)
    assert reply.due_at == local(2026, 12, 8, 10, 0)  # 7 working days


@pytest.mark.parametrize(
    ("reported", "replied", "now", "expected"),
    [
        (False, False, local(2026, 11, 20, 10, 0), "awaiting_receipt"),
        (False, False, local(2026, 11, 20, 10, 0, 1), "receipt_overdue"),
        (True, False, local(2026, 11, 25, 9, 0), "awaiting_reply"),
        (True, False, local(2026, 11, 30, 10, 1), "reply_overdue"),
        (True, True, local(2026, 12, 30, 10, 1), "replied"),
    ],
)
def test_a_summons_status_follows_its_clocks(
    reported: bool, replied: bool, now: datetime, expected: str
) -> None:
    assert (
        whistle_status(
            reported=reported,
            replied=replied,
            receipt_due_at=local(2026, 11, 20, 10, 0),
            reply_due_at=local(2026, 11, 30, 10, 0),
            now=now,
        )
        == expected
    )


def _chase(now: datetime) -> CloudEvent:
    chased = CaseChased(
        case_id=uuid4(),
        kind="whistle_receipt",
        round=1,
        due_at=now - timedelta(days=1),
        scheduled_for=now,
        fired_at=now,
        late_by_seconds=0,
        policy_id="P-GENERAL",
        whistle_id=uuid4(),
        department_code="CGJ",
    )
    return new_event("whistle/escalation", str(chased.case_id), chased, now)


def test_a_department_copy_is_its_own_event_naming_the_original() -> None:
    original = _chase(local(2026, 11, 23, 10, 0))
    copy = department_copy(original)
    assert copy.id != original.id
    assert copy.model_extra == {"copyof": original.id}
    assert (copy.type, copy.subject, copy.time, copy.data) == (
        original.type,
        original.subject,
        original.time,
        original.data,
    )
    assert CloudEvent.model_validate_json(copy.to_bytes()).model_extra == {"copyof": original.id}


def _notice() -> WhistleNotified:
    return WhistleNotified(
        case_id=uuid4(),
        whistle_id=uuid4(),
        department_code="CGJ",
        township_code="T03",
        matter_code="CG-012",
        reason_code="county_only",
        reason="占道经营屡禁不止，需城管局联合执法",
        urgency="general",
        receipt_due_at=local(2026, 11, 20, 10, 0),
        reply_due_at=local(2026, 11, 30, 10, 0),
        policy_id="P-GENERAL",
    )


def test_the_listener_prints_one_chinese_line_and_reports_in_with_the_prefix() -> None:
    notice = _notice()
    event = new_event("whistle/escalation", str(notice.case_id), notice, local(2026, 11, 19, 10))
    line = describe(event, SHANGHAI)
    assert line.startswith("[吹哨] ")
    assert "报到时限 2026-11-20 10:00" in line and "回复时限 2026-11-30 10:00" in line
    assert "紧急程度 一般" in line
    assert "[催办]" in describe(_chase(local(2026, 11, 23, 10)), SHANGHAI)
    assert "报到已超期" in describe(_chase(local(2026, 11, 23, 10)), SHANGHAI)

    number = receipt_number(notice, "CGJ2026", None)
    assert number == f"CGJ2026-{notice.whistle_id.hex[:8]}"
    assert receipt_number(notice, None, None) is None  # not a terminal: leave it
    answers = iter(["y", "HZ-0001"])
    assert receipt_number(notice, None, lambda _: next(answers)) == "HZ-0001"
    assert receipt_number(notice, None, lambda _: "") is None
    receipt = receipt_for(notice, "whistle/dept/cgj", number, local(2026, 11, 19, 11))
    assert receipt.type == "whistle.whistle.receipt_submitted"
    assert receipt.subject == str(notice.case_id)
    assert receipt.data["receipt_no"] == number
    assert receipt.data["department_code"] == "CGJ"


def test_the_listener_prints_a_reply_deadline_moved_by_an_extension() -> None:
    moved = ExtensionDecided(
        case_id=uuid4(),
        request_id=uuid4(),
        kind="whistle_reply",
        round=1,
        approved=True,
        old_due_at=local(2026, 11, 30, 10, 0),
        new_due_at=local(2026, 12, 3, 10, 0),
        decided_by="S0003",
        decided_by_role="dispatcher",
        whistle_id=uuid4(),
        department_code="CGJ",
    )
    event = new_event("whistle/escalation", str(moved.case_id), moved, local(2026, 11, 20, 9))
    line = describe(department_copy(event), SHANGHAI)
    assert line.startswith("[延期] ")
    assert "回复时限由 2026-11-30 10:00 延至 2026-12-03 10:00" in line


def test_the_listener_prints_a_receipt_deadline_counted_again_on_a_new_calendar() -> None:
    from contracts.events import DeadlineRecomputed

    recounted = DeadlineRecomputed(
        case_id=uuid4(),
        kind="whistle_receipt",
        round=1,
        old_due_at=local(2027, 1, 5, 9, 0),
        due_at=local(2027, 1, 7, 9, 0),
        warn_at=local(2027, 1, 6, 15, 0),
        calendar_version="2027.01-1+abc",
        provisional_reason="the business calendar has no holiday notice for 2027",
        whistle_id=uuid4(),
        department_code="CGJ",
    )
    event = new_event("whistle/escalation", str(recounted.case_id), recounted, local(2027, 1, 4))
    line = describe(department_copy(event), SHANGHAI)
    assert line.startswith("[重算] ")
    assert "报到时限" in line and "由 2027-01-05 09:00 改为 2027-01-07 09:00" in line
