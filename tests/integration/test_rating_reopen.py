"""回访: a citizen's rating, published by intake on intake.tips.v1, as the real dispatch takes it.
A dissatisfied citizen reopens a resolved or closed case; anything else changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from uuid6 import uuid7

from contracts.envelope import CloudEvent, new_event
from contracts.events import TipRated
from contracts.topics import CASES, TIPS, dlq_topic
from services.dispatch.models import Case, CaseTip
from services.runtime.inbox import InboxRecord
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from tests.support.infra import Infra, eventually, find_on_topic


async def a_case(runtime: Runtime, status: str) -> Case:
    now = datetime.now(UTC)
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
        version=5,
        created_at=now,
        updated_at=now,
    )
    async with runtime.transaction() as session:
        session.add(case)
    return case


async def rate(
    producer: AIOKafkaProducer,
    case_id: UUID,
    tip_id: UUID,
    rating: str,
    comment: str | None = None,
) -> CloudEvent:
    now = datetime.now(UTC)
    data = TipRated(
        tip_id=tip_id,
        case_id=case_id,
        rating=rating,  # type: ignore[arg-type]
        comment=comment,
        channel="web",
        rated_at=now,
    )
    event = new_event("whistle/intake", str(tip_id), data, now)
    await producer.send_and_wait(TIPS, event.to_bytes(), key=str(tip_id).encode())
    return event


async def handled(runtime: Runtime, event: CloudEvent) -> None:
    """Wait until dispatch's inbox holds the event: its effects, if any, committed with it."""

    async def probe() -> bool:
        async with runtime.sessions() as session:
            return await session.get(InboxRecord, (event.source, event.id)) is not None

    await eventually(probe, what=f"dispatch to take {event.type} {event.id}")


async def current(runtime: Runtime, case_id: UUID) -> Case:
    async with runtime.sessions() as session:
        case = await session.get(Case, case_id)
    assert case is not None
    return case


async def staged(runtime: Runtime, case_id: UUID) -> list[str]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage.event).where(OutboxMessage.key == str(case_id))
        )
        return [event["type"] for event in rows.all()]


@pytest.mark.parametrize("status", ["resolved", "closed"])
async def test_a_dissatisfied_citizen_reopens_the_case(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    producer: AIOKafkaProducer,
    infra: Infra,
    status: str,
) -> None:
    _, runtime = dispatch
    case = await a_case(runtime, status)
    await rate(producer, case.id, case.tip_id, "dissatisfied", "摊贩第二天又回来了")

    reopened = await find_on_topic(
        infra.bootstrap,
        CASES,
        lambda e: e["type"] == "whistle.case.reopened" and e["subject"] == str(case.id),
    )
    assert reopened["data"]["reason"] == "群众不满意: 摊贩第二天又回来了"
    assert reopened["data"]["actor"] == "citizen"
    assert reopened["data"]["actor_role"] == "citizen"
    assert reopened["data"]["version"] == 6
    after = await current(runtime, case.id)
    assert (after.status, after.version, after.reopens) == ("in_progress", 6, 1)
    assert after.unit_id == "T03-CGJ"  # back with the unit that handled it


async def test_a_satisfied_citizen_changes_nothing(
    dispatch: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer
) -> None:
    _, runtime = dispatch
    case = await a_case(runtime, "resolved")
    for rating in ("satisfied", "basically_satisfied"):
        await handled(runtime, await rate(producer, case.id, case.tip_id, rating, "很好"))
    after = await current(runtime, case.id)
    assert (after.status, after.version) == ("resolved", 5)
    assert await staged(runtime, case.id) == []


async def test_a_dissatisfied_rating_of_a_case_still_being_worked_is_ignored(
    dispatch: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer
) -> None:
    _, runtime = dispatch
    case = await a_case(runtime, "in_progress")
    await handled(runtime, await rate(producer, case.id, case.tip_id, "dissatisfied", "太慢了"))
    after = await current(runtime, case.id)
    assert (after.status, after.version, after.reopens) == ("in_progress", 5, 0)
    assert await staged(runtime, case.id) == []


async def test_a_rating_for_a_case_dispatch_does_not_have_is_dead_lettered(
    dispatch: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer, infra: Infra
) -> None:
    event = await rate(producer, uuid7(), uuid7(), "dissatisfied", "不满意")
    await find_on_topic(infra.bootstrap, dlq_topic(TIPS), lambda e: e["id"] == event.id)


async def test_a_rating_by_a_tip_that_is_not_the_cases_is_dead_lettered(
    dispatch: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer, infra: Infra
) -> None:
    _, runtime = dispatch
    case = await a_case(runtime, "resolved")
    event = await rate(producer, case.id, uuid7(), "dissatisfied", "不满意")
    await find_on_topic(infra.bootstrap, dlq_topic(TIPS), lambda e: e["id"] == event.id)
    assert (await current(runtime, case.id)).status == "resolved"


async def test_a_citizen_whose_tip_joined_the_case_may_reopen_it_too(
    dispatch: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer
) -> None:
    _, runtime = dispatch
    case = await a_case(runtime, "resolved")
    joined = uuid7()
    async with runtime.transaction() as session:
        session.add(
            CaseTip(
                tip_id=joined,
                case_id=case.id,
                joined_at=datetime.now(UTC),
                rule="same_grid",
                tip={},
            )
        )
    await handled(runtime, await rate(producer, case.id, joined, "dissatisfied"))
    after = await current(runtime, case.id)
    assert (after.status, after.reopens) == ("in_progress", 1)
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage.event).where(OutboxMessage.key == str(case.id))
        )
        (reopened,) = rows.all()
    assert reopened["data"]["reason"] == "群众不满意"
