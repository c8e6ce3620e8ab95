"""The whistle protocol (吹哨报到) end to end in escalation: a real database, the real broker,
the HTTP API in process, and time moved by hand (no sleeping).

Dispatch is played by producing ``WhistleBlown`` (and ``CaseAssigned``) onto
``dispatch.cases.v1``; departments answer over HTTP or by producing onto
``escalation.whistles.v1``. Times are Asia/Shanghai, worked out by hand on the business
calendar (working hours 08:30–12:00 and 14:30–17:30; November 2026 has no holidays).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from sqlalchemy import func, select

from contracts.envelope import CONTENT_TYPE, EventData, new_event
from contracts.events import (
    CaseAssigned,
    CaseClosed,
    WhistleBlown,
    WhistleReceiptSubmitted,
    WhistleReplySubmitted,
)
from contracts.topics import CASES, DEADLINES, LEADERSHIP, WHISTLES, department_topic, dlq_topic
from services.escalation.app import create_app
from services.escalation.calendar_watch import current_calendar
from services.escalation.models import CaseDeadline, EscalationStep
from services.escalation.scheduler import EscalationScheduler
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.conftest import MovableClock
from tests.integration.test_escalation_clocks import local
from tests.support.files import png
from tests.support.infra import eventually

LADDER = {
    "whistle.deadline.warning": "warning",
    "whistle.deadline.overdue": "overdue",
    "whistle.case.chased": "chase",
    "whistle.case.supervised": "supervise",
}


class Escalation:
    def __init__(self, http: httpx.AsyncClient, runtime: Runtime, clock: MovableClock) -> None:
        self.http = http
        self.runtime = runtime
        self.clock = clock

    async def events(self, whistle_id: UUID | None = None) -> list[dict[str, Any]]:
        """Every event escalation wrote about the whistle, in write order, with its topic."""
        async with self.runtime.sessions() as session:
            rows = (
                await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))  # type: ignore[arg-type]
            ).all()
        return [
            {**r.event, "topic": r.topic}
            for r in rows
            if whistle_id is None or r.event["data"].get("whistle_id") == str(whistle_id)
        ]


@pytest.fixture(scope="module")
async def escalation(migrated: Settings) -> AsyncIterator[Escalation]:
    clock = MovableClock(local(2026, 11, 16, 9, 0))
    settings = migrated.model_copy(update={"escalation_scheduler_interval_seconds": 0.05})
    app = create_app(settings, clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Escalation(client, app.state.runtime, clock)


async def produce(
    producer: AIOKafkaProducer,
    topic: str,
    data: EventData,
    at: datetime,
    source: str,
    token: str | None = None,
    county: str | None = None,
) -> str:
    """Put ``data`` on ``topic`` as ``source`` would; a department's submission carries its
    ``token`` in the ``authorization`` header."""
    event = new_event(source, str(data.case_id), data, at.astimezone(UTC), county)  # type: ignore[attr-defined]
    headers = [("content-type", CONTENT_TYPE.encode())]
    if token is not None:
        headers.append(("authorization", f"Bearer {token}".encode()))
    await producer.send_and_wait(
        topic,
        value=event.to_bytes(),
        key=str(data.case_id).encode(),  # type: ignore[attr-defined]
        headers=headers,
    )
    return event.id


def whistle(case_id: UUID, departments: list[str], urgency: str = "general") -> WhistleBlown:
    return WhistleBlown(
        case_id=case_id,
        tip_id=uuid4(),
        actor="S0003",
        actor_role="dispatcher",
        version=3,
        township_code="T03",
        unit_id="T03-TEAM",
        whistle_id=uuid4(),
        departments=departments,
        reason_code="beyond_capacity",
        reason="占道经营涉及多个部门，乡镇无力单独处置",
        rule="test",
        matter_code="CG-012",
        urgency=urgency,  # type: ignore[arg-type]
    )


async def blow(producer: AIOKafkaProducer, blown: WhistleBlown, at: datetime) -> None:
    await produce(producer, CASES, blown, at, "whistle/dispatch")


async def find_on_topic(
    bootstrap: str, topic: str, match: Callable[[ConsumerRecord], bool], count: int = 1
) -> list[ConsumerRecord]:
    """Read ``topic`` from the start until ``count`` records match (no consumer group)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + 20
        while len(found) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"found {len(found)} of {count} records on {topic}")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(r for r in records if match(r))
    finally:
        await consumer.stop()
    return found


def about(whistle_id: UUID, event_type: str | None = None) -> Callable[[ConsumerRecord], bool]:
    def match(record: ConsumerRecord) -> bool:
        event = json.loads(record.value)
        return event["data"].get("whistle_id") == str(whistle_id) and (
            event_type is None or event["type"] == event_type
        )

    return match


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def summoned(escalation: Escalation, token: str, department: str, whistle_id: UUID) -> dict:
    async def probe() -> dict | None:
        response = await escalation.http.get(
            "/v1/whistles", params={"department": department}, headers=auth(token)
        )
        assert response.status_code == 200, response.text
        return next(
            (w for w in response.json()["whistles"] if w["whistle_id"] == str(whistle_id)), None
        )

    return await eventually(probe, what=f"whistle {whistle_id} listed for {department}")


async def test_notice_receipt_on_time_then_reply_stops_both_clocks(
    escalation: Escalation,
    producer: AIOKafkaProducer,
    migrated: Settings,
    token: TokenFactory,
) -> None:
    case_id = uuid4()
    # Assigned Monday 16 Nov 09:00 under P-GENERAL: resolution due 7 working days later,
    # Wednesday 25 Nov 09:00, warned Monday 23 Nov 10:37:30 (34 h 7 min 30 s of working time).
    assigned = CaseAssigned.model_validate(
        {
            "case_id": str(case_id),
            "tip_id": str(uuid4()),
            "unit_id": "T03-TEAM",
            "unit_kind": "township_team",
            "township_code": "T03",
            "staff_id": None,
            "matter_code": "CG-012",
            "authority": "devolved",
            "urgency": "general",
            "deadline_policy": "P-GENERAL",
            "catalogue_version": "test",
            "rule": "test",
            "explanation": [],
        }
    )
    await produce(producer, CASES, assigned, local(2026, 11, 16, 9, 0), "whistle/dispatch")
    blown = whistle(case_id, ["CGJ", "SCJGJ"])
    start = local(2026, 11, 19, 10, 0)  # Thursday
    escalation.clock.now = start
    await blow(producer, blown, start)

    cgj = token("county_department", "dept:CGJ")
    listed = await summoned(escalation, cgj, "CGJ", blown.whistle_id)
    assert listed["status"] == "awaiting_receipt"
    assert datetime.fromisoformat(listed["receipt"]["due_at"]) == local(2026, 11, 20, 10, 0)
    assert datetime.fromisoformat(listed["reply"]["due_at"]) == local(2026, 11, 25, 9, 0)
    assert listed["reason"] == blown.reason and listed["township_code"] == "T03"

    (record,) = await find_on_topic(
        migrated.kafka_bootstrap or "", department_topic("CGJ"), about(blown.whistle_id)
    )
    notice = json.loads(record.value)
    assert notice["type"] == "whistle.whistle.notified" and record.key == str(case_id).encode()
    assert notice["data"]["department_code"] == "CGJ"
    assert datetime.fromisoformat(notice["data"]["receipt_due_at"]) == local(2026, 11, 20, 10, 0)
    assert datetime.fromisoformat(notice["data"]["reply_due_at"]) == local(2026, 11, 25, 9, 0)
    await find_on_topic(
        migrated.kafka_bootstrap or "", department_topic("SCJGJ"), about(blown.whistle_id)
    )

    # Another department's token may neither act on nor see CGJ's summons.
    gaj = token("county_department", "dept:GAJ")
    url = f"/v1/whistles/{blown.whistle_id}/receipt"
    refused = await escalation.http.post(url, json={"receipt_no": "X"}, headers=auth(gaj))
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    listing = await escalation.http.get(
        "/v1/whistles", params={"department": "CGJ"}, headers=auth(gaj)
    )
    assert listing.status_code == 403
    unknown = await escalation.http.post(
        f"/v1/whistles/{uuid4()}/receipt", json={"receipt_no": "X"}, headers=auth(cgj)
    )
    assert unknown.status_code == 404
    empty = await escalation.http.post(url, json={"receipt_no": ""}, headers=auth(cgj))
    assert empty.status_code == 422

    # 报到 three hours after the whistle, on time.
    escalation.clock.now = local(2026, 11, 19, 13, 0)
    reported = await escalation.http.post(
        url, json={"receipt_no": "CGJ-2026-0117"}, headers=auth(cgj)
    )
    assert reported.status_code == 201, reported.text
    body = reported.json()
    assert (body["on_time"], body["latency_seconds"], body["via"]) == (True, 3 * 3600, "http")
    assert body["actor"] == "test-county_department"
    again = await escalation.http.post(url, json={"receipt_no": "CGJ-2026-0118"}, headers=auth(cgj))
    assert again.status_code == 409, again.text

    # SCJGJ replies before reporting in: refused, nothing recorded.
    scjgj = token("county_department", "dept:SCJGJ")
    early = await escalation.http.post(
        f"/v1/whistles/{blown.whistle_id}/reply", json={"result": "已处理"}, headers=auth(scjgj)
    )
    assert early.status_code == 409 and early.json()["type"].endswith("receipt-required")

    escalation.clock.now = local(2026, 11, 24, 16, 0)
    result = "已会同乡镇清理占道摊点，设置临时疏导区"
    reply_url = f"/v1/whistles/{blown.whistle_id}/reply"
    # A reply cites only files the department uploaded for this whistle: refused, nothing kept.
    unproven = await escalation.http.post(
        reply_url, json={"result": result, "evidence": ["a" * 64]}, headers=auth(cgj)
    )
    assert unproven.status_code == 422, unproven.text
    assert (unproven.json()["title"], unproven.json()["unknown"]) == ("证据文件不存在", ["a" * 64])
    # Another department summoned by the whistle may not upload in CGJ's name, nor a stranger.
    evidence_url = f"/v1/whistles/{blown.whistle_id}/evidence"
    stranger = token("county_department", "dept:WSJKJ")
    photo = {"file": ("现场.png", png(21))}
    assert (
        await escalation.http.post(evidence_url, files=photo, headers=auth(stranger))
    ).status_code == 403
    uploaded = await escalation.http.post(evidence_url, files=photo, headers=auth(cgj))
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["department_code"] == "CGJ"
    replied = await escalation.http.post(
        reply_url, json={"result": result, "evidence": [uploaded.json()["id"]]}, headers=auth(cgj)
    )
    assert replied.status_code == 201, replied.text
    assert replied.json()["evidence"] == [uploaded.json()["id"]]
    assert replied.json()["on_time"] is True

    events = await escalation.events(blown.whistle_id)
    stopped = [e["data"] for e in events if e["type"] == "whistle.deadline.stopped"]
    assert [(s["kind"], s["department_code"], s["on_time"]) for s in stopped] == [
        ("whistle_receipt", "CGJ", True),
        ("whistle_reply", "CGJ", True),
    ]
    assert stopped[0]["stopped_by"] == "whistle.whistle.reported"
    recorded = [(e["type"], e["topic"]) for e in events if e["topic"] == WHISTLES]
    assert recorded == [
        ("whistle.whistle.reported", WHISTLES),
        ("whistle.whistle.replied", WHISTLES),
    ]
    await find_on_topic(
        migrated.kafka_bootstrap or "", WHISTLES, about(blown.whistle_id, "whistle.whistle.replied")
    )

    # CGJ is done; SCJGJ, which never reported in, is overdue by now (Tuesday 24th 16:00).
    open_cgj = await escalation.http.get(
        "/v1/whistles", params={"department": "CGJ"}, headers=auth(cgj)
    )
    assert str(blown.whistle_id) not in open_cgj.text
    overdue = await escalation.http.get(
        "/v1/whistles", params={"department": "SCJGJ", "state": "overdue"}, headers=auth(scjgj)
    )
    (late,) = [w for w in overdue.json()["whistles"] if w["whistle_id"] == str(blown.whistle_id)]
    assert late["status"] == "receipt_overdue"
    supervisor = token("county_supervisor")
    everything = await escalation.http.get("/v1/whistles", headers=auth(supervisor))
    assert [
        w["department_code"]
        for w in everything.json()["whistles"]
        if w["whistle_id"] == str(blown.whistle_id)
    ] == ["SCJGJ"]


async def test_a_missing_receipt_climbs_the_ladder_once_each_with_copies_for_the_department(
    escalation: Escalation, producer: AIOKafkaProducer, migrated: Settings, token: TokenFactory
) -> None:
    blown = whistle(uuid4(), ["CGJ"])
    start = local(2026, 11, 19, 10, 0)  # Thursday; no case clock: reply in 7 working days
    escalation.clock.now = start
    await blow(producer, blown, start)
    cgj = token("county_department", "dept:CGJ")
    await summoned(escalation, cgj, "CGJ", blown.whistle_id)

    receipt_ladder = {
        "warning": local(2026, 11, 19, 17, 22, 30),  # 75 % of a working day
        "overdue": local(2026, 11, 20, 10, 0),
        "chase": local(2026, 11, 23, 10, 0),  # a working day later, over the weekend
        "supervise": local(2026, 11, 26, 10, 0),  # three working days after the chase
    }

    async def fired() -> list[tuple[str, str]]:
        return [
            (LADDER[e["type"]], e["data"]["kind"])
            for e in await escalation.events(blown.whistle_id)
            if e["type"] in LADDER and e["topic"] == DEADLINES
        ]

    expected: list[tuple[str, str]] = []
    for step, at in receipt_ladder.items():
        escalation.clock.now = at
        expected.append((step, "whistle_receipt"))

        async def caught_up() -> bool:
            return await fired() == expected

        await eventually(caught_up, what=f"the receipt clock's {step}")

    events = await escalation.events(blown.whistle_id)
    ladder = [e for e in events if e["type"] in LADDER and e["topic"] == DEADLINES]
    for event, (step, at) in zip(ladder, receipt_ladder.items(), strict=True):
        data = event["data"]
        assert datetime.fromisoformat(data["scheduled_for"]) == at, step
        assert (data["whistle_id"], data["department_code"]) == (str(blown.whistle_id), "CGJ")
    supervision = ladder[-1]
    (leadership,) = [e for e in events if e["topic"] == LEADERSHIP]
    assert leadership["data"]["supervision_event_id"] == supervision["id"]
    assert leadership["data"]["department_code"] == "CGJ"
    copies = [e for e in events if e["topic"] == department_topic("CGJ")]
    assert [e["type"] for e in copies] == [
        "whistle.whistle.notified",
        "whistle.case.chased",
        "whistle.case.supervised",
    ]
    assert copies[2]["copyof"] == supervision["id"] and copies[2]["data"] == supervision["data"]
    on_topic = await find_on_topic(
        migrated.kafka_bootstrap or "", department_topic("CGJ"), about(blown.whistle_id), count=3
    )
    assert [json.loads(r.value)["type"] for r in on_topic][1:] == [
        "whistle.case.chased",
        "whistle.case.supervised",
    ]

    # Reported in late on Thursday 26th at 11:00; the reply clock's warning (Thursday 26th
    # 11:37:30, 75 % of seven working days) still comes, and nothing of the receipt's again.
    escalation.clock.now = local(2026, 11, 26, 11, 0)
    late = await escalation.http.post(
        f"/v1/whistles/{blown.whistle_id}/receipt",
        json={"receipt_no": "CGJ-0009"},
        headers=auth(cgj),
    )
    assert late.status_code == 201
    body = late.json()
    assert body["on_time"] is False
    assert body["latency_seconds"] == 7 * 86400 + 3600
    escalation.clock.now = local(2026, 11, 26, 12, 0)
    expected.append(("warning", "whistle_reply"))

    async def reply_warned() -> bool:
        return await fired() == expected

    await eventually(reply_warned, what="the reply clock's warning")
    listed = await summoned(escalation, cgj, "CGJ", blown.whistle_id)
    assert listed["status"] == "awaiting_reply" and listed["receipt_no"] == "CGJ-0009"
    assert listed["receipt"]["status"] == "late"


async def test_kafka_submissions_are_recorded_and_the_wrong_department_is_dead_lettered(
    escalation: Escalation, producer: AIOKafkaProducer, migrated: Settings, token: TokenFactory
) -> None:
    bootstrap = migrated.kafka_bootstrap or ""
    blown = whistle(uuid4(), ["YJGLJ"], urgency="emergency")
    start = local(2026, 11, 21, 22, 30)  # Saturday night: 2 hours, natural time
    escalation.clock.now = start
    await blow(producer, blown, start)
    await find_on_topic(bootstrap, department_topic("YJGLJ"), about(blown.whistle_id))

    def receipt(
        department: str, number: str, whistle_id: UUID | None = None
    ) -> WhistleReceiptSubmitted:
        return WhistleReceiptSubmitted(
            case_id=blown.case_id,
            whistle_id=whistle_id or blown.whistle_id,
            department_code=department,
            receipt_no=number,
            officer="应急局值班员",
        )

    source = "whistle/dept/yjglj"
    yjglj, gaj = token("county_department", "dept:YJGLJ"), token("county_department", "dept:GAJ")
    escalation.clock.now = local(2026, 11, 21, 23, 10)
    wrong = await produce(
        producer, WHISTLES, receipt("GAJ", "GAJ-1"), start, "whistle/dept/gaj", gaj
    )
    stray = await produce(
        producer, WHISTLES, receipt("YJGLJ", "Y-0", uuid4()), start, source, yjglj
    )
    await produce(producer, WHISTLES, receipt("YJGLJ", "YJ-1"), start, source, yjglj)
    await produce(producer, WHISTLES, receipt("YJGLJ", "YJ-2"), start, source, yjglj)  # ignored
    reply = WhistleReplySubmitted(
        case_id=blown.case_id,
        whistle_id=blown.whistle_id,
        department_code="YJGLJ",
        result="已排除险情",
    )
    # A reply citing a file never uploaded for the whistle is dead-lettered, nothing recorded.
    unproven = await produce(
        producer,
        WHISTLES,
        reply.model_copy(update={"evidence": ["b" * 64]}),
        start,
        source,
        yjglj,
    )
    await produce(producer, WHISTLES, reply, start, source, yjglj)

    (replied,) = await find_on_topic(
        bootstrap, WHISTLES, about(blown.whistle_id, "whistle.whistle.replied")
    )
    assert json.loads(replied.value)["data"]["via"] == "kafka"
    events = await escalation.events(blown.whistle_id)
    reported = [e["data"] for e in events if e["type"] == "whistle.whistle.reported"]
    assert len(reported) == 1, "the second receipt is ignored"
    assert (reported[0]["receipt_no"], reported[0]["on_time"], reported[0]["via"]) == (
        "YJ-1",
        True,
        "kafka",
    )
    assert reported[0]["latency_seconds"] == 40 * 60
    assert reported[0]["actor"] == "应急局值班员"

    dead = await find_on_topic(
        bootstrap,
        dlq_topic(WHISTLES),
        lambda r: json.loads(r.value)["id"] in (wrong, stray, unproven),
        count=3,
    )
    reasons = {json.loads(r.value)["id"]: dict(r.headers)["dlq-reason"].decode() for r in dead}
    assert "did not summon department GAJ" in reasons[wrong]
    assert "no whistle" in reasons[stray]
    assert f"unknown evidence: {'b' * 64}" in reasons[unproven]


async def test_closing_the_case_lapses_its_whistle_clocks_and_nothing_climbs_after(
    escalation: Escalation, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    blown = whistle(uuid4(), ["CGJ"])
    start = local(2026, 11, 19, 10, 0)  # Thursday; receipt due Friday 10:00, reply 30 Nov
    escalation.clock.now = start
    await blow(producer, blown, start)
    cgj = token("county_department", "dept:CGJ")
    await summoned(escalation, cgj, "CGJ", blown.whistle_id)

    async def ladder() -> list[tuple[str, str]]:
        return [
            (LADDER[e["type"]], e["data"]["kind"])
            for e in await escalation.events(blown.whistle_id)
            if e["type"] in LADDER and e["topic"] == DEADLINES
        ]

    escalation.clock.now = local(2026, 11, 20, 10, 30)

    async def overdue() -> bool:
        return await ladder() == [("warning", "whistle_receipt"), ("overdue", "whistle_receipt")]

    await eventually(overdue, what="the receipt clock overdue")

    # The township closes the case on Friday at 15:00; CGJ never reported in.
    closed_at = local(2026, 11, 20, 15, 0)
    closed = CaseClosed(
        case_id=blown.case_id,
        tip_id=blown.tip_id,
        actor="S0003",
        actor_role="dispatcher",
        version=7,
        township_code="T03",
        unit_id="T03-TEAM",
    )
    escalation.clock.now = closed_at
    await produce(producer, CASES, closed, closed_at, "whistle/dispatch")

    async def stops() -> list[dict[str, Any]]:
        found = [
            e["data"]
            for e in await escalation.events(blown.whistle_id)
            if e["type"] == "whistle.deadline.stopped"
        ]
        return found if len(found) == 2 else []

    stopped = {s["kind"]: s for s in await eventually(stops, what="both clocks stopped")}
    for kind, late_by in (("whistle_receipt", 5 * 3600), ("whistle_reply", 0)):
        data = stopped[kind]
        assert data["stopped_by"] == "whistle.case.closed"
        assert datetime.fromisoformat(data["stopped_at"]) == closed_at
        assert (data["lapsed"], data["on_time"], data["late_by_seconds"]) == (True, False, late_by)
        assert (data["department_code"], data["premature_steps"]) == ("CGJ", [])

    async with escalation.runtime.sessions() as session:
        clocks = (
            await session.scalars(
                select(CaseDeadline).where(CaseDeadline.whistle_id == blown.whistle_id)
            )
        ).all()
        pending = await session.scalar(
            select(func.count())
            .select_from(EscalationStep)
            .where(
                EscalationStep.deadline_id.in_([c.id for c in clocks]),  # type: ignore[attr-defined]
                EscalationStep.fired_at.is_(None),  # type: ignore[union-attr]
                EscalationStep.cancelled_at.is_(None),  # type: ignore[union-attr]
            )
        )
    assert {c.status for c in clocks} == {"lapsed"} and pending == 0
    listed = await escalation.http.get(
        "/v1/whistles", params={"department": "CGJ"}, headers=auth(cgj)
    )
    assert str(blown.whistle_id) not in listed.text

    # Past the chase, the supervision and the reply deadline: a pass fires nothing of it.
    escalation.clock.now = local(2026, 12, 10, 10, 0)
    scheduler = EscalationScheduler(
        escalation.runtime.sessions,
        lambda: current_calendar(escalation.runtime),
        escalation.clock,
        counties=escalation.runtime.counties,
    )
    await scheduler.run_once()
    assert await ladder() == [("warning", "whistle_receipt"), ("overdue", "whistle_receipt")]
    assert not [e for e in await escalation.events(blown.whistle_id) if e["topic"] == LEADERSHIP]


async def test_a_department_filter_that_is_no_code_is_refused_with_a_problem(
    escalation: Escalation, token: TokenFactory
) -> None:
    # Found by fuzzing (tests/integration/test_fuzzing.py): a NUL reached PostgreSQL, 500.
    supervisor = token("county_supervisor", "dept:*")
    for department in ("\x00", "CGJ\x00", "CG J", "x" * 65):
        listing = await escalation.http.get(
            "/v1/whistles", params={"department": department}, headers=auth(supervisor)
        )
        assert listing.status_code == 422, (department, listing.text)
        assert listing.headers["content-type"] == "application/problem+json"
    known = await escalation.http.get(
        "/v1/whistles", params={"department": "CGJ"}, headers=auth(supervisor)
    )
    assert known.status_code == 200, known.text
