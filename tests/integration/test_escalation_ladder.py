"""The escalation ladder fires from the database: in order, on time, once, and after downtime.

A fresh migrated escalation database per test; the scheduler is driven one pass at a time with
a clock moved by hand (no sleeping). Times are Asia/Shanghai, worked out by hand from the
business calendar: working hours 08:30–12:00 and 14:30–17:30 (6.5 h a day), November 2026 has
no holidays.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import select

from contracts.topics import DEADLINES, LEADERSHIP
from services.escalation.calendar import BusinessCalendar, load_calendar
from services.escalation.models import CaseDeadline, EscalationStep
from services.escalation.scheduler import EscalationScheduler
from services.runtime.db import Sessions, create_engine, ensure_database, session_factory
from services.runtime.migrations import upgrade
from services.runtime.outbox import OutboxMessage
from tests.integration.conftest import MovableClock
from tests.integration.test_escalation_clocks import CONFIG, _handle, _state, _step, local
from tests.support.infra import Infra

LADDER_TYPES = {
    "whistle.deadline.warning": "warning",
    "whistle.deadline.overdue": "overdue",
    "whistle.case.chased": "chase",
    "whistle.case.supervised": "supervise",
}
# Assigned Thursday 19 Nov 2026 10:00 under P-GENERAL (1 and 7 working days, warn at 75 %,
# chase 1 working day after the deadline, supervise 3 working days after the chase).
ASSIGNED = local(2026, 11, 19, 10, 0)
FIRST_RESPONSE = {
    "warning": local(2026, 11, 19, 17, 22, 30),  # 4 h 52 min 30 s of working time
    "overdue": local(2026, 11, 20, 10, 0),  # Friday
    "chase": local(2026, 11, 23, 10, 0),  # Monday, over the weekend
    "supervise": local(2026, 11, 26, 10, 0),  # Thursday
}
RESOLUTION = {
    "warning": local(2026, 11, 26, 11, 37, 30),  # 34 h 7 min 30 s of working time
    "overdue": local(2026, 11, 30, 10, 0),  # Monday, 7 working days
    "chase": local(2026, 12, 1, 10, 0),  # Tuesday
    "supervise": local(2026, 12, 4, 10, 0),  # Friday
}


@pytest.fixture
async def database_url(infra: Infra) -> str:
    url = infra.fresh_database_url("escalation")
    await ensure_database(url)
    await upgrade("escalation", url)
    return url


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[Sessions]:
    engine = create_engine(database_url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture(scope="module")
def calendar() -> BusinessCalendar:
    return load_calendar(CONFIG / "calendar.yaml", "Asia/Shanghai")


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(ASSIGNED)


def _scheduler(
    sessions: Sessions, calendar: BusinessCalendar, clock: MovableClock, batch_size: int = 500
) -> EscalationScheduler:
    return EscalationScheduler(
        sessions, lambda: calendar, clock, counties=None, batch_size=batch_size
    )


async def _fired(sessions: Sessions, case_id: UUID | None = None) -> list[dict[str, Any]]:
    """Ladder and leadership events in the outbox, in write order, with their topic."""
    query = select(OutboxMessage).order_by(OutboxMessage.id)  # type: ignore[arg-type]
    if case_id is not None:
        query = query.where(OutboxMessage.key == str(case_id))
    async with sessions() as session:
        rows = (await session.scalars(query)).all()
    return [
        {**r.event, "topic": r.topic}
        for r in rows
        if r.event["type"] in LADDER_TYPES or r.topic == LEADERSHIP
    ]


async def _steps(sessions: Sessions, case_id: UUID) -> dict[tuple[str, int, str], EscalationStep]:
    async with sessions() as session:
        rows = (
            await session.execute(
                select(EscalationStep, CaseDeadline)
                .join(CaseDeadline, CaseDeadline.id == EscalationStep.deadline_id)  # type: ignore[arg-type]
                .where(CaseDeadline.case_id == case_id)
            )
        ).all()
    return {(d.kind, d.round, s.step): s for s, d in rows}


def _ladder(events: list[dict[str, Any]], kind: str) -> list[tuple[str, datetime, int]]:
    return [
        (
            LADDER_TYPES[e["type"]],
            datetime.fromisoformat(e["data"]["scheduled_for"]),
            e["data"]["late_by_seconds"],
        )
        for e in events
        if e["type"] in LADDER_TYPES and e["data"]["kind"] == kind
    ]


async def test_every_step_fires_in_order_at_its_time_and_supervision_reaches_leadership(
    sessions: Sessions, calendar: BusinessCalendar, clock: MovableClock
) -> None:
    case_id = uuid4()
    await _handle(sessions, calendar, ASSIGNED, case_id)
    scheduler = _scheduler(sessions, calendar, clock)
    expected = []
    for step, at in FIRST_RESPONSE.items():
        clock.now = at - timedelta(seconds=1)
        assert await scheduler.run_once() == 0, f"{step} fired early"
        clock.now = at
        assert await scheduler.run_once() == 1
        expected.append((step, at, 0))
        assert _ladder(await _fired(sessions, case_id), "first_response") == expected
    events = await _fired(sessions, case_id)
    assert [e["topic"] for e in events] == [DEADLINES] * 4 + [LEADERSHIP]
    supervised, notified = events[-2:]
    assert supervised["type"] == "whistle.case.supervised"
    assert notified["type"] == "whistle.leadership.notified"
    assert notified["data"]["supervision_event_id"] == supervised["id"]
    assert notified["data"]["case_id"] == str(case_id) == notified["subject"]
    data = supervised["data"]
    assert datetime.fromisoformat(data["due_at"]) == FIRST_RESPONSE["overdue"]
    assert datetime.fromisoformat(data["fired_at"]) == FIRST_RESPONSE["supervise"]
    assert (data["kind"], data["round"], data["policy_id"]) == ("first_response", 1, "P-GENERAL")

    steps = await _steps(sessions, case_id)
    fired = {k[2]: s for k, s in steps.items() if k[0] == "first_response"}
    assert {s: (r.due_at, r.fired_at, r.late_by_seconds) for s, r in fired.items()} == {
        s: (at, at, 0) for s, at in FIRST_RESPONSE.items()
    }
    # The resolution clock's ladder goes on: only its warning was due by then.
    pending = [s for k, s in steps.items() if k[0] == "resolution" and s.fired_at is None]
    assert [(s.step, s.due_at) for s in pending] == [("warning", RESOLUTION["warning"])]


async def test_accepting_and_resolving_before_a_step_cancel_it(
    sessions: Sessions, calendar: BusinessCalendar, clock: MovableClock
) -> None:
    case_id = uuid4()
    await _handle(sessions, calendar, ASSIGNED, case_id)
    scheduler = _scheduler(sessions, calendar, clock)
    clock.now = FIRST_RESPONSE["warning"]
    assert await scheduler.run_once() == 1
    # Accepted on Friday at 09:00, an hour before the first response falls due.
    await _step(sessions, calendar, local(2026, 11, 20, 9, 0), case_id, "accepted")
    # Resolved on Tuesday 24th, before the resolution clock's warning.
    await _step(sessions, calendar, local(2026, 11, 24, 15, 0), case_id, "resolved")
    clock.now = local(2027, 1, 4, 12, 0)
    assert await scheduler.run_once() == 0
    assert _ladder(await _fired(sessions, case_id), "first_response") == [
        ("warning", FIRST_RESPONSE["warning"], 0)
    ]
    assert _ladder(await _fired(sessions, case_id), "resolution") == []
    steps = await _steps(sessions, case_id)
    assert {k: (s.fired_at is not None, s.cancelled_at is not None) for k, s in steps.items()} == {
        ("first_response", 1, "warning"): (True, False),
        ("first_response", 1, "overdue"): (False, True),
        ("resolution", 1, "warning"): (False, True),
    }


async def test_a_reopened_case_climbs_a_new_ladder_of_its_own(
    sessions: Sessions, calendar: BusinessCalendar, clock: MovableClock
) -> None:
    case_id = uuid4()
    await _handle(sessions, calendar, ASSIGNED, case_id)
    await _step(sessions, calendar, local(2026, 11, 19, 11, 0), case_id, "accepted")
    await _step(sessions, calendar, local(2026, 11, 20, 11, 0), case_id, "resolved")
    # Reopened Monday 23 Nov 09:00: 7 working days → Wednesday 2 Dec 09:00; warned after
    # 34 h 7 min 30 s of working time → Monday 30 Nov 10:37:30 (Monday 23rd from 09:00 gives
    # 6 h, Tuesday to Friday 26 h, leaving 2 h 7 min 30 s from 08:30).
    await _step(sessions, calendar, local(2026, 11, 23, 9, 0), case_id, "reopened")
    scheduler = _scheduler(sessions, calendar, clock)
    clock.now = local(2026, 12, 2, 9, 0)
    assert await scheduler.run_once() == 2
    assert _ladder(await _fired(sessions, case_id), "resolution") == [
        ("warning", local(2026, 11, 30, 10, 37, 30), 2 * 86400 - (3600 + 37 * 60 + 30)),
        ("overdue", local(2026, 12, 2, 9, 0), 0),
    ]
    steps = await _steps(sessions, case_id)
    assert steps[("resolution", 1, "warning")].cancelled_at is not None
    assert steps[("resolution", 2, "chase")].due_at == local(2026, 12, 3, 9, 0)
    assert steps[("resolution", 2, "chase")].fired_at is None


async def test_after_downtime_one_pass_fires_every_missed_step_in_order_marked_late(
    sessions: Sessions, calendar: BusinessCalendar, clock: MovableClock
) -> None:
    case_id = uuid4()
    await _handle(sessions, calendar, ASSIGNED, case_id)
    # Down from the assignment until Monday 7 December, noon; small batches on purpose.
    clock.now = local(2026, 12, 7, 12, 0)
    scheduler = _scheduler(sessions, calendar, clock, batch_size=3)
    assert await scheduler.run_once() == 8
    events = await _fired(sessions, case_id)
    for kind, ladder in (("first_response", FIRST_RESPONSE), ("resolution", RESOLUTION)):
        assert _ladder(events, kind) == [
            (step, at, int((clock.now - at).total_seconds())) for step, at in ladder.items()
        ]
    # By hand: the first response's chase was due Monday 23 Nov 10:00, 14 days 2 hours ago.
    chased = next(
        e
        for e in events
        if e["type"] == "whistle.case.chased" and e["data"]["kind"] == "first_response"
    )
    assert chased["data"]["late_by_seconds"] == 14 * 86400 + 2 * 3600
    assert sum(e["topic"] == LEADERSHIP for e in events) == 2
    assert await scheduler.run_once() == 0


async def _assign_many(sessions: Sessions, calendar: BusinessCalendar, n: int) -> list[UUID]:
    cases = [uuid4() for _ in range(n)]
    for case_id in cases:
        await _handle(sessions, calendar, ASSIGNED, case_id)
    return cases


async def test_two_schedulers_racing_fire_each_step_exactly_once(
    database_url: str, sessions: Sessions, calendar: BusinessCalendar, clock: MovableClock
) -> None:
    cases = await _assign_many(sessions, calendar, 30)
    other_engine = create_engine(database_url, pool_size=2)
    try:
        a = _scheduler(sessions, calendar, clock, batch_size=7)
        b = _scheduler(session_factory(other_engine), calendar, clock, batch_size=7)
        # First two single claim passes at the same instant, then both loops over many rows.
        clock.now = FIRST_RESPONSE["warning"]
        first = await asyncio.gather(a.fire_batch(clock.now), b.fire_batch(clock.now))
        assert sum(first) == 14  # two disjoint batches of 7
        clock.now = local(2026, 12, 7, 12, 0)
        fired = await asyncio.gather(a.run_once(), b.run_once())
    finally:
        await other_engine.dispose()
    assert sum(fired) == 30 * 8 - 14
    events = await _fired(sessions)
    keys = [
        (e["subject"], e["data"]["kind"], LADDER_TYPES[e["type"]])
        for e in events
        if e["type"] in LADDER_TYPES
    ]
    assert len(keys) == len(set(keys)) == 30 * 8
    assert sum(e["topic"] == LEADERSHIP for e in events) == 30 * 2
    for case_id in cases:
        mine = [e for e in events if e["subject"] == str(case_id)]
        for kind in ("first_response", "resolution"):
            assert [s for s, _, _ in _ladder(mine, kind)] == list(FIRST_RESPONSE)


async def test_two_schedulers_claiming_the_same_single_step_fire_it_once(
    database_url: str, sessions: Sessions, calendar: BusinessCalendar, clock: MovableClock
) -> None:
    case_id = uuid4()
    await _handle(sessions, calendar, ASSIGNED, case_id)
    other_engine = create_engine(database_url, pool_size=2)
    try:
        schedulers = [
            _scheduler(sessions, calendar, clock),
            _scheduler(session_factory(other_engine), calendar, clock),
        ]
        clock.now = FIRST_RESPONSE["warning"]
        for _ in range(3):
            await asyncio.gather(*(s.run_once() for s in schedulers))
    finally:
        await other_engine.dispose()
    assert _ladder(await _fired(sessions, case_id), "first_response") == [
        ("warning", FIRST_RESPONSE["warning"], 0)
    ]


async def test_a_step_fired_before_the_stop_reached_escalation_is_marked_premature(
    sessions: Sessions, calendar: BusinessCalendar, clock: MovableClock
) -> None:
    early, late = uuid4(), uuid4()
    await _handle(sessions, calendar, ASSIGNED, early)
    await _handle(sessions, calendar, ASSIGNED, late)
    scheduler = _scheduler(sessions, calendar, clock)
    # Friday 10:00:05: both first-response clocks have warned and gone overdue.
    clock.now = FIRST_RESPONSE["overdue"] + timedelta(seconds=5)
    assert await scheduler.run_once() == 4
    # One unit had accepted at 09:59:58 — before its deadline — but dispatch's event reached
    # escalation only now; the other accepted at 10:00:03, after its deadline.
    await _step(
        sessions, calendar, FIRST_RESPONSE["overdue"] - timedelta(seconds=2), early, "accepted"
    )
    await _step(
        sessions, calendar, FIRST_RESPONSE["overdue"] + timedelta(seconds=3), late, "accepted"
    )

    for case_id, on_time, premature in ((early, True, True), (late, False, False)):
        _, events = await _state(sessions, case_id)
        (overdue,) = [e for e in events if e["type"] == "whistle.deadline.overdue"]
        (stopped,) = [e["data"] for e in events if e["type"] == "whistle.deadline.stopped"]
        assert stopped["on_time"] is on_time
        # The warning was due before the stop: it stands. The overdue counts only if the
        # clock had really reached its deadline.
        assert stopped["premature_steps"] == ([overdue["id"]] if premature else [])
        steps = await _steps(sessions, case_id)
        assert steps[("first_response", 1, "chase")].cancelled_at is not None

    # Nothing more of either first-response clock, ever (Thursday 26th, before the resolution
    # clocks warn).
    clock.now = FIRST_RESPONSE["supervise"] + timedelta(hours=1)
    assert await scheduler.run_once() == 0
    for case_id in (early, late):
        assert [s for s, _, _ in _ladder(await _fired(sessions, case_id), "first_response")] == [
            "warning",
            "overdue",
        ]
