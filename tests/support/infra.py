"""Helpers for tests that run against the real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from sqlalchemy.engine import make_url

from services.launcher.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from services.launcher.stack import prepare
from services.runtime.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class Infra:
    database_url: str
    bootstrap: str
    root: Path

    def fresh_database_url(self, prefix: str) -> str:
        name = f"whistle_{prefix}_{uuid4().hex[:10]}"
        url = make_url(self.database_url).set(drivername="postgresql+asyncpg", database=name)
        return url.render_as_string(hide_password=False)


@contextmanager
def embedded_servers(root: Path) -> Iterator[Infra]:
    """A PostgreSQL server and a Tansu broker of their own, on free ports, under ``root``.

    The cluster is deleted afterwards: as root its data lives under the state directory
    (/var/lib/whistle), which the removal of ``root`` would not reach."""
    postgres = EmbeddedPostgres(root / "postgres" / "data", free_port())
    broker = EmbeddedBroker(free_port(), log_path=root / "broker.log")
    try:
        postgres.start()
        try:
            broker.start()
            try:
                yield Infra(database_url=postgres.url, bootstrap=broker.bootstrap, root=root)
            finally:
                broker.stop()
        finally:
            postgres.stop()
    finally:
        postgres.remove_data()


async def prepared_on(
    servers: Infra, settings: Settings, services: tuple[str, ...], **updates: Any
) -> Settings:
    """The session's settings (home, keys) pointed at servers of a module's own, with
    ``services``' databases, migrations and topics prepared there."""
    own = settings.model_copy(
        update={
            "database_url": servers.database_url,
            "kafka_bootstrap": servers.bootstrap,
            **updates,
        }
    )
    await prepare(own, services)
    return own


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    within: float = 20,
    what: str = "condition",
    every: float = 0.05,
) -> T:
    """Poll ``probe`` every ``every`` seconds until it returns something truthy; fail with
    ``what`` after ``within``.

    Waiting for a condition, not for a time: the test goes on the moment the system is there.
    """
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(every)


async def read_topic(
    bootstrap: str, topic: str, count: int, within: float = 20
) -> list[ConsumerRecord]:
    """Read ``count`` records from the start of ``topic`` (all partitions), without a group."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + within
        while len(records) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"read {len(records)} of {count} records from {topic}")
            batches = await consumer.getmany(timeout_ms=200)
            for partition_records in batches.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def read_everything(bootstrap: str, topics: list[str]) -> list[ConsumerRecord]:
    """Every record the topics hold now: read from the start up to each partition's end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()  # the cluster's metadata, partitions included
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or set())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        for partition in partitions:
            while await consumer.position(partition) < ends[partition]:
                batch = await consumer.getmany(partition, timeout_ms=1000)
                records.extend(batch.get(partition, []))
    finally:
        await consumer.stop()
    return records


async def find_on_topic(
    bootstrap: str, topic: str, match: Callable[[dict[str, Any]], bool], within: float = 20
) -> dict[str, Any]:
    """The first CloudEvent on ``topic`` (read from its start, all partitions, without a group)
    for which ``match`` is true: a topic shared by many tests holds many other records."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for partition_records in batches.values():
                for record in partition_records:
                    event: dict[str, Any] = json.loads(record.value or b"{}")
                    if match(event):
                        return event
        raise AssertionError(f"no matching event on {topic} within {within:.0f}s")
    finally:
        await consumer.stop()
