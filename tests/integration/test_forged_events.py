"""Whoever can write a topic cannot write history (issue 13): escalation in process against the
real broker and database, events produced as a department's system or a forger would.

An event goes to ``<topic>.dlq`` with the reason, and changes nothing, when its type is not
carried by the topic it arrived on, when its ``source`` is not the topic's producer, or when a
department's submission lacks the department's token or acts for another department.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from aiokafka import AIOKafkaProducer
from sqlalchemy import select

from contracts.envelope import CONTENT_TYPE, new_event
from contracts.events import CaseAssigned, CaseResolved, WhistleBlown, WhistleReceiptSubmitted
from contracts.topics import CASES, WHISTLES, department_topic, dlq_topic
from services.escalation.models import CaseDeadline, WhistleSummons
from services.runtime.auth import issue_token
from services.runtime.inbox import InboxRecord
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_escalation_clocks import _assigned as assigned
from tests.integration.test_escalation_clocks import local
from tests.integration.test_whistle_protocol import (
    Escalation,
    about,
    blow,
    find_on_topic,
    produce,
    whistle,
)

# The module-scoped escalation app, shared as a fixture.
from tests.integration.test_whistle_protocol import escalation as escalation
from tests.support.infra import eventually


async def dead_letter(bootstrap: str, topic: str, event_id: str) -> str:
    """The ``dlq-reason`` of the event parked in ``<topic>.dlq``."""
    (record,) = await find_on_topic(
        bootstrap, dlq_topic(topic), lambda r: json.loads(r.value)["id"] == event_id
    )
    return dict(record.headers)["dlq-reason"].decode()


async def claimed(escalation: Escalation, event_ids: list[str]) -> list[str]:
    """Which of the events escalation's inbox holds."""
    async with escalation.runtime.sessions() as session:
        rows = await session.scalars(
            select(InboxRecord.event_id).where(InboxRecord.event_id.in_(event_ids))  # type: ignore[attr-defined]
        )
        return list(rows.all())


async def resolution_clock(escalation: Escalation, case_id: UUID) -> CaseDeadline | None:
    async with escalation.runtime.sessions() as session:
        return await session.scalar(
            select(CaseDeadline).where(
                CaseDeadline.case_id == case_id,
                CaseDeadline.kind == "resolution",
                CaseDeadline.whistle_id.is_(None),  # type: ignore[union-attr]
            )
        )


def resolved(case: CaseAssigned) -> CaseResolved:
    """The case's resolution, as dispatch would write it (and a forger copy it)."""
    common = {"actor": "S0003", "actor_role": "dispatcher", "version": 5, "township_code": "T03"}
    return CaseResolved.model_validate(
        {
            **common,
            "case_id": str(case.case_id),
            "tip_id": str(case.tip_id),
            "unit_id": case.unit_id,
            "resolution": "rectified",
            "note": "已处理",
        }
    )


async def test_a_resolution_forged_on_the_whistles_topic_or_from_another_source_stops_nothing(
    escalation: Escalation, producer: AIOKafkaProducer, migrated: Settings
) -> None:
    bootstrap = migrated.kafka_bootstrap or ""
    case = assigned(uuid4())
    at = local(2026, 11, 16, 9, 0)
    escalation.clock.now = at
    await produce(producer, CASES, case, at, "whistle/dispatch")

    async def running() -> CaseDeadline | None:
        clock = await resolution_clock(escalation, case.case_id)
        return clock if clock is not None and clock.status == "running" else None

    await eventually(running, what="the resolution clock running")

    # A department's system may write escalation.whistles.v1, but not a case's resolution.
    escalation.clock.now = local(2026, 11, 17, 9, 0)
    on_whistles = await produce(
        producer, WHISTLES, resolved(case), escalation.clock.now, "whistle/dispatch"
    )
    reason = await dead_letter(bootstrap, WHISTLES, on_whistles)
    assert reason == "whistle.case.resolved may not arrive on escalation.whistles.v1"
    # Nor may anyone but dispatch write dispatch.cases.v1.
    forged = await produce(producer, CASES, resolved(case), escalation.clock.now, "whistle/evil")
    reason = await dead_letter(bootstrap, CASES, forged)
    assert reason == (
        "source whistle/evil is not the producer of dispatch.cases.v1 (whistle/dispatch)"
    )

    clock = await resolution_clock(escalation, case.case_id)
    assert clock is not None and (clock.status, clock.stopped_at) == ("running", None)
    written = [e["type"] for e in await escalation.events() if e["subject"] == str(case.case_id)]
    assert "whistle.deadline.stopped" not in written
    assert await claimed(escalation, [on_whistles, forged]) == []


async def summon(
    escalation: Escalation,
    producer: AIOKafkaProducer,
    bootstrap: str,
    departments: list[str],
    start: datetime,
) -> WhistleBlown:
    """A whistle blown at ``start`` for ``departments``, once the last is notified."""
    blown = whistle(uuid4(), departments)
    escalation.clock.now = start
    await blow(producer, blown, start)
    await find_on_topic(bootstrap, department_topic(departments[-1]), about(blown.whistle_id))
    return blown


def receipt(blown: WhistleBlown, department: str, number: str) -> WhistleReceiptSubmitted:
    return WhistleReceiptSubmitted(
        case_id=blown.case_id,
        whistle_id=blown.whistle_id,
        department_code=department,
        receipt_no=number,
    )


async def test_a_department_reports_in_only_for_itself_and_only_with_its_token(
    escalation: Escalation,
    producer: AIOKafkaProducer,
    migrated: Settings,
    token: TokenFactory,
) -> None:
    bootstrap = migrated.kafka_bootstrap or ""
    start = local(2026, 11, 23, 9, 0)  # Monday
    blown = await summon(escalation, producer, bootstrap, ["CGJ", "SCJGJ"], start)
    escalation.clock.now = local(2026, 11, 23, 10, 0)

    cgj = token("county_department", "dept:CGJ")
    # CGJ's system reports in for SCJGJ, with CGJ's token: the payload and the source name
    # SCJGJ, the token does not act for it.
    for_another = await produce(
        producer, WHISTLES, receipt(blown, "SCJGJ", "X-1"), start, "whistle/dept/scjgj", cgj
    )
    # SCJGJ's own receipt without a token; with a token that is not one; with a supervisor's.
    bare = await produce(
        producer, WHISTLES, receipt(blown, "SCJGJ", "S-1"), start, "whistle/dept/scjgj"
    )
    garbled = await produce(
        producer, WHISTLES, receipt(blown, "SCJGJ", "S-2"), start, "whistle/dept/scjgj", "not.a.jwt"
    )
    supervisor = token("county_supervisor", "dept:SCJGJ")
    wrong_role = await produce(
        producer, WHISTLES, receipt(blown, "SCJGJ", "S-3"), start, "whistle/dept/scjgj", supervisor
    )
    # CGJ's own, with its token but under another department's source.
    disguised = await produce(
        producer, WHISTLES, receipt(blown, "CGJ", "C-0"), start, "whistle/dept/scjgj", cgj
    )
    # CGJ's own, as it should be: recorded.
    await produce(producer, WHISTLES, receipt(blown, "CGJ", "C-1"), start, "whistle/dept/cgj", cgj)

    (reported,) = await find_on_topic(
        bootstrap, WHISTLES, about(blown.whistle_id, "whistle.whistle.reported")
    )
    data = json.loads(reported.value)["data"]
    assert (data["department_code"], data["receipt_no"], data["via"]) == ("CGJ", "C-1", "kafka")
    assert data["actor"] == "test-county_department", "the token's subject"

    reasons = {
        event_id: await dead_letter(bootstrap, WHISTLES, event_id)
        for event_id in (for_another, bare, garbled, wrong_role, disguised)
    }
    assert reasons[for_another] == "the token does not act for dept:SCJGJ"
    assert reasons[bare].endswith("Kafka header authorization: Bearer <jwt>")
    assert reasons[garbled].startswith("The token is not valid")
    assert reasons[wrong_role] == "the token does not hold the role county_department"
    assert reasons[disguised] == (
        "source whistle/dept/scjgj is not whistle/dept/cgj, the source of CGJ"
    )

    async with escalation.runtime.sessions() as session:
        summons = await session.get(WhistleSummons, (blown.whistle_id, "SCJGJ"))
    assert summons is not None and (summons.reported_at, summons.receipt_no) == (None, None)
    recorded = [
        e["data"]["department_code"]
        for e in await escalation.events(blown.whistle_id)
        if e["type"] == "whistle.whistle.reported"
    ]
    assert recorded == ["CGJ"]
    assert await claimed(escalation, list(reasons)) == []


async def test_a_submission_read_again_after_its_token_expired_is_not_refused_but_a_new_one_is(
    escalation: Escalation,
    producer: AIOKafkaProducer,
    migrated: Settings,
    token: TokenFactory,
) -> None:
    bootstrap = migrated.kafka_bootstrap or ""
    start = local(2026, 11, 24, 9, 0)
    blown = await summon(escalation, producer, bootstrap, ["CGJ"], start)

    async def send(value: bytes, jwt: str) -> None:
        await producer.send_and_wait(
            WHISTLES,
            value=value,
            key=str(blown.case_id).encode(),
            headers=[
                ("content-type", CONTENT_TYPE.encode()),
                ("authorization", f"Bearer {jwt}".encode()),
            ],
        )

    event = new_event(
        "whistle/dept/cgj", str(blown.case_id), receipt(blown, "CGJ", "C-1"), start.astimezone(UTC)
    )
    await send(event.to_bytes(), token("county_department", "dept:CGJ"))
    await find_on_topic(bootstrap, WHISTLES, about(blown.whistle_id, "whistle.whistle.reported"))

    expired = issue_token(
        migrated.private_key_path.read_bytes(),
        subject="test-county_department",
        roles=["county_department"],
        scopes=["dept:CGJ"],
        issuer=migrated.jwt_issuer,
        audience=migrated.audiences(),
        now=start.astimezone(UTC) - timedelta(days=30),
        lifetime=timedelta(hours=1),
    )
    # The same event again (as when a partition is read again), its token expired since: it
    # was taken when it came, so it is a duplicate, not a refusal. A new one is refused.
    await send(event.to_bytes(), expired)
    later = new_event(
        "whistle/dept/cgj", str(blown.case_id), receipt(blown, "CGJ", "C-2"), start.astimezone(UTC)
    )
    await send(later.to_bytes(), expired)
    reason = await dead_letter(bootstrap, WHISTLES, later.id)
    assert reason.startswith("The token is not valid") and "expired" in reason
    parked = await find_on_topic(
        bootstrap, dlq_topic(WHISTLES), lambda r: json.loads(r.value)["id"] in (event.id, later.id)
    )
    assert [json.loads(r.value)["id"] for r in parked] == [later.id]


async def test_an_event_of_a_county_the_deployment_does_not_serve_is_dead_lettered(
    escalation: Escalation, producer: AIOKafkaProducer, migrated: Settings
) -> None:
    """The admission rule's county check (contracts/tenancy.py): the county attribute names a
    county of the reference data, or the event changes nothing."""
    bootstrap = migrated.kafka_bootstrap or ""
    case = assigned(uuid4())
    escalation.clock.now = local(2026, 11, 16, 9, 0)
    foreign = await produce(
        producer, CASES, case, escalation.clock.now, "whistle/dispatch", county="999999"
    )
    reason = await dead_letter(bootstrap, CASES, foreign)
    assert reason == "county 999999 is not one of the counties served here (140998, 140999)"
    assert await claimed(escalation, [foreign]) == []
    # The second sample county's is taken as any other.
    other = assigned(uuid4())
    served = await produce(
        producer, CASES, other, escalation.clock.now, "whistle/dispatch", county="140998"
    )
    await eventually(lambda: claimed(escalation, [served]), what="the second county's event taken")
    assert await resolution_clock(escalation, case.case_id) is None


async def test_escalation_speaks_of_a_case_in_the_cases_county(
    escalation: Escalation, producer: AIOKafkaProducer
) -> None:
    """Tenancy (docs/scale.md): the deadlines escalation sets at once, and the ladder steps its
    scheduler fires days later, carry the county of the case's own events."""
    case = assigned(uuid4())
    escalation.clock.now = local(2026, 11, 16, 9, 0)
    await produce(producer, CASES, case, escalation.clock.now, "whistle/dispatch", county="140998")

    async def about_case(event_type: str) -> list[dict[str, Any]] | None:
        found = [
            e
            for e in await escalation.events()
            if e["subject"] == str(case.case_id) and e["type"] == event_type
        ]
        return found or None

    (deadlines,) = await eventually(
        lambda: about_case("whistle.deadlines.set"), what="the case's deadlines"
    )
    assert deadlines["county"] == "140998"
    escalation.clock.now = local(2026, 11, 30, 9, 0)  # its first-response clock long overdue
    warnings = await eventually(
        lambda: about_case("whistle.deadline.warning"), what="a warning fired"
    )
    assert {w["county"] for w in warnings} == {"140998"}
