"""The transactional outbox against the real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import uuid4

from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from contracts.envelope import CloudEvent
from services.runtime.db import Sessions
from services.runtime.kafka import BrokerLogs, ensure_topics
from services.runtime.outbox import OutboxMessage, OutboxRelay, replay, stage
from tests.integration.conftest import MovableClock, sample_event
from tests.support.infra import Infra, read_topic


async def _new_topic(infra: Infra) -> str:
    topic = f"test.outbox.{uuid4().hex[:8]}"
    await ensure_topics(infra.bootstrap, [topic], partitions=3)
    return topic


async def _unsent(sessions: Sessions) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).where(OutboxMessage.sent_at.is_(None))  # type: ignore[union-attr]
            )
            or 0
        )


async def test_relay_publishes_in_write_order_with_the_subject_as_key(
    infra: Infra,
    sessions: Sessions,
    producer: AIOKafkaProducer,
    clock: MovableClock,
    logs: BrokerLogs,
) -> None:
    topic = await _new_topic(infra)
    subjects = [f"case-{n}" for n in range(3)]
    written: dict[str, list[str]] = {s: [] for s in subjects}
    for _ in range(10):
        async with sessions() as session, session.begin():
            for subject in subjects:
                event = sample_event(clock, subject)
                stage(session, topic, event)
                written[subject].append(event.id)

    relay = OutboxRelay(sessions, producer, clock, service="test", logs=logs, batch_size=7)
    published = 0
    while batch := await relay.publish_batch():
        published += batch
    assert published == 30
    assert await _unsent(sessions) == 0

    records = await read_topic(infra.bootstrap, topic, 30)
    received: dict[str, list[str]] = {s: [] for s in subjects}
    partitions: dict[str, set[int]] = {s: set() for s in subjects}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = CloudEvent.model_validate_json(record.value)
        assert record.key == event.subject.encode()  # type: ignore[union-attr]
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
        received[event.subject].append(event.id)  # type: ignore[index]
        partitions[event.subject].add(record.partition)  # type: ignore[index]
    assert received == written
    assert all(len(p) == 1 for p in partitions.values())


async def test_an_event_staged_in_a_rolled_back_transaction_is_never_published(
    infra: Infra,
    sessions: Sessions,
    producer: AIOKafkaProducer,
    clock: MovableClock,
    logs: BrokerLogs,
) -> None:
    topic = await _new_topic(infra)
    try:
        async with sessions() as session, session.begin():
            stage(session, topic, sample_event(clock, "case-rolled-back"))
            raise RuntimeError("the state change failed")
    except RuntimeError:
        pass
    kept = sample_event(clock, "case-kept")
    async with sessions() as session, session.begin():
        stage(session, topic, kept)

    relay = OutboxRelay(sessions, producer, clock, service="test", logs=logs)
    assert await relay.publish_batch() == 1
    (record,) = await read_topic(infra.bootstrap, topic, 1)
    assert CloudEvent.model_validate_json(record.value).id == kept.id


async def test_two_relays_racing_publish_each_event_once_and_in_order(
    infra: Infra,
    sessions: Sessions,
    producer: AIOKafkaProducer,
    clock: MovableClock,
    logs: BrokerLogs,
) -> None:
    topic = await _new_topic(infra)
    ids = []
    async with sessions() as session, session.begin():
        for _ in range(200):
            event = sample_event(clock, "case-raced")
            stage(session, topic, event)
            ids.append(event.id)

    relays = [
        OutboxRelay(sessions, producer, clock, service="test", logs=logs, batch_size=25)
        for _ in range(2)
    ]

    async def drain(relay: OutboxRelay) -> int:
        total = 0
        while await _unsent(sessions):
            total += await relay.publish_batch()
            await asyncio.sleep(0)
        return total

    counts = await asyncio.gather(*(drain(r) for r in relays))
    assert sum(counts) == 200
    records = await read_topic(infra.bootstrap, topic, 200)
    assert len(records) == 200
    assert [
        CloudEvent.model_validate_json(r.value).id for r in sorted(records, key=lambda r: r.offset)
    ] == ids


async def test_replay_republishes_and_purge_keeps_only_the_retention_period(
    infra: Infra,
    sessions: Sessions,
    producer: AIOKafkaProducer,
    clock: MovableClock,
    logs: BrokerLogs,
) -> None:
    topic = await _new_topic(infra)
    old = sample_event(clock, "case-old")
    async with sessions() as session, session.begin():
        stage(session, topic, old)
    relay = OutboxRelay(
        sessions, producer, clock, service="test", logs=logs, retention=timedelta(days=30)
    )
    assert await relay.publish_batch() == 1

    clock.advance(timedelta(days=10))
    recent = sample_event(clock, "case-recent")
    async with sessions() as session, session.begin():
        stage(session, topic, recent)
    assert await relay.publish_batch() == 1

    # After broker data loss: republish what was written in the last five days.
    async with sessions() as session, session.begin():
        assert await replay(session, clock.now - timedelta(days=5)) == 1
    assert await relay.publish_batch() == 1
    records = await read_topic(infra.bootstrap, topic, 3)
    assert [CloudEvent.model_validate_json(r.value).id for r in records].count(recent.id) == 2

    clock.advance(timedelta(days=25))  # the old row was sent 35 days ago, the recent one 25
    assert await relay.purge() == 1
    async with sessions() as session:
        remaining = (await session.scalars(select(OutboxMessage.event_id))).all()
    assert remaining == [recent.id]
