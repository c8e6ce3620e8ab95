from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from sqlalchemy import Column, Integer, String
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import Field, SQLModel

from contracts.envelope import CloudEvent, new_event
from contracts.events import Deadline, DeadlinesSet
from services.dispatch.app import create_app as create_dispatch
from services.escalation.app import create_app as create_escalation
from services.intake.app import create_app as create_intake
from services.launcher.stack import EMBEDDED_GROUP_TIMING
from services.ledger.app import create_app as create_ledger
from services.runtime.db import Sessions, create_engine, ensure_database, session_factory
from services.runtime.inbox import Handler, InboxConsumer, InboxRecord, Subscription
from services.runtime.kafka import BrokerLogs, create_producer
from services.runtime.outbox import OutboxMessage, OutboxPartition
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import REPO
from tests.support.infra import Infra


class Effect(SQLModel, table=True):
    """What a test handler does to the database: one row per handled event, no uniqueness,
    so a duplicate effect shows up as a second row."""

    __tablename__ = "test_effect"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    event_id: str = Field(sa_column=Column(String, nullable=False))
    note: str = ""


class MovableClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def sample_event(clock: MovableClock, subject: str = "case-1") -> CloudEvent:
    """A valid event one millisecond after the previous one."""
    clock.advance(timedelta(milliseconds=1))
    payload = DeadlinesSet(
        case_id=uuid4(),
        policy_id="P-GENERAL",
        urgency="general",
        deadlines=[Deadline(kind="resolution", due_at=clock.now, warn_at=clock.now)],
    )
    return new_event("whistle/test", subject, payload, clock.now)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))


@pytest.fixture
async def plumbing_engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    """A fresh database holding the runtime tables (outbox, inbox) and a test effect table."""
    url = infra.fresh_database_url("plumbing")
    await ensure_database(url)
    engine = create_engine(url, pool_size=5)
    async with engine.begin() as conn:
        for table in (
            OutboxMessage.__table__,
            OutboxPartition.__table__,
            InboxRecord.__table__,
            Effect.__table__,
        ):
            await conn.run_sync(table.create)  # type: ignore[attr-defined]
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(plumbing_engine: AsyncEngine) -> Sessions:
    return session_factory(plumbing_engine)


@pytest.fixture
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    kafka = create_producer(infra.bootstrap, client_id="test", enable_idempotence=False)
    await kafka.start()
    yield kafka
    await kafka.stop()


@pytest.fixture
async def logs(infra: Infra) -> AsyncIterator[BrokerLogs]:
    reader = BrokerLogs(infra.bootstrap, client_id="test-logs")
    await reader.start()
    yield reader
    await reader.stop()


async def _in_process(app: FastAPI) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """A service app with its lifespan running, called in process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, app.state.runtime


@pytest.fixture(scope="module")
async def intake(migrated: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    async for pair in _in_process(create_intake(migrated)):
        yield pair


@pytest.fixture(scope="module")
async def dispatch(migrated: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    async for pair in _in_process(create_dispatch(migrated)):
        yield pair


MONDAY_9 = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)
"""Monday 16 November 2026, 09:00 in the county (Asia/Shanghai): a week without holidays."""


@pytest.fixture(scope="module")
def fixed_clock() -> MovableClock:
    """The time of :func:`dispatch_at` and :func:`escalation`, moved by hand."""
    return MovableClock(MONDAY_9)


@pytest.fixture(scope="module")
async def dispatch_at(
    migrated: Settings, fixed_clock: MovableClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """Dispatch in process on ``fixed_clock``."""
    async for pair in _in_process(create_dispatch(migrated, fixed_clock)):
        yield pair


@pytest.fixture(scope="module")
async def escalation(migrated: Settings, fixed_clock: MovableClock) -> AsyncIterator[Runtime]:
    """Escalation in process on ``fixed_clock``, its scheduler firing as that clock moves (a
    module may define its own ``escalation``)."""
    async for _, runtime in _in_process(create_escalation(migrated, fixed_clock)):
        yield runtime


@pytest.fixture(scope="module")
async def ledger(migrated: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The ledger in process, consuming what dispatch publishes (its trail read over HTTP)."""
    async for client, _ in _in_process(create_ledger(migrated)):
        yield client


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/config a module's tests may edit (and reload)."""
    target = tmp_path_factory.mktemp("config") / "config"
    shutil.copytree(REPO / "deploy" / "config", target)
    return target


@pytest.fixture(scope="module")
async def dispatch_with_own_config(
    migrated: Settings, config_dir: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """Dispatch over the module's own copy of the reference data."""
    app = create_dispatch(migrated.model_copy(update={"config_dir": config_dir}))
    async for pair in _in_process(app):
        yield pair


@asynccontextmanager
async def running(consumer: InboxConsumer) -> AsyncIterator[InboxConsumer]:
    """A started consumer's loop, run for the block and stopped after it."""
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


@asynccontextmanager
async def consuming(
    infra: Infra,
    sessions: Sessions,
    producer: AIOKafkaProducer,
    clock: MovableClock,
    topic: str,
    handler: Handler,
    group: str,
    max_attempts: int = 3,
    before_commit: Callable[[AsyncSession], Awaitable[None]] | None = None,
    logs: BrokerLogs | None = None,
    after_staged_commit: Callable[[], None] = lambda: None,
    before_batch: Callable[[Sequence[CloudEvent]], None] | None = None,
) -> AsyncIterator[InboxConsumer]:
    """An inbox consumer of a test's own ``topic`` (``DeadlinesSet`` events to ``handler``);
    with ``logs`` it can measure its lag."""
    consumer = InboxConsumer(
        service="test",
        subscription=Subscription(
            topics=(topic,),
            handlers={DeadlinesSet.event_type: handler},
            before_commit=before_commit,
            before_batch=before_batch,
            admit=None,  # a topic of the test's own, outside the registry
        ),
        sessions=sessions,
        bootstrap=infra.bootstrap,
        dlq_producer=producer,
        clock=clock,
        max_attempts=max_attempts,
        retry_backoff=0.01,
        group_id=group,
        group_timing=EMBEDDED_GROUP_TIMING,
        logs=logs,
        after_staged_commit=after_staged_commit,
    )
    async with running(consumer):
        yield consumer
