"""The broker loses what it held; the outbox and the inbox heal it by themselves.

Each test runs a Tansu broker of its own (memory-only, like the embedded default), so that it
can be restarted empty or have a topic deleted under running clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from contracts.events import DeadlinesSet
from services.launcher.embedded import EmbeddedBroker, free_port
from services.launcher.stack import EMBEDDED_GROUP_TIMING
from services.runtime.db import Sessions
from services.runtime.inbox import InboxConsumer, Subscription
from services.runtime.kafka import BrokerLogs, create_producer, ensure_topics
from services.runtime.metrics import CONSUMER_REWOUND, OUTBOX_REPUBLISHED
from services.runtime.outbox import OutboxMessage, OutboxPartition, OutboxRelay, stage
from tests.integration.conftest import Effect, MovableClock, running, sample_event
from tests.support.infra import eventually, read_everything

KEYS = ("case-a", "case-b", "case-c")


@pytest.fixture
def broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    own = EmbeddedBroker(free_port(), log_path=tmp_path / "broker.log")
    own.start()
    yield own
    own.stop()


@pytest.fixture
async def clients(broker: EmbeddedBroker) -> AsyncIterator[tuple[AIOKafkaProducer, BrokerLogs]]:
    producer = create_producer(broker.bootstrap, client_id="test", enable_idempotence=False)
    logs = BrokerLogs(broker.bootstrap, client_id="test-logs")
    await producer.start()
    await logs.start()
    yield producer, logs
    await logs.stop()
    await producer.stop()


async def _new_topic(broker: EmbeddedBroker, partitions: int) -> str:
    topic = f"test.loss.{uuid4().hex[:8]}"
    await ensure_topics(broker.bootstrap, [topic], partitions=partitions)
    return topic


async def _delete_topic(broker: EmbeddedBroker, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


def _restart_empty(broker: EmbeddedBroker) -> None:
    broker.stop()
    broker.start()


async def _stage(sessions: Sessions, clock: MovableClock, topic: str, rounds: int) -> list[str]:
    written = []
    for _ in range(rounds):
        async with sessions() as session, session.begin():
            for key in KEYS:
                event = sample_event(clock, key)
                stage(session, topic, event)
                written.append(event.id)
    return written


async def _sent(
    sessions: Sessions, clock: MovableClock, topic: str, event: CloudEvent, offset: int
) -> None:
    """An outbox row for ``event``, as the relay leaves it once the broker acknowledged it at
    partition 0, ``offset``."""
    async with sessions() as session, session.begin():
        session.add(
            OutboxMessage(
                event_id=event.id,
                topic=topic,
                key=str(event.subject),
                event=event.to_json(),
                created_at=event.time,
                sent_at=clock.now,
                kafka_partition=0,
                kafka_offset=offset,
            )
        )


async def _publish_all(relay: OutboxRelay) -> None:
    while await relay.publish_batch():
        pass


async def _per_key(bootstrap: str, topic: str) -> dict[str, list[str]]:
    """Each key's event ids in the order the broker holds them, each id once (its first copy)."""
    seen: dict[str, list[str]] = {key: [] for key in KEYS}
    records = await read_everything(bootstrap, [topic])
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = CloudEvent.model_validate_json(record.value or b"")
        ids = seen[event.subject or ""]
        if event.id not in ids:
            ids.append(event.id)
    return seen


def _expected_per_key(written: list[str]) -> dict[str, list[str]]:
    """``_stage`` writes the keys in turn, round after round."""
    return {key: written[i :: len(KEYS)] for i, key in enumerate(KEYS)}


def _republished(topic: str, reason: str) -> float:
    return OUTBOX_REPUBLISHED.labels("test", topic, reason)._value.get()


async def test_a_broker_restarted_empty_gets_every_retained_event_again_in_order(
    broker: EmbeddedBroker,
    clients: tuple[AIOKafkaProducer, BrokerLogs],
    sessions: Sessions,
    clock: MovableClock,
) -> None:
    producer, logs = clients
    topic = await _new_topic(broker, partitions=3)
    relay = OutboxRelay(sessions, producer, clock, service="test", logs=logs, batch_size=10)
    before = await _stage(sessions, clock, topic, rounds=10)
    await _publish_all(relay)

    _restart_empty(broker)
    await ensure_topics(broker.bootstrap, [topic], partitions=3)
    after = await _stage(sessions, clock, topic, rounds=2)
    await _publish_all(relay)

    # Nothing lost, and each key's events in the order they were written.
    assert await _per_key(broker.bootstrap, topic) == _expected_per_key(before + after)
    assert _republished(topic, "log_truncated") == len(before)


async def test_an_idle_relay_notices_the_loss_without_anything_new_to_send(
    broker: EmbeddedBroker,
    clients: tuple[AIOKafkaProducer, BrokerLogs],
    sessions: Sessions,
    clock: MovableClock,
) -> None:
    producer, logs = clients
    topic = await _new_topic(broker, partitions=3)
    relay = OutboxRelay(sessions, producer, clock, service="test", logs=logs, check_seconds=0)
    written = await _stage(sessions, clock, topic, rounds=4)
    await _publish_all(relay)
    assert await relay.publish_batch() == 0  # checked: the broker holds everything

    _restart_empty(broker)
    await ensure_topics(broker.bootstrap, [topic], partitions=3)
    await _publish_all(relay)

    assert await _per_key(broker.bootstrap, topic) == _expected_per_key(written)


async def test_nothing_is_sent_to_a_topic_the_broker_does_not_have(
    broker: EmbeddedBroker,
    clients: tuple[AIOKafkaProducer, BrokerLogs],
    sessions: Sessions,
    clock: MovableClock,
) -> None:
    """The producer still believes in the topic (its metadata is cached) and Tansu would
    accept the batch; created afterwards, the topic's offsets start again under what it
    accepted, the next batches collide with it and readers skip events. The relay waits for
    the topic instead. (A topic deleted under the producer; after a broker restart the same
    holds until some client's metadata request or the launcher creates the topic again.)"""
    producer, logs = clients
    topic = await _new_topic(broker, partitions=3)
    relay = OutboxRelay(sessions, producer, clock, service="test", logs=logs, check_seconds=0)
    before = await _stage(sessions, clock, topic, rounds=4)
    await _publish_all(relay)

    await _delete_topic(broker, topic)
    waiting = await _stage(sessions, clock, topic, rounds=3)
    assert await relay.publish_batch() == 0
    async with sessions() as session:
        unsent = await session.scalar(
            select(func.count()).where(OutboxMessage.sent_at.is_(None))  # type: ignore[union-attr]
        )
    assert unsent == len(waiting)

    await ensure_topics(broker.bootstrap, [topic], partitions=3)
    after = await _stage(sessions, clock, topic, rounds=3)
    await _publish_all(relay)

    assert await _per_key(broker.bootstrap, topic) == _expected_per_key(before + waiting + after)


async def test_a_listing_of_the_topics_is_not_trusted_across_a_broker_restart(
    broker: EmbeddedBroker,
) -> None:
    """Between the relay's checks its topics are answered from the broker's last listing, but
    only while the connections that listing came over stay open: a broker restarted empty
    closed them, and is asked again. (Here no other client names the topic to the restarted
    broker, which would make Tansu create it.)"""
    topic = await _new_topic(broker, partitions=1)
    logs = BrokerLogs(broker.bootstrap, client_id="test-listing")
    await logs.start()
    try:
        assert await logs.missing_topics({topic}, max_age=3600) == set()
        _restart_empty(broker)

        async def missing() -> set[str] | None:
            try:
                return await logs.missing_topics({topic}, max_age=3600)
            except KafkaError:
                return None  # the restarted broker does not answer yet

        assert await eventually(missing, within=10, what="the lost topic") == {topic}
    finally:
        await logs.stop()


async def test_events_placed_below_what_the_broker_had_acknowledged_reveal_the_loss(
    broker: EmbeddedBroker,
    clients: tuple[AIOKafkaProducer, BrokerLogs],
    sessions: Sessions,
    clock: MovableClock,
) -> None:
    """The broker lost its log between two checks: the next batch lands at offsets it had
    given before (or on partitions the topic did not have), and what the broker lost is sent
    again right after."""
    producer, logs = clients
    topic = await _new_topic(broker, partitions=1)
    relay = OutboxRelay(sessions, producer, clock, service="test", logs=logs, check_seconds=3600)
    before = await _stage(sessions, clock, topic, rounds=5)
    await _publish_all(relay)

    _restart_empty(broker)
    await ensure_topics(broker.bootstrap, [topic], partitions=1)
    after = await _stage(sessions, clock, topic, rounds=1)
    await _publish_all(relay)

    records = await read_everything(broker.bootstrap, [topic])
    held = {CloudEvent.model_validate_json(r.value or b"").id for r in records}
    assert held == set(before + after)
    # Where the new batch landed depends on the partitions the recreated topic has.
    reasons = ("offsets_went_back", "log_truncated", "partition_missing")
    assert sum(_republished(topic, reason) for reason in reasons) == len(before)
    async with sessions() as session:
        unsent = await session.scalar(
            select(func.count()).where(OutboxMessage.sent_at.is_(None))  # type: ignore[union-attr]
        )
    assert unsent == 0


async def test_the_batch_that_reveals_a_loss_is_sent_again_after_what_was_lost(
    broker: EmbeddedBroker,
    clients: tuple[AIOKafkaProducer, BrokerLogs],
    sessions: Sessions,
    clock: MovableClock,
) -> None:
    """A batch placed below offsets the broker had acknowledged lies at the start of a log the
    broker began again; what was lost, sent again, may land at its old offsets above it (Tansu
    restarts a topic's offsets under what it holds when the topic is created), and a consumer
    that had read those goes on from there. So the batch leaves again after what was lost:
    read in order, every event of it is found after the last of them."""
    producer, logs = clients
    topic = await _new_topic(broker, partitions=1)
    relay = OutboxRelay(sessions, producer, clock, service="test", logs=logs, check_seconds=3600)
    lost = await _stage(sessions, clock, topic, rounds=5)
    await _publish_all(relay)
    # As if the broker had acknowledged those at offsets 100 on and then lost them: the next
    # batch lands at 15, below the 115 it had acknowledged.
    async with sessions() as session, session.begin():
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.topic == topic)  # type: ignore[arg-type]
            .values(kafka_offset=OutboxMessage.kafka_offset + 100)  # type: ignore[operator]
        )
        await session.execute(update(OutboxPartition).values(next_offset=115))
    revealing = await _stage(sessions, clock, topic, rounds=1)
    await _publish_all(relay)

    records = await read_everything(broker.bootstrap, [topic])
    in_order = [
        CloudEvent.model_validate_json(r.value or b"").id
        for r in sorted(records, key=lambda r: r.offset)
    ]
    last_lost = max(i for i, event in enumerate(in_order) if event in lost)
    assert set(revealing) <= set(in_order[last_lost:])
    assert _republished(topic, "offsets_went_back") == len(lost) + len(revealing)


async def test_an_acknowledged_event_a_reader_cannot_find_is_sent_again(
    broker: EmbeddedBroker,
    clients: tuple[AIOKafkaProducer, BrokerLogs],
    sessions: Sessions,
    clock: MovableClock,
) -> None:
    """What Tansu did right after a restart (docs/reliability.md): it acknowledged an event at
    an offset where a reader, reading in order, finds another one. Here the outbox is told an
    event went to an offset that holds something else; reading the topic back finds it missing
    and sends it again."""
    producer, logs = clients
    topic = await _new_topic(broker, partitions=1)
    relay = OutboxRelay(sessions, producer, clock, service="test", logs=logs, check_seconds=0)
    written = await _stage(sessions, clock, topic, rounds=2)
    await _publish_all(relay)
    lost = sample_event(clock, "case-a")
    await _sent(sessions, clock, topic, lost, offset=2)  # where the broker holds another event

    relay.audit(topic)
    await _publish_all(relay)

    records = await read_everything(broker.bootstrap, [topic])
    held = [CloudEvent.model_validate_json(r.value or b"").id for r in records]
    assert sorted(held) == sorted([*written, lost.id])
    assert _republished(topic, "not_read_back") == 1
    assert await relay.publish_batch() == 0  # read back again: everything is there now


async def test_an_event_hidden_behind_an_overlapping_batch_is_sent_again(
    broker: EmbeddedBroker,
    clients: tuple[AIOKafkaProducer, BrokerLogs],
    sessions: Sessions,
    clock: MovableClock,
) -> None:
    """Tansu's overlapping batches, made on purpose: a batch of five accepted for a topic the
    broker does not have (a producer's retry after a restart), the topic created (its offsets
    start again at 0), then an event acknowledged at offset 1, inside the first batch's range.
    Fetched at its offset it is there; a reader from the start never gets it. The read-back
    reads as consumers do, from the start of the log, and sends it again."""
    producer, logs = clients
    topic = await _new_topic(broker, partitions=1)
    await producer.partitions_for(topic)  # cached: the producer will not ask again
    await _delete_topic(broker, topic)
    for _ in range(5):
        await producer.send(topic, sample_event(clock, "case-a").to_bytes(), key=b"case-a")
    await producer.flush()
    await ensure_topics(broker.bootstrap, [topic], partitions=1)
    with pytest.raises(KafkaError):  # its offset 0 collides with the batch above
        await producer.send_and_wait(topic, sample_event(clock, "case-a").to_bytes())
    hidden = sample_event(clock, "case-a")
    placed = await producer.send_and_wait(topic, hidden.to_bytes(), key=b"case-a")
    assert placed.offset == 1
    start = TopicPartition(topic, 0)
    assert (await logs.records_at({start: 1})).get(start) is not None
    await _sent(sessions, clock, topic, hidden, offset=placed.offset)
    relay = OutboxRelay(sessions, producer, clock, service="test", logs=logs, check_seconds=0)

    relay.audit(topic)
    await _publish_all(relay)

    records = await read_everything(broker.bootstrap, [topic])
    assert hidden.id in {CloudEvent.model_validate_json(r.value or b"").id for r in records}
    assert _republished(topic, "not_read_back") == 1


async def test_a_consumer_reads_again_a_partition_rewritten_under_it(
    broker: EmbeddedBroker,
    clients: tuple[AIOKafkaProducer, BrokerLogs],
    sessions: Sessions,
    clock: MovableClock,
) -> None:
    """A topic deleted and recreated while the consumer runs: the new log's first records sit
    at offsets the consumer has passed. Without the check it would skip them (aiokafka keeps
    its position); with it, it reads the partition again and misses nothing."""
    producer, logs = clients
    topic = await _new_topic(broker, partitions=1)

    async def record(session: AsyncSession, event: CloudEvent, _topic: str) -> None:
        session.add(Effect(event_id=event.id, note=_topic))

    consumer = InboxConsumer(
        service="test",
        # A topic of the test's own, outside the registry: nothing to admit by.
        subscription=Subscription(
            topics=(topic,), handlers={DeadlinesSet.event_type: record}, admit=None
        ),
        sessions=sessions,
        bootstrap=broker.bootstrap,
        dlq_producer=producer,
        clock=clock,
        group_id=f"g-{topic}",
        group_timing=EMBEDDED_GROUP_TIMING,
        logs=logs,
        verify_seconds=0.2,
    )
    async with running(consumer):
        first = [sample_event(clock, "case-a") for _ in range(8)]
        for event in first:
            await producer.send_and_wait(topic, event.to_bytes(), key=b"case-a")
        await eventually(lambda: _handled(sessions, first), what="the first events handled")

        await _delete_topic(broker, topic)
        await ensure_topics(broker.bootstrap, [topic], partitions=1)
        rewound = CONSUMER_REWOUND.labels("test", topic)._value.get()
        second = [sample_event(clock, "case-a") for _ in range(12)]
        for event in second:
            await producer.send_and_wait(topic, event.to_bytes(), key=b"case-a")

        await eventually(lambda: _handled(sessions, second), what="every new event handled")
        assert CONSUMER_REWOUND.labels("test", topic)._value.get() == rewound + 1


async def _handled(sessions: Sessions, events: list[CloudEvent]) -> bool:
    async with sessions() as session:
        done = set(
            (
                await session.scalars(
                    select(Effect.event_id).where(
                        Effect.event_id.in_([e.id for e in events])  # type: ignore[attr-defined]
                    )
                )
            ).all()
        )
    return done == {e.id for e in events}


async def test_records_are_read_at_several_partitions_together(
    broker: EmbeddedBroker, clients: tuple[AIOKafkaProducer, BrokerLogs]
) -> None:
    """What a consumer's check reads in one go: each partition's record at its offset, None
    for a log that holds nothing, and nothing for a topic the broker does not list."""
    producer, logs = clients
    topic = await _new_topic(broker, partitions=3)
    sent = {}
    for partition, count in ((0, 2), (1, 1)):
        for n in range(count):
            meta = await producer.send_and_wait(
                topic, value=f"{partition}-{n}".encode(), partition=partition
            )
            sent[(partition, meta.offset)] = f"{partition}-{n}".encode()
    p0, p1, p2 = (TopicPartition(topic, n) for n in range(3))
    unknown = TopicPartition(f"{topic}.gone", 0)

    found = await logs.records_at({p0: 1, p1: 0, p2: 0, unknown: 0})

    assert set(found) == {p0, p1, p2}
    assert (found[p0].offset, found[p0].value) == (1, sent[(0, 1)])  # type: ignore[union-attr]
    assert (found[p1].offset, found[p1].value) == (0, sent[(1, 0)])  # type: ignore[union-attr]
    assert found[p2] is None
