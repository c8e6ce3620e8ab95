"""Transactional outbox: events are rows written with the state change, published by a relay.

A service never produces to Kafka from a request or a handler. It stages the event in the same
database transaction as the change it describes; the relay publishes staged rows in insertion
order (Kafka key = the event's subject, so one case's events stay on one partition, in order)
and marks them sent only after the broker acknowledged them.

The outbox, not the broker, is the source of truth. Each sent row keeps the partition and offset
the broker acknowledged, and ``outbox_partition`` how far each partition's log had got. Before
every batch (and every few seconds when idle) the relay compares that with the broker's logs: a
log that ends before an offset the broker acknowledged, or a partition that is gone, means the
broker lost events (an embedded broker restarted empty, a topic recreated, an unclean leader
election, a broker restored from an old disk). The retained rows from the first lost offset on
are marked unsent and leave again in their original order; consumers' inboxes drop what they
already had. Sent rows are kept for ``retention``: what is older cannot be healed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    delete,
    func,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel, select

from contracts.envelope import CONTENT_TYPE, CloudEvent
from contracts.topics import TOPICS
from services.runtime.clock import Clock
from services.runtime.db import Sessions
from services.runtime.kafka import BrokerLogs
from services.runtime.metrics import (
    OUTBOX_OLDEST_UNSENT_AGE,
    OUTBOX_PUBLISHED,
    OUTBOX_REPUBLISHED,
    OUTBOX_UNSENT,
)

log = logging.getLogger(__name__)

# Only one relay publishes at a time, so that rows leave in the order they were written even
# when several replicas of a service run; the others wait for the lock.
RELAY_LOCK_KEY = 0x5748_4F42  # "WHOB"
PURGE_EVERY = timedelta(hours=1)
READ_BACK_ATTEMPTS = 5
# Why the relay sends an event again (whistle_outbox_republished_total's reason).
REPUBLISH_REASONS = ("log_truncated", "partition_missing", "offsets_went_back", "not_read_back")
MISSING_TOPIC_WARN_EVERY = 30.0
# How often the relay measures its backlog for the gauges (one count over the unsent index).
BACKLOG_EVERY = 5.0


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
        Index("ix_outbox_created_at", "created_at"),
        Index(
            "ix_outbox_position",
            "topic",
            "kafka_partition",
            "kafka_offset",
            postgresql_where=text("sent_at IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    event_id: str = Field(sa_column=Column(String, nullable=False, unique=True))
    topic: str = Field(sa_column=Column(String, nullable=False))
    key: str = Field(sa_column=Column(String, nullable=False))
    event: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    kafka_partition: int | None = Field(default=None, sa_column=Column(Integer))
    kafka_offset: int | None = Field(default=None, sa_column=Column(BigInteger))


class OutboxPartition(SQLModel, table=True):
    """How far the broker had acknowledged a partition's log: the offset after the last event
    the relay published there."""

    __tablename__ = "outbox_partition"

    topic: str = Field(sa_column=Column(String, primary_key=True))
    partition: int = Field(sa_column=Column(Integer, primary_key=True))
    next_offset: int = Field(sa_column=Column(BigInteger, nullable=False))


# Each partition's position advanced past a published batch.
_ADVANCE = """
    INSERT INTO outbox_partition (topic, partition, next_offset)
    SELECT * FROM unnest(
        CAST(:topics AS text[]), CAST(:placed_partitions AS int[]), CAST(:next_offsets AS bigint[])
    )
    ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
"""
ADVANCE = text(_ADVANCE)
# A published batch in one round trip: each row marked sent with the partition and offset the
# broker gave it, each partition's position advanced past the batch, and the positions as they
# were before (the statement's snapshot), to tell whether the broker placed the batch below
# what it had acknowledged. The relay holds its lock, so no other relay moves them meanwhile.
RECORD_SENT = text(
    f"""
    WITH known AS (SELECT topic, partition, next_offset FROM outbox_partition),
    marked AS (
        UPDATE outbox SET sent_at = :now, kafka_partition = sent.p, kafka_offset = sent.o
        FROM unnest(CAST(:ids AS bigint[]), CAST(:partitions AS int[]), CAST(:offsets AS bigint[]))
            AS sent(id, p, o)
        WHERE outbox.id = sent.id
    ),
    advanced AS ({_ADVANCE})
    SELECT topic, partition, next_offset FROM known
    """
)
# Every retained event the broker no longer holds is sent again; ``lost_from`` is the first
# offset the log lost.
UNSEND = text(
    """
    UPDATE outbox SET sent_at = NULL, kafka_partition = NULL, kafka_offset = NULL
    WHERE sent_at IS NOT NULL AND topic = :topic AND kafka_partition = :partition
      AND kafka_offset >= :lost_from AND NOT (id = ANY(CAST(:keep AS bigint[])))
    """
)


# Set in a session's info by ``stage``: a commit of that session has something to publish.
_STAGED = "whistle.outbox.staged"


def stage(session: AsyncSession, topic: str, event: CloudEvent) -> None:
    """Add an event to the current transaction; it is published once the transaction commits."""
    if not event.subject:
        raise ValueError("an outgoing event needs a subject: it is the Kafka key")
    session.info[_STAGED] = True
    session.add(
        OutboxMessage(
            event_id=event.id,
            topic=topic,
            key=event.subject,
            event=event.to_json(),
            created_at=event.time,
        )
    )


def staged(session: AsyncSession) -> bool:
    """Whether ``stage`` added an event to ``session``: only then is the relay worth waking,
    since a wake-up costs it a transaction of its own (BEGIN, lock, read, COMMIT)."""
    return bool(session.info.get(_STAGED))


async def replay(session: AsyncSession, since: datetime) -> int:
    """Mark every event written since ``since`` unsent again, so the relay republishes it."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.created_at >= since)  # type: ignore[arg-type]
        .values(sent_at=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


class OutboxRelay:
    def __init__(
        self,
        sessions: Sessions,
        producer: AIOKafkaProducer,
        clock: Clock,
        *,
        service: str,
        logs: BrokerLogs,
        batch_size: int = 500,
        poll_seconds: float = 0.2,
        check_seconds: float = 2.0,
        retention: timedelta = timedelta(days=30),
        county: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._producer = producer
        # The deployment's default county: an event staged without one leaves with it, so that
        # every event on the wire names its county (contracts/tenancy.py).
        self._county = county
        self._logs = logs
        self._check_seconds = check_seconds
        self._last_check = -check_seconds
        # Topics sent again after a loss, read back in order until everything is found there;
        # the value counts the reads that could not finish, which give up after a few.
        self._audit: dict[str, int] = {}
        self._clock = clock
        self._service = service
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._retention = retention
        self._wakeup = asyncio.Event()
        self._last_purge: datetime | None = None
        self._last_missing_warning = -MISSING_TOPIC_WARN_EVERY
        self._last_backlog = -BACKLOG_EVERY
        # Series for what is known before anything is sent: an idle relay shows 0.
        OUTBOX_UNSENT.labels(service)
        OUTBOX_OLDEST_UNSENT_AGE.labels(service)
        for topic in TOPICS:
            if topic.producer == service:
                OUTBOX_PUBLISHED.labels(service, topic.name)
                for reason in REPUBLISH_REASONS:
                    OUTBOX_REPUBLISHED.labels(service, topic.name, reason)

    def wake(self) -> None:
        """Called after a commit that staged events, so they leave without waiting for a poll."""
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                published = await self.publish_batch()
                if time.monotonic() - self._last_backlog >= BACKLOG_EVERY:
                    await self.measure_backlog()
                if self._last_purge is None or self._clock() - self._last_purge > PURGE_EVERY:
                    await self.purge()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                published = 0
                await asyncio.sleep(1)
            if published < self._batch_size:
                # asyncio.timeout, not wait_for: on Python 3.11 a cancellation that meets
                # wait_for's own timeout can be lost, and the relay then never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_seconds):
                        await self._wakeup.wait()
                self._wakeup.clear()

    async def publish_batch(self) -> int:
        """Publish the oldest unsent rows, first healing what the broker lost; returns how many
        were published."""
        async with self._sessions() as session, session.begin():
            locked = await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY}
            )
            if not locked:
                return 0
            rows = await self._unsent(session)
            # What was lost goes before anything new, to keep each key's order. Between checks,
            # a loss shows when the broker places this batch below what it had acknowledged.
            due = time.monotonic() - self._last_check >= self._check_seconds
            if due and await self.heal(session):
                rows = await self._unsent(session)
            if due and not rows and self._audit and await self.read_back(session):
                rows = await self._unsent(session)
            if not rows:
                return 0
            if await self._topics_missing({row.topic for row in rows}):
                return 0
            acks = []
            for row in rows:
                event = CloudEvent.model_validate(row.event)
                if event.county is None and self._county is not None:
                    event.county = self._county
                value = event.to_bytes()
                acks.append(
                    await self._producer.send(
                        row.topic,
                        value=value,
                        key=row.key.encode(),
                        headers=[("content-type", CONTENT_TYPE.encode())],
                    )
                )
            # If any send fails, nothing is marked: the batch is sent again and consumers'
            # inboxes drop what they already had. (gather, not one await after another, so the
            # other failures of a batch are collected instead of logged as never retrieved.)
            placed: list[RecordMetadata] = list(await asyncio.gather(*acks))
            await self._record_sent(session, [row.id for row in rows], placed)
        for row in rows:
            OUTBOX_PUBLISHED.labels(self._service, row.topic).inc()
        return len(rows)

    async def measure_backlog(self) -> tuple[int, float]:
        """Count the unsent events and how long the oldest has waited (seconds, on the
        service's clock), and set the gauges; both 0 when nothing waits."""
        self._last_backlog = time.monotonic()
        async with self._sessions() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(OutboxMessage.created_at)).where(
                        OutboxMessage.sent_at.is_(None)  # type: ignore[union-attr]
                    )
                )
            ).one()
        age = max(0.0, (self._clock() - oldest).total_seconds()) if oldest is not None else 0.0
        OUTBOX_UNSENT.labels(self._service).set(count)
        OUTBOX_OLDEST_UNSENT_AGE.labels(self._service).set(age)
        return int(count), age

    async def _topics_missing(self, topics: set[str]) -> bool:
        """Whether the broker lacks a topic of the batch: then nothing is sent until it has it.

        A producer's cached metadata outlives a broker restarted empty, and Tansu 0.6 accepts a
        batch for a topic it does not have; creating the topic afterwards resets that log's
        offsets, so the next batches collide with the earlier ones and readers skip events
        (docs/reliability.md). A real Kafka cluster refuses such a batch; waiting costs nothing
        there either."""
        try:
            missing = await self._logs.missing_topics(topics, max_age=self._check_seconds)
        except KafkaError as exc:
            log.info("could not read the broker's topics (%s): holding the outbox", exc)
            return True
        if missing and time.monotonic() - self._last_missing_warning >= MISSING_TOPIC_WARN_EVERY:
            self._last_missing_warning = time.monotonic()
            log.warning(
                "the broker has no topic %s: holding the outbox", ", ".join(sorted(missing))
            )
        return bool(missing)

    async def _unsent(self, session: AsyncSession) -> list[Any]:
        return list(
            (
                await session.execute(
                    select(
                        OutboxMessage.id,
                        OutboxMessage.topic,
                        OutboxMessage.key,
                        OutboxMessage.event,
                    )
                    .where(OutboxMessage.sent_at.is_(None))  # type: ignore[union-attr]
                    .order_by(OutboxMessage.id)  # type: ignore[arg-type]
                    .limit(self._batch_size)
                )
            ).all()
        )

    async def _record_sent(
        self, session: AsyncSession, ids: list[int], placed: list[RecordMetadata]
    ) -> None:
        """Mark the batch sent and record how far each partition got; an offset below one
        acknowledged before means the log went back (the broker lost it while this batch was
        on its way)."""
        first: dict[TopicPartition, int] = {}
        after: dict[TopicPartition, int] = {}
        for meta in placed:
            tp = TopicPartition(meta.topic, meta.partition)
            first[tp] = min(first.get(tp, meta.offset), meta.offset)
            after[tp] = max(after.get(tp, 0), meta.offset + 1)
        positions = {
            "topics": [tp.topic for tp in after],
            "placed_partitions": [tp.partition for tp in after],
            "next_offsets": list(after.values()),
        }
        before = await session.execute(
            RECORD_SENT,
            {
                "now": self._clock(),
                "ids": ids,
                "partitions": [meta.partition for meta in placed],
                "offsets": [meta.offset for meta in placed],
                **positions,
            },
        )
        known = {TopicPartition(topic, partition): offset for topic, partition, offset in before}
        went_back = {tp: offset for tp, offset in first.items() if offset < known.get(tp, 0)}
        for tp, offset in went_back.items():
            # This batch too: it lies at the first offsets of a log the broker began again, and
            # Tansu starts a topic's offsets at 0 again under what it holds when the topic is
            # created after the batch, so what is sent again can land at its old offsets, above
            # this batch, where a consumer that had read them goes on (docs/reliability.md).
            # Sent again after what was lost, it is where every reader in order finds it.
            await self._unsend(session, tp, offset, "offsets_went_back")
        # A partition never seen before in a known topic: the topic may have been recreated.
        known_topics = {tp.topic for tp in known}
        moved = any(tp not in known and tp.topic in known_topics for tp in first)
        if went_back or moved:
            await self.heal(session, keep=ids)
            # Healing moves positions back to what the broker holds; this batch's stand.
            await session.execute(ADVANCE, positions)

    async def heal(self, session: AsyncSession, keep: list[int] | None = None) -> int:
        """Mark unsent every retained event that the broker no longer holds (but those of
        ``keep``, just placed); returns how many."""
        self._last_check = time.monotonic()
        known = await self._positions(session)
        if not known:
            return 0
        ends = await self._logs.ends(set(known))
        # Where a log seems to end before what was acknowledged, its last event is looked for.
        seemingly_short = {
            tp: next_offset - 1
            for tp, next_offset in known.items()
            if (end := ends.get(tp)) is not None and end < next_offset
        }
        lost = await self._not_held(session, seemingly_short)
        healed = 0
        for tp in known:
            if tp not in ends:
                continue  # its topic is not in the broker's metadata now: ask again later
            end = ends[tp]
            if end is None:
                healed += await self._unsend(session, tp, 0, "partition_missing", keep)
                await session.execute(
                    delete(OutboxPartition).where(
                        OutboxPartition.topic == tp.topic,  # type: ignore[arg-type]
                        OutboxPartition.partition == tp.partition,  # type: ignore[arg-type]
                    )
                )
            elif tp in lost:
                healed += await self._unsend(session, tp, end, "log_truncated", keep)
                await session.execute(
                    update(OutboxPartition)
                    .where(
                        OutboxPartition.topic == tp.topic,  # type: ignore[arg-type]
                        OutboxPartition.partition == tp.partition,  # type: ignore[arg-type]
                    )
                    .values(next_offset=end)
                )
        if healed:
            # The topics may have come back with other partition counts: the partitioner must
            # place what leaves again by what the broker has now, not by what it had.
            await self._producer.client.force_metadata_update()
        return healed

    def audit(self, topic: str) -> None:
        """Read ``topic`` back in order at the next check (done by itself after every loss)."""
        self._audit[topic] = 0

    async def read_back(self, session: AsyncSession) -> int:
        """Once what was lost has been sent again, read those topics back in order from the
        start of each log and send again whatever a reader does not find; returns how many.

        A broker that has just come back may acknowledge a batch and still lose it to a reader
        (Tansu 0.6 gave two batches overlapping offsets: fetched at its offset an event was
        there, read in order it was not — docs/reliability.md). Reading in order is what
        consumers do."""
        resent = 0
        for topic in sorted(self._audit):
            rows = (
                await session.execute(
                    select(
                        OutboxMessage.id,
                        OutboxMessage.event_id,
                        OutboxMessage.kafka_partition,
                    ).where(
                        OutboxMessage.topic == topic,  # type: ignore[arg-type]
                        OutboxMessage.sent_at.is_not(None),  # type: ignore[union-attr]
                    )
                )
            ).all()
            placed: dict[int, list[Any]] = {}
            for row in rows:
                placed.setdefault(row.kafka_partition, []).append(row)
            missing: list[int] = []
            try:
                for partition, held in placed.items():
                    found = await self._logs.event_ids(TopicPartition(topic, partition))
                    missing += [row.id for row in held if row.event_id not in found]
            except (TimeoutError, KafkaError) as exc:
                self._audit[topic] += 1
                if self._audit[topic] >= READ_BACK_ATTEMPTS:
                    log.warning("could not read %s back (%s): giving up", topic, exc)
                    del self._audit[topic]
                continue
            if missing:
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(missing))  # type: ignore[union-attr]
                    .values(sent_at=None, kafka_partition=None, kafka_offset=None)
                )
                OUTBOX_REPUBLISHED.labels(self._service, topic, "not_read_back").inc(len(missing))
                log.warning(
                    "%d events acknowledged on %s were not there when read back: sent again",
                    len(missing),
                    topic,
                )
                resent += len(missing)
            else:
                del self._audit[topic]
        return resent

    async def _not_held(
        self, session: AsyncSession, offsets: dict[TopicPartition, int]
    ) -> set[TopicPartition]:
        """The partitions whose event acknowledged at the given offset the broker no longer
        holds. Asked when a log seems to end before it: a broker may report a log end that
        lags its last batch (Tansu reports the last batch's first offset + 1). Read together
        (``BrokerLogs.records_at``); a partition that could not be read is no evidence of loss:
        the next check asks again."""
        if not offsets:
            return set()
        try:
            found = await self._logs.records_at(offsets)
        except KafkaError:
            return set()
        lost = set()
        for tp, record in found.items():
            if record is None:
                lost.add(tp)
                continue
            published = await session.scalar(
                select(OutboxMessage.event_id).where(
                    OutboxMessage.topic == tp.topic,  # type: ignore[arg-type]
                    OutboxMessage.kafka_partition == tp.partition,  # type: ignore[arg-type]
                    OutboxMessage.kafka_offset == offsets[tp],  # type: ignore[arg-type]
                )
            )
            if published is None:
                continue  # purged since: nothing of ours to compare with
            try:
                held = json.loads(record.value or b"{}").get("id")
            except ValueError:
                held = None
            if held != published:
                lost.add(tp)
        return lost

    async def _positions(self, session: AsyncSession) -> dict[TopicPartition, int]:
        rows = (await session.execute(select(OutboxPartition))).scalars()
        return {TopicPartition(row.topic, row.partition): row.next_offset for row in rows}

    async def _unsend(
        self,
        session: AsyncSession,
        tp: TopicPartition,
        lost_from: int,
        reason: str,
        keep: list[int] | None = None,
    ) -> int:
        result = await session.execute(
            UNSEND,
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "lost_from": lost_from,
                "keep": keep or [],
            },
        )
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if count:
            self.audit(tp.topic)
            OUTBOX_REPUBLISHED.labels(self._service, tp.topic, reason).inc(count)
            log.warning(
                "the broker lost %s[%d] from offset %d (%s): %d retained events sent again",
                tp.topic,
                tp.partition,
                lost_from,
                reason,
                count,
            )
        return count

    async def purge(self) -> int:
        """Delete sent rows older than the retention period; returns how many."""
        now = self._clock()
        self._last_purge = now
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(OutboxMessage).where(
                    OutboxMessage.sent_at < now - self._retention  # type: ignore[operator]
                )
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
