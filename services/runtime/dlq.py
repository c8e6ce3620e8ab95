"""Dead letters: what the inbox parked in ``<topic>.dlq``, and sending it back.

A parked record is the original record (key, value, headers) plus the ``dlq-*`` headers the
inbox added (services/runtime/inbox.py). A replay produces it again to its original topic and
partition, then marks it done by producing a marker to the dead-letter topic itself: an empty
record whose ``dlq-replayed-of`` header names the parked record's ``partition:offset``. The
dead-letter topic is thus its own replay log: nothing else to keep in step with it, and a
broker that loses the topic loses the records and their markers together. Sending first and
marking after means a crash in between sends the event again on the next replay, which the
consumers' inboxes drop as a duplicate.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from contracts.topics import DLQ_SUFFIX, dlq_topic
from services.runtime.clock import Clock, system_clock
from services.runtime.kafka import NO_AUTH, BrokerAuth, create_producer

DLQ_HEADER_PREFIX = "dlq-"
REPLAYED_OF = "dlq-replayed-of"
REPLAYED_AT = "dlq-replayed-at"


class UnknownTopic(LookupError):
    """The broker has no such dead-letter topic."""


class UnknownEvents(LookupError):
    """Event ids asked for that are not parked in the topic."""


@dataclass(frozen=True)
class ParkedEvent:
    dlq_topic: str
    partition: int
    offset: int
    parked_at: datetime
    key: bytes | None
    value: bytes | None
    # The original record's headers, without the ``dlq-*`` ones.
    headers: tuple[tuple[str, bytes], ...]
    # From the value, if it is a JSON object with string ``id`` and ``type`` (a CloudEvent).
    event_id: str | None
    event_type: str | None
    topic: str
    original_partition: int
    original_offset: int
    consumer: str
    attempts: int
    reason: str
    # The latest replay, if any.
    replayed_at: datetime | None

    def to_json(self) -> dict[str, object]:
        return {
            "dlq_topic": self.dlq_topic,
            "partition": self.partition,
            "offset": self.offset,
            "parked_at": self.parked_at.isoformat(),
            "key": self.key.decode(errors="replace") if self.key is not None else None,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "topic": self.topic,
            "original_partition": self.original_partition,
            "original_offset": self.original_offset,
            "consumer": self.consumer,
            "attempts": self.attempts,
            "reason": self.reason,
            "replayed_at": self.replayed_at.isoformat() if self.replayed_at else None,
        }


@dataclass(frozen=True)
class Replayed:
    sent: int
    # Parked records left alone because an earlier replay sent them already.
    skipped: int


def dlq_name(topic: str) -> str:
    """``intake.tips.v1`` and ``intake.tips.v1.dlq`` both name ``intake.tips.v1.dlq``."""
    return topic if topic.endswith(DLQ_SUFFIX) else dlq_topic(topic)


async def dlq_topics(bootstrap: str, auth: BrokerAuth = NO_AUTH) -> list[str]:
    """Every dead-letter topic the broker has."""
    async with _consumer(bootstrap, auth) as consumer:
        return sorted(t for t in await consumer.topics() if t.endswith(DLQ_SUFFIX))


async def parked(
    bootstrap: str, topics: Iterable[str], auth: BrokerAuth = NO_AUTH
) -> list[ParkedEvent]:
    """What the dead-letter topics hold now, in topic, partition and offset order.

    Read without a consumer group, so listing commits nothing. A topic the broker does not have
    holds nothing.
    """
    records = await _read_to_end(bootstrap, [dlq_name(t) for t in topics], auth)
    replayed: dict[tuple[str, int, int], datetime] = {}
    for record in records:
        headers = _headers(record)
        if REPLAYED_OF in headers:
            partition, offset = headers[REPLAYED_OF].decode().split(":")
            at = datetime.fromisoformat(headers[REPLAYED_AT].decode())
            origin = (record.topic, int(partition), int(offset))
            replayed[origin] = max(at, replayed.get(origin, at))
    return [
        _parked(record, replayed.get((record.topic, record.partition, record.offset)))
        for record in records
        if "dlq-topic" in _headers(record)
    ]


async def replay(
    bootstrap: str,
    topic: str,
    ids: Iterable[str] = (),
    again: bool = False,
    *,
    clock: Clock = system_clock,
    auth: BrokerAuth = NO_AUTH,
) -> Replayed:
    """Send a dead-letter topic's parked events (those with ``ids``, or all) back where they
    came from; those replayed before only if ``again``."""
    name = dlq_name(topic)
    if name not in await dlq_topics(bootstrap, auth):
        raise UnknownTopic(name)
    chosen = await parked(bootstrap, [name], auth)
    wanted = set(ids)
    if wanted:
        missing = wanted - {p.event_id for p in chosen}
        if missing:
            raise UnknownEvents(sorted(missing))
        chosen = [p for p in chosen if p.event_id in wanted]
    due = [p for p in chosen if again or p.replayed_at is None]
    skipped = len(chosen) - len(due)
    if not due:
        return Replayed(sent=0, skipped=skipped)
    # Every consumer group of a topic that failed on the same record parked a copy of it;
    # sending it once reaches them all.
    originals: dict[tuple[str, int, int], ParkedEvent] = {}
    for p in due:
        originals.setdefault((p.topic, p.original_partition, p.original_offset), p)
    # Not idempotent: a duplicate is harmless to an inbox, and the embedded broker refuses it.
    producer = create_producer(
        bootstrap, client_id="whistle-dlq", enable_idempotence=False, auth=auth
    )
    try:
        await producer.start()
        sends = [
            await producer.send(
                p.topic,
                value=p.value,
                key=p.key,
                partition=p.original_partition,
                headers=list(p.headers),
            )
            for p in originals.values()
        ]
        await asyncio.gather(*sends)
        at = clock().isoformat().encode()
        markers = [
            await producer.send(
                name,
                value=b"",
                partition=p.partition,
                headers=[(REPLAYED_OF, f"{p.partition}:{p.offset}".encode()), (REPLAYED_AT, at)],
            )
            for p in due
        ]
        await asyncio.gather(*markers)
    finally:
        await producer.stop()
    return Replayed(sent=len(originals), skipped=skipped)


@asynccontextmanager
async def _consumer(bootstrap: str, auth: BrokerAuth) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="whistle-dlq",
        enable_auto_commit=False,
        **auth.client_options(),
    )
    try:  # a start that failed half-way still holds connections to close
        await consumer.start()
        yield consumer
    finally:
        await consumer.stop()


async def _read_to_end(bootstrap: str, topics: list[str], auth: BrokerAuth) -> list[ConsumerRecord]:
    async with _consumer(bootstrap, auth) as consumer:
        await consumer.topics()  # the cluster's metadata, partitions included
        partitions = [
            TopicPartition(topic, p)
            for topic in sorted(set(topics))
            for p in sorted(consumer.partitions_for_topic(topic) or set())
        ]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # The ends as of now: what is parked meanwhile waits for the next call. Records past an
        # end in the batch that reaches it are kept: Tansu reports a partition's end as one past
        # the first offset of its last batch, however many records that batch holds.
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        pending = [p for p in partitions if await consumer.position(p) < ends[p]]
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for batch in batches.values():
                records.extend(batch)
            pending = [p for p in pending if await consumer.position(p) < ends[p]]
    return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))


def _headers(record: ConsumerRecord) -> dict[str, bytes]:
    return {name: value for name, value in record.headers or ()}


def _parked(record: ConsumerRecord, replayed_at: datetime | None) -> ParkedEvent:
    headers = _headers(record)
    event_id, event_type = _identity(record.value)
    return ParkedEvent(
        dlq_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        parked_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        key=record.key,
        value=record.value,
        headers=tuple(
            (name, value)
            for name, value in record.headers or ()
            if not name.startswith(DLQ_HEADER_PREFIX)
        ),
        event_id=event_id,
        event_type=event_type,
        topic=headers["dlq-topic"].decode(),
        original_partition=int(headers["dlq-partition"]),
        original_offset=int(headers["dlq-offset"]),
        consumer=headers["dlq-consumer"].decode(),
        attempts=int(headers["dlq-attempts"]),
        reason=headers["dlq-reason"].decode(errors="replace"),
        replayed_at=replayed_at,
    )


def _identity(value: bytes | None) -> tuple[str | None, str | None]:
    try:
        event = json.loads(value or b"")
    except ValueError:
        return None, None
    if not isinstance(event, dict):
        return None, None
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        return None, None
    return event_id, event_type
