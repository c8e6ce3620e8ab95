"""回访 before closing, and 联系群众, through the real dispatch: its HTTP API with a clock the
test moves, and a rating arriving on intake.tips.v1 as intake publishes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from uuid6 import uuid7

from contracts.envelope import CloudEvent, new_event
from contracts.events import TipRated
from contracts.topics import TIPS
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.models import Case
from services.runtime.inbox import InboxRecord
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.integration.conftest import MovableClock, _in_process
from tests.integration.test_case_lifecycle import _act as act
from tests.integration.test_case_lifecycle import as_dispatcher, as_unit
from tests.support.infra import eventually

PROBLEM = "application/problem+json"
__all__ = ["as_dispatcher", "as_unit"]  # the fixtures, shared with test_case_lifecycle.py
START = datetime(2026, 12, 1, 2, tzinfo=UTC)  # 10:00 in Asia/Shanghai


@pytest.fixture(scope="module")
def moving() -> MovableClock:
    return MovableClock(START)


@pytest.fixture(scope="module")
async def dispatch(
    migrated: Settings, moving: MovableClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    async for pair in _in_process(create_dispatch(migrated, moving)):
        yield pair


async def a_case(runtime: Runtime, status: str = "assigned") -> Case:
    now = runtime.clock()
    case = Case(
        county="140999",
        id=uuid7(),
        tip_id=uuid7(),
        status=status,
        matter_code="CG-001",
        township_code="T03",
        village_code="T03V02",
        urgency="general",
        unit_id="T03-CGJ",
        catalogue_version="test",
        created_at=now,
        updated_at=now,
    )
    async with runtime.transaction() as session:
        session.add(case)
    return case


async def rated(producer: AIOKafkaProducer, case: Case, rating: str, at: datetime) -> CloudEvent:
    """A rating of the case's tip on intake.tips.v1, as intake publishes it."""
    data = TipRated(
        tip_id=case.tip_id,
        case_id=case.id,
        rating=rating,  # type: ignore[arg-type]
        channel="hotline",
        rated_at=at,
        recorded_by="operator-7",
    )
    event = new_event("whistle/intake", str(case.tip_id), data, at)
    await producer.send_and_wait(TIPS, event.to_bytes(), key=str(case.tip_id).encode())
    return event


async def resolved_case(
    client: httpx.AsyncClient, runtime: Runtime, as_unit: dict[str, str]
) -> Case:
    case = await a_case(runtime)
    assert (await act(client, case.id, "accept", as_unit)).status_code == 200
    resolved = await act(
        client, case.id, "resolve", as_unit, {"resolution": "on_the_spot", "note": "已劝离"}
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolved_at"] is not None
    return case


async def test_a_case_cannot_close_before_its_follow_up_window_has_passed(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    moving: MovableClock,
    as_unit: dict[str, str],
    as_dispatcher: dict[str, str],
) -> None:
    client, runtime = dispatch
    case = await resolved_case(client, runtime, as_unit)
    resolved_at = moving.now

    moving.advance(timedelta(days=3) - timedelta(minutes=1))
    early = await act(client, case.id, "close", as_dispatcher)
    assert early.status_code == 409 and early.headers["content-type"] == PROBLEM
    problem = early.json()
    assert problem["type"] == "https://whistle.example/problems/follow-up-pending"
    # Resolved 10:00 on 1 December, county time: the window ends 10:00 on the 4th.
    assert "2026-12-04 10:00" in problem["detail"] and "回访" in problem["detail"]
    assert datetime.fromisoformat(problem["may_close_at"]) == resolved_at + timedelta(days=3)
    async with runtime.sessions() as session:
        kept = await session.get(Case, case.id)
    assert kept is not None and kept.status == "resolved"  # nothing of the refusal is kept

    moving.advance(timedelta(minutes=1))
    closed = await act(client, case.id, "close", as_dispatcher)
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"


async def test_a_recorded_follow_up_lets_the_case_close_at_once(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    moving: MovableClock,
    producer: AIOKafkaProducer,
    as_unit: dict[str, str],
    as_dispatcher: dict[str, str],
) -> None:
    client, runtime = dispatch
    case = await resolved_case(client, runtime, as_unit)
    assert (await act(client, case.id, "close", as_dispatcher)).status_code == 409

    moving.advance(timedelta(hours=2))
    await rated(producer, case, "basically_satisfied", moving.now)

    async def followed_up() -> str | None:
        answer = await client.get(f"/v1/cases/{case.id}", headers=as_dispatcher)
        return answer.json()["followed_up_at"]

    assert datetime.fromisoformat(await eventually(followed_up, what="the 回访")) == moving.now
    closed = await act(client, case.id, "close", as_dispatcher)
    assert closed.status_code == 200, closed.text


async def test_a_rating_of_an_earlier_resolution_is_not_a_follow_up_of_this_one(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    moving: MovableClock,
    producer: AIOKafkaProducer,
    as_unit: dict[str, str],
    as_dispatcher: dict[str, str],
) -> None:
    client, runtime = dispatch
    case = await resolved_case(client, runtime, as_unit)
    # Given before this resolution (of the one before a reopening).
    event = await rated(producer, case, "satisfied", moving.now - timedelta(minutes=5))

    async def taken() -> bool:
        async with runtime.sessions() as session:
            return await session.get(InboxRecord, (event.source, event.id)) is not None

    await eventually(taken, what="dispatch to take the rating")
    assert (await act(client, case.id, "close", as_dispatcher)).status_code == 409


async def test_the_unit_records_its_contact_with_the_citizen(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    moving: MovableClock,
    as_unit: dict[str, str],
    as_dispatcher: dict[str, str],
) -> None:
    client, runtime = dispatch
    case = await a_case(runtime)
    opened = moving.now
    moving.advance(timedelta(hours=3))
    body = {"contacted_at": (opened + timedelta(hours=1)).isoformat(), "method": "phone"}

    # Only the unit holding the case, once it has accepted it.
    assert (await act(client, case.id, "contact", as_unit, body)).status_code == 409
    assert (await act(client, case.id, "accept", as_unit)).status_code == 200
    assert (await act(client, case.id, "contact", as_dispatcher, body)).status_code == 409

    for when in (opened - timedelta(minutes=1), moving.now + timedelta(minutes=1)):
        wrong = await act(
            client, case.id, "contact", as_unit, {"contacted_at": when.isoformat(), "method": "sms"}
        )
        assert wrong.status_code == 422 and wrong.headers["content-type"] == PROBLEM
        assert "联系群众" in wrong.json()["detail"]

    contacted = await act(client, case.id, "contact", as_unit, {**body, "note": "电话告知已受理"})
    assert contacted.status_code == 200, contacted.text
    assert contacted.json()["status"] == "accepted" and contacted.json()["version"] == 3
    assert datetime.fromisoformat(contacted.json()["contacted_at"]) == opened + timedelta(hours=1)
    later = {"contacted_at": (opened + timedelta(hours=2)).isoformat(), "method": "visit"}
    again = await act(client, case.id, "contact", as_unit, later)
    assert datetime.fromisoformat(again.json()["contacted_at"]) == opened + timedelta(hours=1)

    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage.event)
            .where(OutboxMessage.key == str(case.id))
            .order_by(OutboxMessage.id)  # type: ignore[arg-type]
        )
        events = [e for e in rows.all() if e["type"] == "whistle.case.contacted"]
    assert [(e["data"]["method"], e["data"]["note"]) for e in events] == [
        ("phone", "电话告知已受理"),
        ("visit", None),
    ]
    assert events[0]["data"]["actor_role"] == "unit_member"
