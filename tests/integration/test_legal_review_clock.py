"""法制审核 on a clock of its own (issue #14, item 4), through dispatch's HTTP API and the broker:
a major penalty decision put to legal review starts escalation's ``legal_review`` clock, due the
policy's five working days on the business calendar; the reviewer's approval stops it on time;
one left alone goes overdue and climbs the ladder (催办); a return and a resubmission review it
again on a new round. The console shows the clock on the case page and the due time on the
legal review queue; the ledger's trail holds the clock's set, overdue and stopped events; a
request for a case escalation keeps no clocks for is dead-lettered. The
sample county's data; dispatch and escalation share a clock moved by hand from Monday 16
November 2026, 09:00 in the county (November 2026 has no holidays)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from uuid6 import uuid7

from contracts.envelope import new_event
from contracts.events import CaseLegalReviewRequested, Penalty
from contracts.topics import CASES, dlq_topic
from services.escalation.models import CaseDeadline, EscalationStep
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.integration.conftest import MovableClock
from tests.integration.test_escalation_clocks import local
from tests.integration.test_legal_review import _in_progress, _penalised
from tests.support.infra import Infra, eventually, find_on_topic
from tests.support.tips import act, bearer

MONDAY_9 = local(2026, 11, 16, 9, 0)  # where fixed_clock starts (conftest)
MAJOR = _penalised(["fine"], 20000)  # above the sample list's 10000 yuan: 重大执法决定


async def _review_clock(escalation: Runtime, case_id: UUID, round_: int) -> CaseDeadline | None:
    async with escalation.sessions() as session:
        return await session.scalar(
            select(CaseDeadline).where(
                CaseDeadline.case_id == case_id,  # type: ignore[arg-type]
                CaseDeadline.kind == "legal_review",  # type: ignore[arg-type]
                CaseDeadline.round == round_,  # type: ignore[arg-type]
            )
        )


async def _stopped(escalation: Runtime, case_id: UUID, round_: int) -> CaseDeadline:
    async def probe() -> CaseDeadline | None:
        found = await _review_clock(escalation, case_id, round_)
        return found if found is not None and found.status != "running" else None

    return await eventually(probe, what=f"legal review round {round_} stopped")


async def _fired(escalation: Runtime, clock_id: int, step: str) -> EscalationStep | None:
    async with escalation.sessions() as session:
        return await session.scalar(
            select(EscalationStep).where(
                EscalationStep.deadline_id == clock_id,  # type: ignore[arg-type]
                EscalationStep.step == step,  # type: ignore[arg-type]
                EscalationStep.fired_at.is_not(None),  # type: ignore[union-attr]
            )
        )


async def _review_trail(
    ledger: httpx.AsyncClient, token: TokenFactory, case_id: UUID, stops: int
) -> list[dict[str, Any]]:
    """The legal review clock's events in the case's trail, once ``stops`` rounds stopped."""
    auditor = bearer(token, "auditor")

    async def probe() -> list[dict[str, Any]] | None:
        got = await ledger.get(f"/v1/cases/{case_id}/trail", headers=auditor)
        review = [e["event"] for e in got.json()["entries"] if _review_kind(e["event"])]
        done = [e for e in review if e["type"] == "whistle.deadline.stopped"]
        return review if len(done) == stops else None

    return await eventually(probe, what="the legal review clock in the ledger")


def _review_kind(event: dict[str, Any]) -> bool:
    data = event["data"]
    kinds = [d["kind"] for d in data.get("deadlines", [])] + [data.get("kind")]
    return "legal_review" in kinds


async def test_an_approval_stops_the_review_clock_on_time(
    dispatch_at: tuple[httpx.AsyncClient, Runtime],
    escalation: Runtime,
    ledger: httpx.AsyncClient,
    token: TokenFactory,
    fixed_clock: MovableClock,
) -> None:
    client, runtime = dispatch_at
    reviewer = bearer(token, "legal_reviewer")
    case, unit = await _in_progress(client, runtime, token, "有人无照经营加工厂", "SC-001")
    held = await act(client, case.id, "resolve", unit, MAJOR)
    assert held.json()["status"] == "legal_review", held.text

    clock = await eventually(
        lambda: _review_clock(escalation, case.id, 1), what="the legal review clock"
    )
    # P-GENERAL: five working days from Monday 09:00 is the next Monday 09:00; the warning at
    # 75 % of 32.5 working hours, Thursday 16:22:30 (working hours 08:30–12:00, 14:30–17:30).
    assert (clock.status, clock.started_at, clock.due_at, clock.warn_at) == (
        "running",
        MONDAY_9,
        local(2026, 11, 23, 9, 0),
        local(2026, 11, 19, 16, 22, 30),
    )

    # The console: the clock on the case page, the due time on the legal review queue.
    async def on_console() -> list[dict[str, Any]] | None:
        page = (await client.get(f"/v1/console/cases/{case.id}", headers=reviewer)).json()
        return [c for c in page["clocks"] if c["kind"] == "legal_review"] or None

    [shown] = await eventually(on_console, what="the review clock on the console")
    assert (shown["round"], shown["colour"], shown["stopped_at"]) == (1, "green", None)
    queue = (await client.get("/v1/console/legal-review", headers=reviewer)).json()
    [row] = [r for r in queue if r["id"] == str(case.id)]
    due = datetime.fromisoformat(row["review_due_at"])
    assert (due, row["review_colour"]) == (local(2026, 11, 23, 9, 0), "green")

    fixed_clock.now = local(2026, 11, 18, 10, 0)  # Wednesday: reviewed well within the time
    approved = await act(client, case.id, "legal-review", reviewer, {"decision": "approve"})
    assert approved.json()["status"] == "resolved", approved.text
    stopped = await _stopped(escalation, case.id, 1)
    assert (stopped.status, stopped.stopped_at) == ("met", local(2026, 11, 18, 10, 0))

    review = await _review_trail(ledger, token, case.id, stops=1)
    assert [e["type"] for e in review] == ["whistle.deadlines.set", "whistle.deadline.stopped"]
    stop = review[-1]["data"]
    assert (stop["on_time"], stop["stopped_by"]) == (True, "whistle.case.legal_review_decided")


async def test_an_unreviewed_decision_goes_overdue_and_a_resubmission_is_a_new_round(
    dispatch_at: tuple[httpx.AsyncClient, Runtime],
    escalation: Runtime,
    ledger: httpx.AsyncClient,
    token: TokenFactory,
    fixed_clock: MovableClock,
) -> None:
    client, runtime = dispatch_at
    reviewer = bearer(token, "legal_reviewer")
    fixed_clock.now = local(2026, 11, 19, 15, 0)  # Thursday afternoon
    case, unit = await _in_progress(client, runtime, token, "有人无照经营批发部", "SC-001")
    assert (await act(client, case.id, "resolve", unit, MAJOR)).json()["status"] == "legal_review"
    clock = await eventually(
        lambda: _review_clock(escalation, case.id, 1), what="the legal review clock"
    )
    # Five working days from Thursday 15:00, over the weekend: the next Thursday 15:00.
    assert clock.due_at == local(2026, 11, 26, 15, 0)
    assert clock.id is not None

    # Nobody reviews it. Past its due time the scheduler fires the warning and the overdue; a
    # working day later the chase (催办).
    fixed_clock.now = local(2026, 11, 26, 15, 30)
    overdue = await eventually(lambda: _fired(escalation, clock.id, "overdue"), what="overdue")
    assert overdue.due_at == local(2026, 11, 26, 15, 0)

    async def red_on_the_queue() -> dict[str, Any] | None:
        queue = (await client.get("/v1/console/legal-review", headers=reviewer)).json()
        [row] = [r for r in queue if r["id"] == str(case.id)]
        return row if row["review_colour"] == "red" else None

    await eventually(red_on_the_queue, what="the review overdue on the queue")
    fixed_clock.now = local(2026, 11, 27, 15, 30)  # Friday: one working day after the deadline
    chase = await eventually(lambda: _fired(escalation, clock.id, "chase"), what="the chase")
    assert chase.due_at == local(2026, 11, 27, 15, 0)

    # Returned late with an opinion: round 1 stops late.
    opinion = "罚款数额依据不足，请补充违法所得核定材料"
    returned = await act(
        client, case.id, "legal-review", reviewer, {"decision": "return", "opinion": opinion}
    )
    assert returned.json()["status"] == "in_progress", returned.text
    first = await _stopped(escalation, case.id, 1)
    assert (first.status, first.late_by_seconds) == ("late", 24 * 3600 + 30 * 60)

    # Decided again on Monday: reviewed again, round 2, counted from the new request.
    fixed_clock.now = local(2026, 11, 30, 10, 0)
    again = await act(client, case.id, "resolve", unit, _penalised(["fine"], 15000))
    assert again.json()["status"] == "legal_review", again.text
    second = await eventually(
        lambda: _review_clock(escalation, case.id, 2), what="the second round"
    )
    assert (second.status, second.started_at, second.due_at) == (
        "running",
        local(2026, 11, 30, 10, 0),
        local(2026, 12, 7, 10, 0),
    )
    approved = await act(client, case.id, "legal-review", reviewer, {"decision": "approve"})
    assert approved.json()["status"] == "resolved", approved.text
    assert (await _stopped(escalation, case.id, 2)).status == "met"

    # The trail: round 1 set, warned, overdue, chased, stopped; round 2 set and stopped.
    review = await _review_trail(ledger, token, case.id, stops=2)
    assert [(e["type"], _round(e)) for e in review] == [
        ("whistle.deadlines.set", 1),
        ("whistle.deadline.warning", 1),
        ("whistle.deadline.overdue", 1),
        ("whistle.case.chased", 1),
        ("whistle.deadline.stopped", 1),
        ("whistle.deadlines.set", 2),
        ("whistle.deadline.stopped", 2),
    ]


def _round(event: dict[str, Any]) -> int:
    data = event["data"]
    return int(data["round"] if "round" in data else data["deadlines"][0]["round"])


async def test_a_review_of_a_case_without_clocks_is_dead_lettered(
    escalation: Runtime, producer: AIOKafkaProducer, infra: Infra
) -> None:
    """A case escalation keeps no clocks for (assigned before it kept them) gives no policy to
    count the review by: the request is parked on the dead-letter topic, never guessed."""
    case_id = uuid7()
    requested = CaseLegalReviewRequested(
        case_id=case_id,
        tip_id=uuid7(),
        actor="S0500",
        actor_role="unit_member",
        version=5,
        township_code="T03",
        unit_id="T03-SCJGJ",
        review_id=uuid7(),
        note="依法作出行政处罚决定",
        penalty=Penalty(kinds=["fine"], fine_yuan=20000),
        major_decisions=["罚款金额超过10000元"],
    )
    event = new_event("whistle/dispatch", str(case_id), requested, MONDAY_9)
    await producer.send_and_wait(CASES, event.to_bytes(), key=str(case_id).encode())
    await find_on_topic(infra.bootstrap, dlq_topic(CASES), lambda e: e.get("id") == event.id)
    assert await _review_clock(escalation, case_id, 1) is None
