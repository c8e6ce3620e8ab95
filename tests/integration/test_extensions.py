"""Extensions (延期) through escalation's HTTP API: the unit asks, the township decides, an
approval moves the clock and its ladder in one transaction, and both steps reach the broker.

Escalation runs in process (its consumers, relay and scheduler included) on the session's
PostgreSQL and broker, with a clock moved by hand. Times are Asia/Shanghai: a case assigned
Thursday 19 November 2026 10:00 under P-GENERAL has its first response due Friday 10:00, with
the warning Thursday 17:22:30 (tests/integration/test_escalation_ladder.py works them out).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from contracts.envelope import new_event
from contracts.events import CaseAccepted
from contracts.topics import CASES, DEADLINES, department_topic
from services.escalation.app import create_app
from services.escalation.calendar_watch import current_calendar
from services.escalation.consumers import Handlers
from services.escalation.models import CaseDeadline, EscalationStep
from services.escalation.scheduler import EscalationScheduler
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.conftest import MovableClock
from tests.integration.test_escalation_clocks import _assigned, local
from tests.integration.test_whistle_protocol import whistle

ASSIGNED = local(2026, 11, 19, 10, 0)
DUE = local(2026, 11, 20, 10, 0)
WARN = local(2026, 11, 19, 17, 22, 30)
EXTENDED_DUE = local(2026, 11, 24, 10, 0)  # two working days later, over the weekend
EXTENDED_WARN = local(2026, 11, 23, 17, 22, 30)
UNIT = ("unit_member", "unit:T03-TEAM")
TOWNSHIP = ("dispatcher", "township:T03")

Escalation = tuple[httpx.AsyncClient, Runtime, MovableClock]


@pytest.fixture
async def escalation(migrated: Settings) -> AsyncIterator[Escalation]:
    clock = MovableClock(ASSIGNED)
    app = create_app(migrated, clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, app.state.runtime, clock


def _auth(token: TokenFactory, who: tuple[str, ...]) -> dict[str, str]:
    return {"authorization": f"Bearer {token(*who)}"}


def _handlers(runtime: Runtime) -> Handlers:
    """Escalation's consumer handlers, on the service's policies and calendar."""
    return Handlers(
        lambda: runtime.state["policies"],
        lambda: current_calendar(runtime),
        runtime.clock,
        runtime.counties,
    )


async def _assign(runtime: Runtime) -> UUID:
    """A new case assigned at ``ASSIGNED`` to T03-TEAM, its clocks started."""
    case_id = uuid4()
    event = new_event("whistle/dispatch", str(case_id), _assigned(case_id), ASSIGNED)
    async with runtime.transaction() as session:
        await _handlers(runtime).case_assigned(session, event, "dispatch.cases.v1")
    return case_id


async def _clock(runtime: Runtime, case_id: UUID, kind: str) -> CaseDeadline:
    async with runtime.sessions() as session:
        row = await session.scalar(
            select(CaseDeadline).where(CaseDeadline.case_id == case_id, CaseDeadline.kind == kind)
        )
    assert row is not None
    return row


async def _steps(runtime: Runtime, deadline_id: int) -> list[tuple[int, str, datetime, str]]:
    """(generation, step, due, state) of a clock's ladder, in order."""
    async with runtime.sessions() as session:
        rows = (
            await session.scalars(
                select(EscalationStep)
                .where(EscalationStep.deadline_id == deadline_id)  # type: ignore[arg-type]
                .order_by(EscalationStep.id)  # type: ignore[arg-type]
            )
        ).all()
    return [
        (
            r.generation,
            r.step,
            r.due_at,
            "fired" if r.fired_at else "cancelled" if r.cancelled_at else "pending",
        )
        for r in rows
    ]


async def _staged(runtime: Runtime, case_id: UUID, type_: str) -> list[dict[str, Any]]:
    async with runtime.sessions() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.key == str(case_id), OutboxMessage.topic == DEADLINES)
                .order_by(OutboxMessage.id)  # type: ignore[arg-type]
            )
        ).all()
    return [r.event for r in rows if r.event["type"] == type_]


async def _on_topic(bootstrap: str, event_ids: set[str], within: float = 20) -> dict[str, Any]:
    """The events with these ids as the broker holds them on the deadlines topic."""
    consumer = AIOKafkaConsumer(
        DEADLINES, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + within
        while set(found) != event_ids:
            assert time.monotonic() < deadline, f"found {len(found)} of {len(event_ids)}"
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    event = json.loads(record.value)
                    if event["id"] in event_ids:
                        found[event["id"]] = event
    finally:
        await consumer.stop()
    return found


async def test_an_approved_extension_moves_the_clock_and_its_ladder(
    escalation: Escalation, token: TokenFactory, migrated: Settings
) -> None:
    http, runtime, clock = escalation
    case_id = await _assign(runtime)
    clock.advance(timedelta(hours=1))

    asked = await http.post(
        f"/v1/cases/{case_id}/extensions",
        json={"kind": "first_response", "extra_working_days": 2, "reason": "需协调供电公司到场"},
        headers=_auth(token, UNIT),
    )
    assert asked.status_code == 201, asked.text
    request = asked.json()
    assert request["status"] == "pending"
    assert datetime.fromisoformat(request["requested_due_at"]) == EXTENDED_DUE
    assert datetime.fromisoformat(request["due_at"]) == DUE

    decided = await http.post(
        f"/v1/extensions/{request['request_id']}/decision",
        json={"approved": True, "note": "同意延期两个工作日"},
        headers=_auth(token, TOWNSHIP),
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    assert decided.json()["decided_by_role"] == "dispatcher"

    moved = await _clock(runtime, case_id, "first_response")
    assert (moved.due_at, moved.warn_at, moved.status) == (EXTENDED_DUE, EXTENDED_WARN, "running")
    assert moved.id is not None
    assert await _steps(runtime, moved.id) == [
        (1, "warning", WARN, "cancelled"),
        (2, "warning", EXTENDED_WARN, "pending"),
    ]
    seen = await http.get(f"/v1/cases/{case_id}/deadlines", headers=_auth(token, TOWNSHIP))
    first = next(d for d in seen.json()["deadlines"] if d["kind"] == "first_response")
    assert datetime.fromisoformat(first["due_at"]) == EXTENDED_DUE

    # The old deadline passes without a word; the new ladder climbs from the new times.
    scheduler = EscalationScheduler(
        runtime.sessions, lambda: current_calendar(runtime), clock, counties=runtime.counties
    )
    clock.now = DUE + timedelta(hours=1)
    await scheduler.run_once()
    assert await _staged(runtime, case_id, "whistle.deadline.warning") == []
    assert await _staged(runtime, case_id, "whistle.deadline.overdue") == []
    clock.now = EXTENDED_DUE + timedelta(seconds=1)
    await scheduler.run_once()
    (warning,) = await _staged(runtime, case_id, "whistle.deadline.warning")
    (overdue,) = await _staged(runtime, case_id, "whistle.deadline.overdue")
    assert datetime.fromisoformat(warning["data"]["scheduled_for"]) == EXTENDED_WARN
    assert datetime.fromisoformat(overdue["data"]["due_at"]) == EXTENDED_DUE

    (requested_event,) = await _staged(runtime, case_id, "whistle.deadline.extension_requested")
    (decided_event,) = await _staged(runtime, case_id, "whistle.deadline.extension_decided")
    assert migrated.kafka_bootstrap is not None
    published = await _on_topic(
        migrated.kafka_bootstrap, {requested_event["id"], decided_event["id"]}
    )
    on_topic = published[decided_event["id"]]["data"]
    assert on_topic["approved"] is True
    assert on_topic["request_id"] == request["request_id"]
    assert datetime.fromisoformat(on_topic["old_due_at"]) == DUE
    assert datetime.fromisoformat(on_topic["new_due_at"]) == EXTENDED_DUE
    assert published[requested_event["id"]]["data"]["reason"] == "需协调供电公司到场"

    again = await http.post(
        f"/v1/extensions/{request['request_id']}/decision",
        json={"approved": False},
        headers=_auth(token, ("county_supervisor",)),
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    listed = await http.get(f"/v1/cases/{case_id}/extensions", headers=_auth(token, UNIT))
    assert [e["status"] for e in listed.json()["extensions"]] == ["approved"]


async def test_a_refused_extension_changes_nothing(
    escalation: Escalation, token: TokenFactory
) -> None:
    http, runtime, _ = escalation
    case_id = await _assign(runtime)
    before = await _clock(runtime, case_id, "resolution")
    assert before.id is not None
    ladder = await _steps(runtime, before.id)

    asked = await http.post(
        f"/v1/cases/{case_id}/extensions",
        json={
            "kind": "resolution",
            "requested_due_at": "2026-12-15T17:00:00+08:00",
            "reason": "需等待鉴定结果",
        },
        headers=_auth(token, UNIT),
    )
    assert asked.status_code == 201, asked.text
    refused = await http.post(
        f"/v1/extensions/{asked.json()['request_id']}/decision",
        json={"approved": False, "note": "理由不充分"},
        headers=_auth(token, ("county_supervisor",)),
    )
    assert refused.status_code == 200
    assert refused.json()["status"] == "refused"

    after = await _clock(runtime, case_id, "resolution")
    assert (after.due_at, after.warn_at) == (before.due_at, before.warn_at)
    assert await _steps(runtime, before.id) == ladder
    (decided,) = await _staged(runtime, case_id, "whistle.deadline.extension_decided")
    assert decided["data"]["approved"] is False
    assert decided["data"]["new_due_at"] is None
    assert decided["data"]["decided_by_role"] == "county_supervisor"

    # Once refused, the unit may ask again.
    again = await http.post(
        f"/v1/cases/{case_id}/extensions",
        json={"kind": "resolution", "extra_working_days": 3, "reason": "鉴定已排期"},
        headers=_auth(token, UNIT),
    )
    assert again.status_code == 201


async def test_who_may_ask_and_what(escalation: Escalation, token: TokenFactory) -> None:
    http, runtime, _ = escalation
    case_id = await _assign(runtime)
    url = f"/v1/cases/{case_id}/extensions"
    body = {"kind": "first_response", "extra_working_days": 1, "reason": "现场勘查需要时间"}

    other_unit = await http.post(
        url, json=body, headers=_auth(token, ("unit_member", "unit:T04-TEAM"))
    )
    assert other_unit.status_code == 403
    assert other_unit.headers["content-type"] == "application/problem+json"
    dispatcher = await http.post(url, json=body, headers=_auth(token, TOWNSHIP))
    assert dispatcher.status_code == 403
    unknown = await http.post(
        f"/v1/cases/{uuid4()}/extensions", json=body, headers=_auth(token, UNIT)
    )
    assert unknown.status_code == 404
    both = await http.post(
        url,
        json={**body, "requested_due_at": "2026-11-25T10:00:00+08:00"},
        headers=_auth(token, UNIT),
    )
    assert both.status_code == 422
    earlier = await http.post(
        url,
        json={**body, "extra_working_days": None, "requested_due_at": "2026-11-20T09:00:00+08:00"},
        headers=_auth(token, UNIT),
    )
    assert earlier.status_code == 422
    assert "not later" in earlier.json()["detail"]

    first = await http.post(url, json=body, headers=_auth(token, UNIT))
    assert first.status_code == 201
    second = await http.post(
        url, json={**body, "extra_working_days": 2}, headers=_auth(token, UNIT)
    )
    assert second.status_code == 409
    assert "pending" in second.json()["detail"]
    # The other clock is a clock of its own.
    other_clock = await http.post(
        url, json={**body, "kind": "resolution"}, headers=_auth(token, UNIT)
    )
    assert other_clock.status_code == 201

    elsewhere = await http.post(
        f"/v1/extensions/{first.json()['request_id']}/decision",
        json={"approved": True},
        headers=_auth(token, ("dispatcher", "township:T04")),
    )
    assert elsewhere.status_code == 403
    hidden = await http.get(url, headers=_auth(token, ("unit_member", "unit:T04-TEAM")))
    assert hidden.status_code == 404
    listed = await http.get(url, headers=_auth(token, ("auditor",)))
    assert [e["status"] for e in listed.json()["extensions"]] == ["pending", "pending"]
    (staged,) = [
        e
        for e in await _staged(runtime, case_id, "whistle.deadline.extension_requested")
        if e["data"]["kind"] == "first_response"
    ]
    assert staged["data"]["requested_by_role"] == "unit_member"
    assert (await _clock(runtime, case_id, "first_response")).due_at == DUE


async def test_approval_after_the_clock_stopped_is_refused(
    escalation: Escalation, token: TokenFactory
) -> None:
    http, runtime, _ = escalation
    case_id = await _assign(runtime)
    asked = await http.post(
        f"/v1/cases/{case_id}/extensions",
        json={"kind": "first_response", "extra_working_days": 1, "reason": "联系不上当事人"},
        headers=_auth(token, UNIT),
    )
    assert asked.status_code == 201

    # The unit accepts the case (first response) before anyone decided.
    accepted = CaseAccepted.model_validate(
        {
            "case_id": str(case_id),
            "tip_id": str(uuid4()),
            "actor": "S0025",
            "actor_role": "unit_member",
            "version": 2,
            "township_code": "T03",
            "unit_id": "T03-TEAM",
        }
    )
    at = (ASSIGNED + timedelta(hours=2)).astimezone(UTC)
    async with runtime.transaction() as session:
        await _handlers(runtime).case_accepted(
            session, new_event("whistle/dispatch", str(case_id), accepted, at), "dispatch.cases.v1"
        )

    late = await http.post(
        f"/v1/extensions/{asked.json()['request_id']}/decision",
        json={"approved": True},
        headers=_auth(token, TOWNSHIP),
    )
    assert late.status_code == 409
    assert "stopped" in late.json()["detail"]
    stopped = await _clock(runtime, case_id, "first_response")
    assert (stopped.status, stopped.due_at) == ("met", DUE)
    assert await _staged(runtime, case_id, "whistle.deadline.extension_decided") == []
    # Refusing still closes the request.
    closed = await http.post(
        f"/v1/extensions/{asked.json()['request_id']}/decision",
        json={"approved": False, "note": "已受理，无需延期"},
        headers=_auth(token, TOWNSHIP),
    )
    assert closed.status_code == 200


async def test_an_extended_resolution_clock_moves_the_reply_clocks_due_with_it(
    escalation: Escalation, token: TokenFactory
) -> None:
    http, runtime, clock = escalation
    case_id = await _assign(runtime)
    # CGJ is summoned an hour after the assignment: its reply is due with the case's resolution
    # clock (Monday 30 Nov 10:00, warned Thursday 26th 11:37:30).
    clock.advance(timedelta(hours=1))
    blown = whistle(case_id, ["CGJ"])
    async with runtime.transaction() as session:
        await _handlers(runtime).whistle_blown(
            session, new_event("whistle/dispatch", str(case_id), blown, clock.now), CASES
        )
    resolution = await _clock(runtime, case_id, "resolution")
    reply = await _clock(runtime, case_id, "whistle_reply")
    receipt = await _clock(runtime, case_id, "whistle_receipt")
    assert (reply.due_at, reply.warn_at) == (resolution.due_at, resolution.warn_at)

    asked = await http.post(
        f"/v1/cases/{case_id}/extensions",
        json={"kind": "resolution", "extra_working_days": 3, "reason": "需等待检测报告"},
        headers=_auth(token, UNIT),
    )
    assert asked.status_code == 201, asked.text
    decided = await http.post(
        f"/v1/extensions/{asked.json()['request_id']}/decision",
        json={"approved": True},
        headers=_auth(token, TOWNSHIP),
    )
    assert decided.status_code == 200, decided.text

    new_due, new_warn = local(2026, 12, 3, 10, 0), local(2026, 12, 1, 11, 37, 30)
    assert (await _clock(runtime, case_id, "resolution")).due_at == new_due
    moved = await _clock(runtime, case_id, "whistle_reply")
    assert (moved.due_at, moved.warn_at, moved.status) == (new_due, new_warn, "running")
    assert moved.id is not None and receipt.id is not None
    assert await _steps(runtime, moved.id) == [
        (1, "warning", reply.warn_at, "cancelled"),
        (2, "warning", new_warn, "pending"),
    ]
    # The receipt clock is not the case's deadline: it stays.
    assert (await _clock(runtime, case_id, "whistle_receipt")).due_at == receipt.due_at
    assert await _steps(runtime, receipt.id) == [(1, "warning", receipt.warn_at, "pending")]

    records = await _staged(runtime, case_id, "whistle.deadline.extension_decided")
    assert [(r["data"]["kind"], r["data"]["whistle_id"]) for r in records] == [
        ("resolution", None),
        ("whistle_reply", str(blown.whistle_id)),
    ]
    for_reply = records[1]["data"]
    assert for_reply["request_id"] == asked.json()["request_id"]
    assert for_reply["department_code"] == "CGJ"
    assert datetime.fromisoformat(for_reply["new_due_at"]) == new_due
    async with runtime.sessions() as session:
        copies = (
            await session.scalars(
                select(OutboxMessage.event).where(
                    OutboxMessage.key == str(case_id),
                    OutboxMessage.topic == department_topic("CGJ"),
                )
            )
        ).all()
    assert [c["copyof"] for c in copies if "copyof" in c] == [records[1]["id"]]
