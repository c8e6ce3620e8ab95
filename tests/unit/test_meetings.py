"""The joint meeting's rules (联席会议, services/escalation/meetings.py), without a database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from contracts.envelope import new_event
from contracts.events import CaseChased, MeetingSummoned
from services.escalation.dept_listen import describe
from services.escalation.meetings import (
    MeetingRefused,
    WhistleFacts,
    attendance,
    convening,
    deciding,
    decision_deadline,
    reporting,
)

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
DEPARTMENTS = {"CGJ", "SCJGJ", "GAJ"}


def facts(
    whistle_id: UUID,
    department: str,
    case_id: UUID,
    *,
    overdue: bool = True,
    open_: bool = True,
    township: str = "T03",
) -> WhistleFacts:
    return WhistleFacts(whistle_id, department, case_id, township, overdue, open_)


def refusal(call: Callable[[], object]) -> str:
    with pytest.raises(MeetingRefused) as caught:
        call()
    return caught.value.refusal.rule


def test_an_overdue_whistle_brings_its_case_and_its_late_departments_only() -> None:
    whistle, case = uuid4(), uuid4()
    agenda = convening(
        "T03",
        case_townships={},
        whistles=[facts(whistle, "CGJ", case), facts(whistle, "SCJGJ", case, overdue=False)],
        whistle_ids=[whistle],
        departments=["GAJ"],
        known_departments=DEPARTMENTS,
    )
    assert agenda.case_ids == (case,)
    assert agenda.departments == ("GAJ", "CGJ")  # SCJGJ answered in time: not summoned
    assert agenda.whistle_ids == (whistle,)


def test_what_a_township_may_not_refer() -> None:
    whistle, case = uuid4(), uuid4()

    def convene(**changes: Any) -> Callable[[], object]:
        asked = {
            "case_townships": {},
            "whistles": [facts(whistle, "CGJ", case)],
            "whistle_ids": [whistle],
            "departments": [],
            "known_departments": DEPARTMENTS,
            **changes,
        }
        return lambda: convening("T03", **asked)

    assert refusal(convene(case_townships={case: {"T01"}})) == "no-case"
    assert refusal(convene(case_townships={uuid4(): set()})) == "no-case"
    assert refusal(convene(whistles=[facts(whistle, "CGJ", case, township="T01")])) == (
        "no-whistle"
    )
    assert refusal(convene(whistles=[facts(whistle, "CGJ", case, overdue=False)])) == (
        "whistle-not-overdue"
    )
    assert refusal(convene(whistles=[facts(whistle, "CGJ", case, open_=False)])) == (
        "whistle-not-overdue"
    )
    assert refusal(convene(whistle_ids=[], whistles=[])) == "nothing-to-settle"
    assert refusal(convene(departments=["XXJ"])) == "unknown-department"
    assert refusal(convene(whistle_ids=[], whistles=[], case_townships={case: {"T03"}})) == (
        "no-department"
    )


def test_attendance_is_of_the_summoned_and_recorded_once() -> None:
    assert attendance(["CGJ", "SCJGJ"], ["CGJ"], held=False) == ["SCJGJ"]
    assert refusal(lambda: attendance(["CGJ"], ["GAJ"], held=False)) == "not-summoned"
    assert refusal(lambda: attendance(["CGJ"], ["CGJ"], held=True)) == "already-held"


def test_a_decision_needs_a_sitting_an_owner_of_the_meeting_and_a_time_ahead() -> None:
    case = uuid4()
    asked: dict[str, Any] = {
        "held": True,
        "case_id": None,
        "meeting_cases": [case],
        "owner_kind": "department",
        "owner_code": "CGJ",
        "summoned": ["CGJ"],
        "township_units": ["T03-TEAM"],
        "due_at": NOW + timedelta(days=3),
        "now": NOW,
    }
    assert deciding(**asked) == case
    assert deciding(**{**asked, "owner_kind": "unit", "owner_code": "T03-TEAM"}) == case
    for change, rule in (
        ({"held": False}, "not-held"),
        ({"meeting_cases": [case, uuid4()]}, "case-required"),
        ({"case_id": uuid4()}, "not-on-agenda"),
        ({"owner_code": "GAJ"}, "owner-not-summoned"),
        ({"owner_kind": "unit", "owner_code": "T01-TEAM"}, "owner-not-township-unit"),
        ({"due_at": NOW}, "due-passed"),
    ):
        assert refusal(lambda change=change: deciding(**{**asked, **change})) == rule


def test_a_decisions_clock_is_due_when_the_meeting_said_warned_at_the_fraction() -> None:
    clock = decision_deadline(NOW, NOW + timedelta(days=4), 0.75)
    assert (clock.kind, clock.due_at, clock.warn_at) == (
        "meeting_decision",
        NOW + timedelta(days=4),
        NOW + timedelta(days=3),
    )
    assert clock.provisional_reason is None


def test_only_the_owner_reports_once() -> None:
    reporting(owner_kind="department", owner_code="CGJ", acting_for={"CGJ"}, done=False)
    reporting(owner_kind="department", owner_code="CGJ", acting_for={"*"}, done=False)
    assert (
        refusal(
            lambda: reporting(
                owner_kind="department", owner_code="CGJ", acting_for={"SCJGJ"}, done=False
            )
        )
        == "not-owner"
    )
    assert (
        refusal(
            lambda: reporting(owner_kind="unit", owner_code="T03-TEAM", acting_for=(), done=False)
        )
        == "not-owner"
    )
    assert (
        refusal(
            lambda: reporting(
                owner_kind="department", owner_code="CGJ", acting_for={"CGJ"}, done=True
            )
        )
        == "already-done"
    )


def test_the_department_listener_prints_a_summons_to_a_meeting_and_a_decisions_chase() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    meeting, case, decision = uuid4(), uuid4(), uuid4()
    summoned = MeetingSummoned(
        meeting_id=meeting,
        department_code="CGJ",
        township_code="T03",
        held_at=NOW,
        place="镇政府三楼会议室",
        agenda=["占道经营整治", "油烟扰民"],
        case_ids=[case],
    )
    line = describe(new_event("whistle/escalation", str(meeting), summoned, NOW), zone)
    assert line == (
        f"[联席会议] 会议 {meeting} 乡镇 T03 时间 2026-11-23 09:00 地点 镇政府三楼会议室 "
        "议题 占道经营整治；油烟扰民"
    )
    chase = CaseChased(
        case_id=case,
        kind="meeting_decision",
        round=1,
        due_at=NOW,
        scheduled_for=NOW + timedelta(days=1),
        fired_at=NOW + timedelta(days=1),
        late_by_seconds=0,
        policy_id="P-GENERAL",
        department_code="CGJ",
        decision_id=decision,
    )
    line = describe(new_event("whistle/escalation", str(case), chase, NOW), zone)
    assert line == f"[催办] 案件 {case} 联席会议议定事项 {decision} 已超期，时限 2026-11-23 09:00"
