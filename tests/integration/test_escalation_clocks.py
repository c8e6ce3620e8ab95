"""Escalation starts a case's clocks on assignment: against a real, migrated database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from contracts.envelope import EventData, new_event
from contracts.events import CaseAccepted, CaseAssigned, CaseReopened, CaseResolved
from services.escalation.calendar import BusinessCalendar, load_calendar
from services.escalation.consumers import Handlers
from services.escalation.models import CaseAssignment, CaseDeadline
from services.escalation.policies import load_policies
from services.runtime.db import Sessions, create_engine, ensure_database, session_factory
from services.runtime.migrations import upgrade
from services.runtime.outbox import OutboxMessage
from tests.support.infra import Infra

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


@pytest.fixture
async def sessions(infra: Infra) -> AsyncIterator[Sessions]:
    url = infra.fresh_database_url("escalation")
    await ensure_database(url)
    await upgrade("escalation", url)
    engine = create_engine(url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture(scope="module")
def calendar() -> BusinessCalendar:
    return load_calendar(CONFIG / "calendar.yaml", "Asia/Shanghai")


def _assigned(case_id: object, policy: str = "P-GENERAL") -> CaseAssigned:
    return CaseAssigned.model_validate(
        {
            "case_id": str(case_id),
            "tip_id": str(uuid4()),
            "unit_id": "T03-TEAM",
            "unit_kind": "township_team",
            "township_code": "T03",
            "staff_id": None,
            "matter_code": "SC-001",
            "authority": "devolved",
            "urgency": "general",
            "deadline_policy": policy,
            "catalogue_version": "test",
            "rule": "test",
            "explanation": [],
        }
    )


def _handlers(calendar: BusinessCalendar, at: datetime) -> Handlers:
    """Escalation's consumer handlers on the sample policies and ``calendar``, the time ``at``."""
    book = load_policies(CONFIG / "policies.yaml")
    return Handlers(lambda: book, lambda: calendar, lambda: at, None)


async def _handle(
    sessions: Sessions, calendar: BusinessCalendar, at: datetime, case_id: object
) -> None:
    event = new_event("whistle/dispatch", str(case_id), _assigned(case_id), at.astimezone(UTC))
    async with sessions() as session, session.begin():
        await _handlers(calendar, at).case_assigned(session, event, "dispatch.cases.v1")


async def _step(
    sessions: Sessions, calendar: BusinessCalendar, at: datetime, case_id: object, step: str
) -> None:
    """Hand escalation the case event ``step`` (accepted, resolved, reopened) dated ``at``."""
    on = _handlers(calendar, at)
    common = {
        "case_id": str(case_id),
        "tip_id": str(uuid4()),
        "actor": "S0025",
        "actor_role": "unit_member",
        "version": 2,
        "township_code": "T03",
        "unit_id": "T03-TEAM",
    }
    data: EventData
    if step == "accepted":
        data, handle = CaseAccepted.model_validate(common), on.case_accepted
    elif step == "resolved":
        data = CaseResolved.model_validate({**common, "resolution": "rectified", "note": "已整改"})
        handle = on.case_resolved
    else:
        data = CaseReopened.model_validate({**common, "reason": "群众不满意"})
        handle = on.case_reopened
    event = new_event("whistle/dispatch", str(case_id), data, at.astimezone(UTC))
    async with sessions() as session, session.begin():
        await handle(session, event, "dispatch.cases.v1")


async def _state(sessions: Sessions, case_id: object) -> tuple[dict[str, CaseDeadline], list[dict]]:
    async with sessions() as session:
        rows = (
            await session.scalars(select(CaseDeadline).where(CaseDeadline.case_id == case_id))
        ).all()
        events = (
            await session.scalars(
                select(OutboxMessage.event).where(OutboxMessage.key == str(case_id))
            )
        ).all()
    return {r.kind: r for r in rows}, list(events)


async def test_assignment_freezes_the_policy_and_the_calendar_version(
    sessions: Sessions, calendar: BusinessCalendar
) -> None:
    case_id = uuid4()
    # Friday 13 February 2026, 10:00 local: the eve of the Spring Festival make-up Saturday.
    await _handle(sessions, calendar, local(2026, 2, 13, 10, 0), case_id)
    rows, events = await _state(sessions, case_id)
    assert rows["first_response"].due_at == local(2026, 2, 14, 10, 0)  # the make-up Saturday
    assert rows["resolution"].due_at == local(2026, 3, 2, 10, 0)
    for row in rows.values():
        assert row.policy_snapshot["id"] == "P-GENERAL"
        assert row.policy_snapshot["calendar_version"] == calendar.version
        assert row.provisional_reason is None
    (event,) = events
    assert event["type"] == "whistle.deadlines.set"


async def test_a_case_assigned_again_keeps_its_clocks(
    sessions: Sessions, calendar: BusinessCalendar
) -> None:
    case_id = uuid4()
    await _handle(sessions, calendar, local(2026, 11, 23, 9, 0), case_id)
    before, _ = await _state(sessions, case_id)
    # Rejected and assigned again three days later (退单 → re-dispatch).
    await _handle(sessions, calendar, local(2026, 11, 26, 9, 0), case_id)
    after, events = await _state(sessions, case_id)
    assert {k: r.due_at for k, r in after.items()} == {k: r.due_at for k, r in before.items()}
    assert len(events) == 1, "no second DeadlinesSet for the same clocks"


async def test_the_case_is_held_by_its_newest_assignment_whatever_order_they_arrive_in(
    sessions: Sessions, calendar: BusinessCalendar
) -> None:
    """Who holds the case (for extensions) is written with its clocks: an assignment arriving
    after a newer one leaves the newer holder alone."""
    case_id = uuid4()
    for unit, day in (("T03-TEAM", 23), ("T03-SQUAD", 25), ("T04-TEAM", 24)):
        at = local(2026, 11, day, 9, 0)
        assigned = _assigned(case_id).model_copy(update={"unit_id": unit})
        event = new_event("whistle/dispatch", str(case_id), assigned, at.astimezone(UTC))
        async with sessions() as session, session.begin():
            await _handlers(calendar, at).case_assigned(session, event, "dispatch.cases.v1")
    async with sessions() as session:
        held = await session.get(CaseAssignment, case_id)
    assert held is not None
    assert (held.unit_id, held.assigned_at) == ("T03-SQUAD", local(2026, 11, 25, 9, 0))


async def test_a_deadline_reaching_a_year_without_a_calendar_is_set_and_flagged_provisional(
    sessions: Sessions, calendar: BusinessCalendar
) -> None:
    assert 2027 not in calendar.years
    case_id = uuid4()
    # Thursday 24 December 2026, 10:00: 1 working day stays in 2026, 7 reach into 2027.
    await _handle(sessions, calendar, local(2026, 12, 24, 10, 0), case_id)
    rows, (event,) = await _state(sessions, case_id)
    assert rows["first_response"].due_at == local(2026, 12, 25, 10, 0)
    assert rows["first_response"].provisional_reason is None
    # Counted Monday to Friday: 25, 28, 29, 30, 31 Dec, Fri 1 Jan, Mon 4 Jan.
    assert rows["resolution"].due_at == local(2027, 1, 4, 10, 0)
    assert "2027" in (rows["resolution"].provisional_reason or "")
    announced = {d["kind"]: d for d in event["data"]["deadlines"]}
    assert "2027" in announced["resolution"]["provisional_reason"]
    assert announced["first_response"]["provisional_reason"] is None
    assert rows["resolution"].due_at - rows["resolution"].started_at > timedelta(days=7)


async def test_accepting_in_time_meets_the_response_clock_and_resolving_late_is_late(
    sessions: Sessions, calendar: BusinessCalendar
) -> None:
    case_id = uuid4()
    # Monday 23 November 2026, 09:00: first response due Tue 24 09:00, resolution Wed 2 Dec 09:00.
    await _handle(sessions, calendar, local(2026, 11, 23, 9, 0), case_id)
    await _step(sessions, calendar, local(2026, 11, 23, 15, 0), case_id, "accepted")
    await _step(sessions, calendar, local(2026, 12, 2, 11, 30), case_id, "resolved")
    rows, events = await _state(sessions, case_id)
    first, resolution = rows["first_response"], rows["resolution"]
    assert (first.status, first.late_by_seconds) == ("met", 0)
    assert first.stopped_at == local(2026, 11, 23, 15, 0)
    assert resolution.due_at == local(2026, 12, 2, 9, 0)
    assert (resolution.status, resolution.late_by_seconds) == ("late", 2 * 3600 + 30 * 60)
    stopped = [e["data"] for e in events if e["type"] == "whistle.deadline.stopped"]
    assert [(d["kind"], d["on_time"], d["late_by_seconds"]) for d in stopped] == [
        ("first_response", True, 0),
        ("resolution", False, 9000),
    ]
    assert stopped[0]["stopped_by"] == "whistle.case.accepted"


async def test_a_reopened_case_gets_a_new_resolution_clock_under_its_frozen_policy(
    sessions: Sessions, calendar: BusinessCalendar
) -> None:
    case_id = uuid4()
    await _handle(sessions, calendar, local(2026, 11, 23, 9, 0), case_id)
    await _step(sessions, calendar, local(2026, 11, 23, 10, 0), case_id, "accepted")
    await _step(sessions, calendar, local(2026, 11, 25, 10, 0), case_id, "resolved")
    # Counted under the policy frozen onto the case at assignment (7 working days).
    await _step(sessions, calendar, local(2026, 11, 27, 14, 30), case_id, "reopened")
    async with sessions() as session:
        rounds = (
            await session.scalars(
                select(CaseDeadline)
                .where(CaseDeadline.case_id == case_id, CaseDeadline.kind == "resolution")
                .order_by(CaseDeadline.round)
            )
        ).all()
    assert [(r.round, r.status) for r in rounds] == [(1, "met"), (2, "running")]
    # Friday 27 Nov 14:30 + 7 working days → Tuesday 8 December 14:30.
    assert rounds[1].due_at == local(2026, 12, 8, 14, 30)
    assert rounds[1].policy_snapshot["resolution"] == {"amount": 7.0, "unit": "working_days"}
    _, events = await _state(sessions, case_id)
    restarted = events[-1]
    assert restarted["type"] == "whistle.deadlines.set"
    assert restarted["data"]["deadlines"][0]["round"] == 2


async def test_a_stop_for_a_case_without_clocks_changes_nothing(
    sessions: Sessions, calendar: BusinessCalendar
) -> None:
    case_id = uuid4()
    await _step(sessions, calendar, local(2026, 11, 23, 10, 0), case_id, "accepted")
    rows, events = await _state(sessions, case_id)
    assert rows == {} and events == []
