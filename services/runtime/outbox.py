"""Transactional outbox: events are rows written with the state change, published by a relay.

A service never produces to Kafka from a request or a handler. It stages the event in the same
database transaction as the change it describes; the relay publishes staged rows in insertion
order (Kafka key = the event's subject, so one case's events stay on one partition, in order)
and marks them sent only after the broker acknowledged them. Sent rows are kept for a retention
period so that they can be replayed after broker data loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, String, delete, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel, select

from contracts.envelope import CONTENT_TYPE, CloudEvent
from services.runtime.clock import Clock
from services.runtime.db import Sessions
from services.runtime.metrics import OUTBOX_PUBLISHED

log = logging.getLogger(__name__)

# Only one relay publishes at a time, so that rows leave in the order they were written even
# when several replicas of a service run; the others wait for the lock.
RELAY_LOCK_KEY = 0x5748_4F42  # "WHOB"
PURGE_EVERY = timedelta(hours=1)


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
        Index("ix_outbox_created_at", "created_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    event_id: str = Field(sa_column=Column(String, nullable=False, unique=True))
    topic: str = Field(sa_column=Column(String, nullable=False))
    key: str = Field(sa_column=Column(String, nullable=False))
    event: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


def stage(session: AsyncSession, topic: str, event: CloudEvent) -> None:
    """Add an event to the current transaction; it is published once the transaction commits."""
    if not event.subject:
        raise ValueError("an outgoing event needs a subject: it is the Kafka key")
    session.add(
        OutboxMessage(
            event_id=event.id,
            topic=topic,
            key=event.subject,
            event=event.to_json(),
            created_at=event.time,
        )
    )


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
        batch_size: int = 500,
        poll_seconds: float = 0.2,
        retention: timedelta = timedelta(days=30),
    ) -> None:
        self._sessions = sessions
        self._producer = producer
        self._clock = clock
        self._service = service
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._retention = retention
        self._wakeup = asyncio.Event()
        self._last_purge: datetime | None = None

    def wake(self) -> None:
        """Called after a commit that staged events, so they leave without waiting for a poll."""
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                published = await self.publish_batch()
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
        """Publish the oldest unsent rows; returns how many were published."""
        async with self._sessions() as session, session.begin():
            locked = await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY}
            )
            if not locked:
                return 0
            rows = (
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
            if not rows:
                return 0
            acks = []
            for row in rows:
                value = CloudEvent.model_validate(row.event).to_bytes()
                acks.append(
                    await self._producer.send(
                        row.topic,
                        value=value,
                        key=row.key.encode(),
                        headers=[("content-type", CONTENT_TYPE.encode())],
                    )
                )
            # If any send fails, nothing is marked: the batch is sent again and consumers'
            # inboxes drop what they already had.
            for ack in acks:
                await ack
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([r.id for r in rows]))  # type: ignore[union-attr]
                .values(sent_at=self._clock())
            )
        for row in rows:
            OUTBOX_PUBLISHED.labels(self._service, row.topic).inc()
        return len(rows)

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
