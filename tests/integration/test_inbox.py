"""The inbox consumer against the real PostgreSQL and broker."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from uuid import uuid4

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from contracts.topics import dlq_topic
from services.launcher.embedded import free_port
from services.runtime.db import Sessions, create_engine, session_factory
from services.runtime.inbox import Handler, InboxConsumer, InboxRecord
from services.runtime.kafka import ensure_topics
from services.runtime.metrics import DEPENDENCY_OUTAGES
from services.runtime.outbox import stage
from tests.integration.conftest import Effect, MovableClock, consuming, sample_event
from tests.support.infra import Infra, eventually, read_topic


async def _topic(infra: Infra, partitions: int = 1) -> str:
    topic = f"test.inbox.{uuid4().hex[:8]}"
    await ensure_topics(infra.bootstrap, [topic, dlq_topic(topic)], partitions=partitions)
    return topic


async def _send(
    producer: AIOKafkaProducer, topic: str, value: bytes, key: bytes = b"case-1"
) -> None:
    await producer.send_and_wait(topic, value=value, key=key)


async def _effects(sessions: Sessions, event_id: str | None = None) -> int:
    query = select(func.count()).select_from(Effect)
    if event_id is not None:
        query = query.where(Effect.event_id == event_id)
    async with sessions() as session:
        return int(await session.scalar(query) or 0)


async def _dead_lettered(infra: Infra, topic: str) -> int:
    probe = AIOKafkaConsumer(bootstrap_servers=infra.bootstrap)
    await probe.start()
    try:
        dlq = TopicPartition(dlq_topic(topic), 0)
        return int((await probe.end_offsets([dlq]))[dlq])
    finally:
        await probe.stop()


def _recording_handler() -> Handler:
    async def handle(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        session.add(Effect(event_id=event.id, note=topic))

    return handle


async def test_a_redelivered_event_has_its_effect_once(
    infra: Infra, sessions: Sessions, producer: AIOKafkaProducer, clock: MovableClock
) -> None:
    topic = await _topic(infra)
    first, second = sample_event(clock), sample_event(clock)
    for event in (first, first, second, first):  # at-least-once: the broker may repeat itself
        await _send(producer, topic, event.to_bytes())

    async with consuming(infra, sessions, producer, clock, topic, _recording_handler(), "g-dedupe"):
        await eventually(lambda: _effects_equal(sessions, 2), what="both events handled")
        # The last copy of `first` is the fourth record; once it is past, nothing more may come.
        await eventually(lambda: _committed(infra, "g-dedupe", topic, 4), what="offsets committed")
    assert await _effects(sessions, first.id) == 1
    assert await _effects(sessions, second.id) == 1
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(InboxRecord)) == 2


async def _effects_equal(sessions: Sessions, expected: int) -> bool:
    return await _effects(sessions) == expected


async def _committed(
    infra: Infra, group: str, topic: str, offset: int, partitions: int = 1
) -> bool:
    """Whether ``group`` committed ``offset`` on each of the topic's first ``partitions``."""
    probe = AIOKafkaConsumer(
        bootstrap_servers=infra.bootstrap, group_id=group, enable_auto_commit=False
    )
    await probe.start()
    try:
        for partition in range(partitions):
            if await probe.committed(TopicPartition(topic, partition)) != offset:
                return False
        return True
    finally:
        await probe.stop()


async def test_a_handler_that_fails_then_recovers_is_retried_and_applied_once(
    infra: Infra, sessions: Sessions, producer: AIOKafkaProducer, clock: MovableClock
) -> None:
    topic = await _topic(infra)
    attempts: list[str] = []

    async def flaky(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        attempts.append(event.id)
        session.add(Effect(event_id=event.id, note=f"attempt {len(attempts)}"))
        if len(attempts) < 3:
            raise RuntimeError("the unit roster was being reloaded")

    event = sample_event(clock)
    await _send(producer, topic, event.to_bytes())
    async with consuming(infra, sessions, producer, clock, topic, flaky, "g-flaky", max_attempts=5):
        await eventually(lambda: _effects_equal(sessions, 1), what="the third attempt to commit")
    assert len(attempts) == 3
    async with sessions() as session:
        notes = (await session.scalars(select(Effect.note))).all()
    assert notes == ["attempt 3"]  # the failed attempts left nothing half-saved


async def test_a_poison_event_goes_to_the_dlq_with_its_reason_and_the_next_one_is_handled(
    infra: Infra, sessions: Sessions, producer: AIOKafkaProducer, clock: MovableClock
) -> None:
    topic = await _topic(infra)
    poison, healthy = sample_event(clock), sample_event(clock)

    async def refuse_poison(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        session.add(Effect(event_id=event.id))
        if event.id == poison.id:
            raise ValueError("township T99 does not exist")

    await _send(producer, topic, poison.to_bytes())
    await _send(producer, topic, b"{not json at all")
    await _send(producer, topic, healthy.to_bytes())
    async with consuming(infra, sessions, producer, clock, topic, refuse_poison, "g-poison"):
        await eventually(lambda: _effects_equal(sessions, 1), what="the healthy event")
        dead = await read_topic(infra.bootstrap, dlq_topic(topic), 2)

    assert await _effects(sessions, poison.id) == 0
    assert await _effects(sessions, healthy.id) == 1
    first, second = sorted(dead, key=lambda r: r.offset)
    first_headers = dict(first.headers)
    assert CloudEvent.model_validate_json(first.value).id == poison.id
    assert b"township T99 does not exist" in first_headers["dlq-reason"]
    assert first_headers["dlq-attempts"] == b"3"
    assert first_headers["dlq-topic"] == topic.encode()
    assert first_headers["dlq-offset"] == b"0"
    assert second.value == b"{not json at all"
    assert b"not a CloudEvents 1.0 JSON event" in dict(second.headers)["dlq-reason"]


async def test_a_restarted_consumer_resumes_after_the_last_committedsample_event(
    infra: Infra, sessions: Sessions, producer: AIOKafkaProducer, clock: MovableClock
) -> None:
    topic = await _topic(infra)
    seen: list[str] = []

    def counting() -> Callable[[AsyncSession, CloudEvent, str], object]:
        async def handle(session: AsyncSession, event: CloudEvent, topic: str) -> None:
            seen.append(event.id)
            session.add(Effect(event_id=event.id))

        return handle

    before = [sample_event(clock) for _ in range(3)]
    for event in before:
        await _send(producer, topic, event.to_bytes())
    async with consuming(infra, sessions, producer, clock, topic, counting(), "g-resume"):  # type: ignore[arg-type]
        await eventually(lambda: _effects_equal(sessions, 3), what="the first three events")
        await eventually(lambda: _committed(infra, "g-resume", topic, 3), what="offsets committed")

    after = sample_event(clock)
    await _send(producer, topic, after.to_bytes())
    async with consuming(infra, sessions, producer, clock, topic, counting(), "g-resume"):  # type: ignore[arg-type]
        await eventually(lambda: _effects_equal(sessions, 4), what="the event sent while stopped")
    # The handler never even saw the first three again: the offsets were committed.
    assert seen == [e.id for e in before] + [after.id]


class SwitchableSessions:
    """Sessions from whichever database is current: lets a test end an outage."""

    def __init__(self, current: Sessions) -> None:
        self.current = current

    def __call__(self) -> AsyncSession:
        return self.current()


async def test_a_database_outage_longer_than_the_retry_budget_dead_letters_nothing(
    infra: Infra, sessions: Sessions, producer: AIOKafkaProducer, clock: MovableClock
) -> None:
    topic = await _topic(infra)
    unreachable = create_engine(
        f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere", pool_size=1
    )
    switchable = SwitchableSessions(session_factory(unreachable))
    event = sample_event(clock)
    await _send(producer, topic, event.to_bytes())
    outages = DEPENDENCY_OUTAGES.labels("test")
    before = outages._value.get()  # type: ignore[attr-defined]

    async def outage_outlasted_the_budget() -> bool:
        return outages._value.get() - before > 3  # type: ignore[attr-defined]

    async with consuming(
        infra,
        switchable,
        producer,
        clock,
        topic,
        _recording_handler(),
        "g-outage",
        max_attempts=2,  # type: ignore[arg-type]
    ):
        await eventually(outage_outlasted_the_budget, what="more failed attempts than the budget")
        switchable.current = sessions  # the database is back
        await eventually(lambda: _effects_equal(sessions, 1), what="the event applied")
    await unreachable.dispose()

    assert await _dead_lettered(infra, topic) == 0


async def test_a_database_starting_up_is_waited_for_not_dead_lettered(
    infra: Infra, sessions: Sessions, producer: AIOKafkaProducer, clock: MovableClock
) -> None:
    """After a crash PostgreSQL answers "the database system is starting up" (SQLSTATE 57P03)
    for seconds, and SQLAlchemy raises it as a plain DBAPIError: an outage, not a bad event.
    Found by the fault suite (`make faults`, PostgreSQL killed): events were dead-lettered."""
    topic = await _topic(infra)
    attempts: list[str] = []

    async def while_starting_up(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        attempts.append(event.id)
        session.add(Effect(event_id=event.id))
        if len(attempts) <= 4:
            try:
                raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
            except asyncpg.PostgresError as exc:
                raise DBAPIError("SELECT 1", None, exc) from exc  # as SQLAlchemy wraps it

    event = sample_event(clock)
    await _send(producer, topic, event.to_bytes())
    async with consuming(
        infra, sessions, producer, clock, topic, while_starting_up, "g-starting", max_attempts=2
    ):
        await eventually(lambda: _effects_equal(sessions, 1), what="the event applied")
    assert len(attempts) == 5

    assert await _dead_lettered(infra, topic) == 0


async def test_the_relay_is_woken_only_after_handlers_that_staged_an_event(
    infra: Infra, sessions: Sessions, producer: AIOKafkaProducer, clock: MovableClock
) -> None:
    """A wake-up costs the outbox relay a transaction of its own: a consumer whose handlers
    only record (the ledger's) must not wake it; one whose handlers stage events must."""
    wakes = {"recording": 0, "staging": 0}

    async def restate(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        session.add(Effect(event_id=event.id, note=topic))
        stage(session, "test.restated", sample_event(clock))

    for name, handler in (("recording", _recording_handler()), ("staging", restate)):
        topic = await _topic(infra)
        for _ in range(3):
            await _send(producer, topic, sample_event(clock).to_bytes())

        def woken(name: str = name) -> None:
            wakes[name] += 1

        async with consuming(
            infra,
            sessions,
            producer,
            clock,
            topic,
            handler,
            f"g-{name}",
            after_staged_commit=woken,
        ):
            await eventually(
                lambda topic=topic, group=f"g-{name}": _committed(infra, group, topic, 3),
                what=f"the {name} consumer's three events handled",
            )
    assert wakes["recording"] == 0
    assert wakes["staging"] >= 1


async def test_before_commit_runs_in_the_transaction_of_the_events_it_follows(
    infra: Infra, sessions: Sessions, producer: AIOKafkaProducer, clock: MovableClock
) -> None:
    topic = await _topic(infra)
    events = [sample_event(clock) for _ in range(3)]
    for event in events:
        await _send(producer, topic, event.to_bytes())

    async with _summarising(infra, sessions, producer, clock, topic, "g-flush"):
        await eventually(lambda: _flushes(sessions), what="a flush that saw all three events")
    # One flush per transaction (one, unless the broker split the records), each counting the
    # handled rows committed with it and before it.
    flushes = await _flushes(sessions)
    assert flushes[-1] == "after 3"
    assert flushes == sorted(flushes) and len(set(flushes)) == len(flushes)


async def _summarise(session: AsyncSession) -> None:
    """A ``before_commit`` that records how many events had been handled when it ran: it sees
    the handlers' rows of its transaction, and commits or rolls back with them."""
    handled = await session.scalar(
        select(func.count()).select_from(Effect).where(Effect.note != "flush")
    )
    session.add(Effect(event_id=f"after {handled}", note="flush"))


def _summarising(
    infra: Infra,
    sessions: Sessions,
    producer: AIOKafkaProducer,
    clock: MovableClock,
    topic: str,
    group: str,
) -> AbstractAsyncContextManager[InboxConsumer]:
    """A consumer of ``topic`` that records each event and, before each commit, a summary."""
    return consuming(
        infra,
        sessions,
        producer,
        clock,
        topic,
        _recording_handler(),
        group,
        before_commit=_summarise,
    )


async def _all_flushes(sessions: Sessions) -> list[str]:
    async with sessions() as session:
        rows = (
            await session.scalars(
                select(Effect.event_id).where(Effect.note == "flush").order_by(Effect.id)
            )
        ).all()
    return list(rows)


async def _flushes(sessions: Sessions) -> list[str]:
    rows = await _all_flushes(sessions)
    return rows if rows and rows[-1] == "after 3" else []


async def test_a_fetch_of_several_partitions_is_handled_once_each_and_committed_on_each(
    infra: Infra, sessions: Sessions, producer: AIOKafkaProducer, clock: MovableClock
) -> None:
    """The records a fetch brings from several partitions are handled together (one
    transaction per fetch, not per partition) and each partition's offset is committed."""
    topic = await _topic(infra, partitions=3)
    events = [sample_event(clock, subject=f"case-{n % 3}") for n in range(6)]
    for n, event in enumerate(events):
        await producer.send_and_wait(topic, value=event.to_bytes(), partition=n % 3)

    async with _summarising(infra, sessions, producer, clock, topic, "g-fetch"):
        await eventually(
            lambda: _committed(infra, "g-fetch", topic, 2, partitions=3),
            what="two events committed on each of the three partitions",
        )
    async with sessions() as session:
        handled = (
            await session.scalars(select(Effect.event_id).where(Effect.note != "flush"))
        ).all()
    assert sorted(handled) == sorted(e.id for e in events)
    flushes = await _all_flushes(sessions)
    # A transaction per partition would make at least three; a transaction per fetch makes
    # fewer, unless each fetch reached a single partition (aiokafka asks for all at once).
    assert flushes[-1] == "after 6" and len(flushes) < 3


async def test_a_batch_is_shown_whole_before_its_handlers_run(
    infra: Infra, sessions: Sessions, producer: AIOKafkaProducer, clock: MovableClock
) -> None:
    """``before_batch`` sees the events of a batch that have a handler (not the others), in
    order, before the first of their handlers runs: dispatch's triage reads a batch's tips
    together there."""
    topic = await _topic(infra)
    events = [sample_event(clock) for _ in range(4)]
    other = sample_event(clock).model_copy(update={"type": "whistle.test.unhandled"})
    for event in [*events[:2], other, *events[2:]]:
        await _send(producer, topic, event.to_bytes())
    seen: list[str] = []

    def before_batch(batch: Sequence[CloudEvent]) -> None:
        seen.append("batch: " + " ".join(event.id for event in batch))

    async def handler(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        seen.append(event.id)

    async with consuming(
        infra, sessions, producer, clock, topic, handler, "g-before", before_batch=before_batch
    ):
        await eventually(lambda: _effects_seen(seen, events), what="every event handled")
    batches = [entry.removeprefix("batch: ").split() for entry in seen if entry.startswith("batch")]
    assert [id_ for batch in batches for id_ in batch] == [e.id for e in events]
    for event in events:
        shown = next(n for n, entry in enumerate(seen) if event.id in entry.split())
        assert seen[shown].startswith("batch") and seen.index(event.id) > shown


async def _effects_seen(seen: list[str], events: list[CloudEvent]) -> bool:
    return all(event.id in seen for event in events)
