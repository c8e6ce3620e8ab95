"""Inbox consumer: each event's effects and its ``(source, id)`` commit in one transaction.

Kafka delivers at least once. The inbox row decides whether an event is new
(``INSERT … ON CONFLICT DO NOTHING``); a redelivered event finds its row and is skipped, so
effects happen exactly once. Offsets are committed only after the database commit. A handler that
keeps failing is retried a bounded number of times, then the event goes to ``<topic>.dlq`` with
the error attached, and the consumer moves on.

Before any of that, an event must be admissible where it arrived (``contracts.topics.admissible``):
its type carried by that topic, from the topic's producer, or, for what the topic's submitters
send from outside Whistle, with the submitter's JWT in the ``authorization`` header, verified,
and acting for whom the payload names; and its ``county`` one the deployment serves
(``contracts.tenancy.Counties``). An event that is not is dead-lettered with the reason, and
nothing else happens: no inbox row, no effect.

The broker can lose what it held (an embedded broker restarted empty, an unclean leader
election): the producers' outboxes send it again, possibly at offsets this consumer believes it
has passed. So every few seconds the consumer checks that the last record it consumed on each
partition at the previous check is still there, byte for byte; if not, it reads that partition
again from the beginning, and the inbox drops what it already had. A watchdog compares the
partitions' log ends with what was processed: lag that grows while nothing is processed makes
the consumer ``stuck`` (``/healthz`` then fails, and the supervisor restarts the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import ValidationError
from sqlalchemy import Column, DateTime, String, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from contracts.envelope import CloudEvent
from contracts.tenancy import Counties
from contracts.topics import (
    DEFAULT_GROUP_PREFIX,
    HEADER_AUTHORIZATION,
    Submitters,
    admissible,
    consumer_group,
    dlq_topic,
    registered,
)
from services.runtime.auth import Principal, TokenVerifier
from services.runtime.clock import Clock
from services.runtime.db import Sessions
from services.runtime.kafka import NO_AUTH, BrokerAuth, BrokerLogs
from services.runtime.logs import log_context
from services.runtime.metrics import (
    CONSUMED_OUTCOMES,
    CONSUMER_LAG,
    CONSUMER_PARTITION_LAG,
    CONSUMER_REWOUND,
    DEPENDENCY_OUTAGES,
    EVENTS_CONSUMED,
    HANDLER_FAILURES,
)
from services.runtime.outbox import staged
from services.runtime.problems import Problem, is_unavailable

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, CloudEvent, str], Awaitable[None]]
"""``(session, event, topic)``: apply the event's effects inside the open transaction."""

SubmissionHandler = Callable[[AsyncSession, CloudEvent, str, Principal], Awaitable[None]]
"""``(session, event, topic, submitter)``: a submission from outside Whistle, with the verified
principal of whoever sent it (its token's)."""

Admission = Callable[[str, str, str], str | None]
"""``(topic, event type, source)``: why such an event may not be taken; None if it may."""


class InboxRecord(SQLModel, table=True):
    __tablename__ = "inbox"

    source: str = Field(sa_column=Column(String, primary_key=True))
    event_id: str = Field(sa_column=Column(String, primary_key=True))
    type: str = Field(sa_column=Column(String, nullable=False))
    topic: str = Field(sa_column=Column(String, nullable=False))
    processed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


PATTERN_METADATA_MAX_AGE_MS = 5_000
DEFAULT_METADATA_MAX_AGE_MS = 300_000  # aiokafka's own

# Records taken from Kafka at a time (all partitions together); they commit in one transaction.
BATCH_SIZE = 200
# How long the broker may hold a fetch that has no data yet. Tansu holds it that long even
# when data arrives meanwhile, so this bounds each hop's latency (bench: 478 ms → 88 ms p50
# tip-to-ledger at 10 tips/s, against the default of 500 ms).
FETCH_MAX_WAIT_MS = 100

# One statement of constant shape claims a batch of any size: prepared once per connection,
# where a multi-row VALUES list is compiled anew for every batch size (a third of the
# ledger's ingest time before). A copy repeated inside one batch claims once.
CLAIM = text(
    """
    INSERT INTO inbox (source, event_id, type, topic, processed_at)
    SELECT source, event_id, type, topic, :now
    FROM unnest(
        CAST(:sources AS text[]), CAST(:ids AS text[]),
        CAST(:types AS text[]), CAST(:topics AS text[])
    ) AS claimed(source, event_id, type, topic)
    ON CONFLICT DO NOTHING
    RETURNING source, event_id
    """
)


# Failures that say a dependency is unreachable rather than that the event is bad.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    OSError,
    TimeoutError,
)


def dependency_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database or the network cannot serve now — by its type, or by
    what it was raised from: a PostgreSQL restarting answers "the database system is starting
    up" (SQLSTATE 57P03) through a plain ``DBAPIError``, and that is no fault of the event."""
    return isinstance(exc, UNAVAILABLE) or is_unavailable(exc)


MAX_OUTAGE_BACKOFF = 10.0


class PoisonEvent(Exception):
    """Raised by a handler for an event that can never succeed; it skips the retries."""


@dataclass(frozen=True)
class Subscription:
    """What a service consumes: topics, a handler per event type, and one for any other type."""

    topics: tuple[str, ...]
    handlers: Mapping[str, Handler]
    any_type: Handler | None = None
    # A regex over topic names instead of a fixed list, for consumers of every topic.
    pattern: str | None = None
    # Runs inside the transaction, after the handlers of every new event in it and before the
    # commit: for a service that writes what a batch of events adds all at once.
    before_commit: Callable[[AsyncSession], Awaitable[None]] | None = None
    # Runs before the handlers of a batch of several events, outside its transaction, given
    # those of its events that have a handler here: for pure work that is cheaper done for
    # many events at once (dispatch's triage model reads a batch's tips together).
    before_batch: Callable[[Sequence[CloudEvent]], None] | None = None
    # Handlers of the submissions the registry says come from outside Whistle (a topic's
    # ``submitters``), given the principal the inbox verified; and the verifier of their tokens.
    # A submission without a handler here goes to ``handlers``/``any_type`` once verified.
    submissions: Mapping[str, SubmissionHandler] = field(default_factory=dict)
    verifier: TokenVerifier | None = None
    # What may be taken from where: the registry's rule. None only for a test's own topics.
    admit: Admission | None = admissible

    def handler_for(self, event_type: str) -> Handler | None:
        return self.handlers.get(event_type, self.any_type)


@dataclass(frozen=True)
class Refused:
    """Why an event may not be handled here: it is dead-lettered with the reason."""

    reason: str


class _Refusal(Exception):
    """A refused event in a batch: the batch is handled one by one instead."""


@dataclass(frozen=True)
class GroupTiming:
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    rebalance_timeout_ms: int = 30_000

    def consumer_options(self) -> dict[str, int]:
        return {
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "rebalance_timeout_ms": self.rebalance_timeout_ms,
        }


class InboxConsumer:
    def __init__(
        self,
        *,
        service: str,
        subscription: Subscription,
        sessions: Sessions,
        bootstrap: str,
        dlq_producer: AIOKafkaProducer,
        clock: Clock,
        max_attempts: int = 5,
        retry_backoff: float = 0.2,
        after_staged_commit: Callable[[], None] = lambda: None,
        group_id: str | None = None,
        group_timing: GroupTiming | None = None,
        logs: BrokerLogs | None = None,
        verify_seconds: float = 5.0,
        stuck_after_seconds: float = 120.0,
        auth: BrokerAuth = NO_AUTH,
        counties: Counties | None = None,
    ) -> None:
        self._service = service
        # The counties this deployment serves: an event of another is refused. None only for a
        # test's consumer of its own topics.
        self._counties = counties
        self._logs = logs
        self._verify_seconds = verify_seconds
        self._stuck_after = stuck_after_seconds
        # Per partition: (offset, digest) of the last record consumed, and of the one consumed
        # last at the previous check, which must still be on the broker.
        self._consumed: dict[TopicPartition, tuple[int, bytes]] = {}
        self._checkpoints: dict[TopicPartition, tuple[int, bytes]] = {}
        self._last_verify = time.monotonic()
        self._processed = 0
        self._progress = (0, time.monotonic())
        self._waiting_for_dependency = False
        self.lag: int | None = None
        # The partitions whose lag was last reported, to drop those a rebalance took away.
        self._lag_reported: set[TopicPartition] = set()
        # Committed offsets of assigned partitions not processed here yet, per assignment.
        self._committed_for: set[TopicPartition] = set()
        self._committed_offsets: dict[TopicPartition, int] = {}
        self._subscription = subscription
        self._sessions = sessions
        self._dlq = dlq_producer
        self._clock = clock
        self._max_attempts = max_attempts
        self._retry_backoff = retry_backoff
        # Called after a commit whose handlers staged events: the outbox relay's wake-up.
        self._after_staged_commit = after_staged_commit
        self._group_id = group_id or consumer_group(DEFAULT_GROUP_PREFIX, service)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=self._group_id,
            client_id=f"whistle-{service}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            # A pattern subscription finds topics only when metadata is refreshed: aiokafka's
            # default of five minutes left the ledger blind that long after a broker came back
            # empty (docs/reliability.md).
            metadata_max_age_ms=PATTERN_METADATA_MAX_AGE_MS
            if subscription.pattern
            else DEFAULT_METADATA_MAX_AGE_MS,
            **(group_timing or GroupTiming()).consumer_options(),
            **auth.client_options(),
        )

    async def start(self) -> None:
        # Series for what is known before any event arrives: a healthy consumer shows 0.
        CONSUMER_LAG.labels(self._service).set(0)
        DEPENDENCY_OUTAGES.labels(self._service)
        for topic in self._subscription.topics:
            HANDLER_FAILURES.labels(self._service, topic)
            CONSUMER_REWOUND.labels(self._service, topic)
            for outcome in CONSUMED_OUTCOMES:
                EVENTS_CONSUMED.labels(self._service, topic, outcome)
        if self._subscription.pattern:
            self._consumer.subscribe(pattern=self._subscription.pattern)
        else:
            self._consumer.subscribe(topics=list(self._subscription.topics))
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=BATCH_SIZE)
            if batches:
                # Every partition's records of the fetch in one transaction and their offsets
                # in one commit: at a steady trickle a fetch holds a record or two from each of
                # several partitions, and a transaction and a commit per partition cost more
                # than the records themselves (docs/benchmarks.md).
                await self.process_batch([r for records in batches.values() for r in records])
                await self._commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
                for partition, records in batches.items():
                    last = records[-1]
                    self._consumed[partition] = (last.offset, _digest(last.value))
                    self._processed += len(records)
            if self._logs and time.monotonic() - self._last_verify >= self._verify_seconds:
                await self._verify(self._logs)

    async def _verify(self, logs: BrokerLogs) -> None:
        """Read again from the beginning every partition whose checkpoint record the broker no
        longer holds: whatever replaced it may have landed at offsets already passed."""
        self._last_verify = time.monotonic()
        assigned = self._consumer.assignment()
        checkpoints = {tp: point for tp, point in self._checkpoints.items() if tp in assigned}
        try:
            found = await logs.records_at({tp: offset for tp, (offset, _) in checkpoints.items()})
        except KafkaError as exc:
            log.info("could not check the partitions consumed: %s", exc)
            found = {}
        for tp, (offset, digest) in checkpoints.items():
            if tp not in found:
                log.info("could not check %s at %d", tp, offset)
                continue
            record = found[tp]
            if record is None or _digest(record.value) != digest:
                log.warning(
                    "the broker no longer holds %s[%d]@%d: reading the partition again",
                    tp.topic,
                    tp.partition,
                    offset,
                )
                CONSUMER_REWOUND.labels(self._service, tp.topic).inc()
                self._consumed.pop(tp, None)
                self._committed_offsets.pop(tp, None)
                try:
                    await self._consumer.seek_to_beginning(tp)
                except IllegalStateError:
                    continue  # taken away by a rebalance meanwhile: its next owner reads it
        self._checkpoints = dict(self._consumed)

    @property
    def stuck(self) -> bool:
        """Lag and nothing processed for ``stuck_after_seconds``: a consumer that will not
        recover by itself (its process should be restarted)."""
        return bool(self.lag) and time.monotonic() - self._progress[1] > self._stuck_after

    async def watch(self, every: float = 5.0) -> None:
        """Keep ``lag`` current and note progress; runs beside ``run``, so that a consumer
        whose fetching hangs is noticed."""
        while True:
            await asyncio.sleep(every)
            try:
                async with asyncio.timeout(every):
                    await self.refresh_lag()
            except (TimeoutError, KafkaError) as exc:
                log.info("could not measure the consumer's lag: %s", exc)
                continue
            if (
                self.lag == 0
                or self._waiting_for_dependency
                or (self._processed != self._progress[0])
            ):
                self._progress = (self._processed, time.monotonic())
            elif self.stuck:
                log.error(
                    "consumer stuck: %d events behind and none processed for %.0fs",
                    self.lag,
                    time.monotonic() - self._progress[1],
                )

    async def measure_lag(self) -> int:
        """Events on the assigned partitions not yet processed, by the broker's log ends."""
        return sum((await self.measure_partition_lag()).values())

    async def measure_partition_lag(self) -> dict[TopicPartition, int]:
        """Per assigned partition whose log end the broker gave: events not yet processed."""
        assigned = self._consumer.assignment()
        if not assigned or self._logs is None:
            return {}
        ends = await self._logs.ends(set(assigned))
        lags = {}
        for tp in assigned:
            end = ends.get(tp)
            if end is None:
                continue
            done = self._consumed.get(tp)
            if done is not None:
                lags[tp] = max(0, end - done[0] - 1)
            else:
                lags[tp] = max(0, end - await self._committed(tp, assigned))
        return lags

    async def _committed(self, tp: TopicPartition, assigned: set[TopicPartition]) -> int:
        """The group's committed offset of an assigned partition this consumer has processed
        nothing of. It cannot move while the partition stays assigned here, so it is asked
        once per assignment: the ledger has a hundred idle partitions, and asking each every
        few seconds was most of its requests to the broker (docs/benchmarks.md)."""
        if assigned != self._committed_for:
            self._committed_for, self._committed_offsets = set(assigned), {}
        if tp not in self._committed_offsets:
            self._committed_offsets[tp] = await self._consumer.committed(tp) or 0
        return self._committed_offsets[tp]

    async def refresh_lag(self) -> int:
        """Measure the lag, keep it in ``lag`` and set the gauges; returns the total.

        A partition no longer assigned here is dropped from the gauges (its new owner reports
        it), so a sum over the group's members counts each partition once."""
        lags = await self.measure_partition_lag()
        self.lag = sum(lags.values())
        CONSUMER_LAG.labels(self._service).set(self.lag)
        for tp in self._lag_reported - lags.keys():
            with contextlib.suppress(KeyError):
                CONSUMER_PARTITION_LAG.remove(
                    self._service, self._group_id, tp.topic, str(tp.partition)
                )
        for tp, lag in lags.items():
            CONSUMER_PARTITION_LAG.labels(
                self._service, self._group_id, tp.topic, str(tp.partition)
            ).set(lag)
        self._lag_reported = set(lags)
        return self.lag

    async def process_batch(self, records: list[ConsumerRecord]) -> None:
        """A fetch's records, of one partition or several, each partition's in its order, in
        one transaction: one commit instead of one per event.

        If anything in the batch fails, nothing of it is kept and the records are handled one
        by one, each with its own retries and dead-lettering, exactly as if they had come alone.
        """
        if len(records) > 1:
            try:
                handled, staged_events = await self._handle_together(records)
            except Exception as exc:
                log.info("a batch of %d failed (%s); handling one by one", len(records), exc)
            else:
                for topic, event, outcome in handled:
                    self._handled(topic, event, outcome)
                if staged_events:
                    self._after_staged_commit()
                return
        for record in records:
            await self.process(record)

    async def _handle_together(
        self, records: list[ConsumerRecord]
    ) -> tuple[list[tuple[str, CloudEvent, str]], bool]:
        """Each record's outcome, and whether the handlers staged an event to publish."""
        received = []
        for record in records:
            event = CloudEvent.model_validate_json(record.value or b"")
            handler = self._admit(record, event)
            if isinstance(handler, Refused):
                raise _Refusal(handler.reason)
            received.append((record.topic, event, handler))
        if self._subscription.before_batch:
            self._subscription.before_batch([e for _, e, h in received if h is not None])
        handled: list[tuple[str, CloudEvent, str]] = []
        async with self._sessions() as session, session.begin():
            new = await self._claim(session, [(t, e) for t, e, h in received if h is not None])
            for topic, event, handler in received:
                if handler is None:
                    outcome = "ignored"
                elif (event.source, event.id) in new:
                    new.discard((event.source, event.id))
                    with log_context(case_id=event.subject, event_id=event.id):
                        await handler(session, event, topic)
                    outcome = "processed"
                else:
                    outcome = "duplicate"
                handled.append((topic, event, outcome))
            if self._subscription.before_commit and any(o == "processed" for *_, o in handled):
                await self._subscription.before_commit(session)
        return handled, staged(session)

    async def _claim(
        self, session: AsyncSession, events: list[tuple[str, CloudEvent]]
    ) -> set[tuple[str, str]]:
        """Record events in the inbox; returns the ``(source, id)`` of those not seen before."""
        if not events:
            return set()
        claimed = await session.execute(
            CLAIM,
            {
                "sources": [event.source for _, event in events],
                "ids": [event.id for _, event in events],
                "types": [event.type for _, event in events],
                "topics": [topic for topic, _ in events],
                "now": self._clock(),
            },
        )
        return {(source, event_id) for source, event_id in claimed.all()}

    def _handled(self, topic: str, event: CloudEvent, outcome: str) -> None:
        EVENTS_CONSUMED.labels(self._service, topic, outcome).inc()
        if outcome != "ignored":
            with log_context(case_id=event.subject, event_id=event.id):
                log.info("%s %s from %s", outcome, event.type, topic)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A partition moved to another member during a rebalance; it will redeliver from
            # the last committed offset and the inbox drops what was already handled.
            log.warning("offset commit failed for %s: %s", sorted(offsets), exc)

    async def process(self, record: ConsumerRecord) -> None:
        try:
            event = CloudEvent.model_validate_json(record.value or b"")
        except ValidationError as exc:
            await self._dead_letter(record, f"not a CloudEvents 1.0 JSON event: {exc}", attempts=0)
            return
        handler = self._admit(record, event)
        if handler is None:
            EVENTS_CONSUMED.labels(self._service, record.topic, "ignored").inc()
            return
        if isinstance(handler, Refused):
            with log_context(case_id=event.subject, event_id=event.id):
                if await self._seen(event):
                    # Admitted when it came first: read again (a rewound partition), its token
                    # may have expired since. It has had its effects; it is not refused now.
                    self._handled(record.topic, event, "duplicate")
                else:
                    await self._dead_letter(record, handler.reason, attempts=0)
            return
        with log_context(case_id=event.subject, event_id=event.id):
            attempt, outage = 0, 0
            while True:
                try:
                    outcome, staged_events = await self._handle_once(record.topic, event, handler)
                except (PoisonEvent, ValidationError) as exc:
                    await self._dead_letter(record, f"{type(exc).__name__}: {exc}", attempt + 1)
                    return
                except Exception as exc:
                    if not dependency_unavailable(exc):
                        attempt += 1
                        if await self._failed(record, exc, attempt):
                            return
                        continue
                    # The database (or the network) is down, not the event at fault: wait for
                    # it as long as it takes; this partition pauses, nothing is dead-lettered.
                    outage += 1
                    DEPENDENCY_OUTAGES.labels(self._service).inc()
                    delay = min(MAX_OUTAGE_BACKOFF, self._retry_backoff * 2 ** min(outage, 10))
                    log.warning("dependency unavailable (%s); retrying in %.1fs", exc, delay)
                    self._waiting_for_dependency = True
                    try:
                        await asyncio.sleep(delay)
                    finally:
                        self._waiting_for_dependency = False
                    continue
                self._handled(record.topic, event, outcome)
                if staged_events:
                    self._after_staged_commit()
                return

    async def _failed(self, record: ConsumerRecord, exc: Exception, attempt: int) -> bool:
        """A handler's failure that is the event's or the code's: back off before the next
        attempt, or dead-letter after the last; True when dead-lettered."""
        HANDLER_FAILURES.labels(self._service, record.topic).inc()
        error = f"{type(exc).__name__}: {exc}"
        log.warning("handler attempt %d/%d failed: %s", attempt, self._max_attempts, error)
        if attempt >= self._max_attempts:
            await self._dead_letter(record, error, attempt)
            return True
        await asyncio.sleep(self._retry_backoff * 2 ** (attempt - 1))
        return False

    def _admit(self, record: ConsumerRecord, event: CloudEvent) -> Handler | Refused | None:
        """The handler for ``event`` as it arrived in ``record``; None if this service has none
        (the event is ignored), or why it may not be handled at all."""
        subscription = self._subscription
        submission = subscription.submissions.get(event.type)
        handler = subscription.handler_for(event.type)
        if submission is None and handler is None:
            return None
        if subscription.admit is not None:
            reason = subscription.admit(record.topic, event.type, event.source)
            if reason is not None:
                return Refused(reason)
        if self._counties is not None:
            reason = self._counties.refusal(event.county)
            if reason is not None:
                return Refused(reason)
        entry = registered(record.topic)
        submitters = entry.submitted(event.type) if entry else None
        if submitters is None:
            return handler or Refused(f"{event.type} is not a submission on {record.topic}")
        submitter = self._submitter(record, event, submitters)
        if isinstance(submitter, Refused):
            return submitter
        if submission is None:
            return handler  # the ledger's: it records a submission as any other event

        async def submitted(session: AsyncSession, event: CloudEvent, topic: str) -> None:
            await submission(session, event, topic, submitter)

        return submitted

    async def _seen(self, event: CloudEvent) -> bool:
        """Whether the inbox holds the event's ``(source, id)``; False if it cannot tell."""
        try:
            async with self._sessions() as session:
                held = await session.get(InboxRecord, (event.source, event.id))
        except Exception as exc:
            if not dependency_unavailable(exc):
                raise
            log.warning("could not look the event up in the inbox: %s", exc)
            return False
        return held is not None

    def _submitter(
        self, record: ConsumerRecord, event: CloudEvent, submitters: Submitters
    ) -> Principal | Refused:
        """The verified sender of a submission from outside Whistle, or why there is none."""
        header = next(
            (v for k, v in record.headers or () if k.lower() == HEADER_AUTHORIZATION), None
        )
        scheme, _, token = (header or b"").decode(errors="replace").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return Refused(
                f"{event.type} from the {submitters.name} needs their token: "
                f"Kafka header {HEADER_AUTHORIZATION}: Bearer <jwt>"
            )
        if self._subscription.verifier is None:
            return Refused(f"{self._service} cannot verify the token of {event.type}")
        try:
            principal = self._subscription.verifier.verify(token.strip())
        except Problem as exc:
            return Refused(exc.detail or exc.title)
        reason = submitters.refusal(event.data, event.source, principal.roles, principal.scopes)
        return Refused(reason) if reason else principal

    async def _handle_once(
        self, topic: str, event: CloudEvent, handler: Handler
    ) -> tuple[str, bool]:
        """The event's outcome, and whether its handler staged an event to publish."""
        async with self._sessions() as session, session.begin():
            outcome = await self._apply(session, topic, event, handler)
        return outcome, staged(session)

    async def _apply(
        self, session: AsyncSession, topic: str, event: CloudEvent, handler: Handler
    ) -> str:
        """Claim the event in the inbox and, if it is new, apply its effects."""
        if not await self._claim(session, [(topic, event)]):
            return "duplicate"
        await handler(session, event, topic)
        if self._subscription.before_commit:
            await self._subscription.before_commit(session)
        return "processed"

    async def _dead_letter(self, record: ConsumerRecord, reason: str, attempts: int) -> None:
        log.error(
            "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason
        )
        headers = [
            *list(record.headers or ()),
            ("dlq-reason", reason[:4000].encode()),
            ("dlq-topic", record.topic.encode()),
            ("dlq-partition", str(record.partition).encode()),
            ("dlq-offset", str(record.offset).encode()),
            ("dlq-consumer", self._group_id.encode()),
            ("dlq-attempts", str(attempts).encode()),
        ]
        await self._dlq.send_and_wait(
            dlq_topic(record.topic), value=record.value, key=record.key, headers=headers
        )
        EVENTS_CONSUMED.labels(self._service, record.topic, "dead_lettered").inc()


def _digest(value: bytes | None) -> bytes:
    return hashlib.blake2b(value or b"", digest_size=16).digest()
