"""What the machine can do, measured in the same run as Whistle, on the same servers, with the
same client — so that each Whistle figure is read against its ceiling rather than against a
number from another day or another box:

(a) acceptance: ``bench/ceiling_app.py``, a FastAPI endpoint under uvicorn as the services run,
    committing one row per request to the same PostgreSQL, posted the same load by the same
    client code at the same concurrency (``post_tips``);
(b) the broker: raw aiokafka, a producer configured as the services' (acks=all, linger 5 ms)
    and a consumer, each message timed from send to receipt through the same Tansu;
(c) the ledger's ingest alone: its Recorder through the inbox's batch path into PostgreSQL,
    without the broker (``bench/ledger.py``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

from aiokafka import AIOKafkaConsumer

from bench.ledger import ingest, recording
from bench.load import LoadTip, Posted, post_tips
from services.launcher.embedded import die_with_parent, free_port
from services.launcher.stack import stop_processes, wait_ready
from services.runtime.db import ensure_database
from services.runtime.kafka import create_producer, ensure_topics
from services.runtime.settings import Settings


@contextmanager
def bare_endpoint(settings: Settings, log: Path) -> Iterator[str]:
    """Ceiling (a)'s app, running on a free port against database ``whistle_ceiling``."""
    url_text = settings.database_url_for("ceiling")
    asyncio.run(ensure_database(url_text))
    port = free_port()
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.ceiling_app", str(port), url_text],
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready({"ceiling": base}, {"ceiling": process}, timeout=60)
        yield base
    finally:
        stop_processes({"ceiling": process})


def acceptance(settings: Settings, log: Path, load: Sequence[LoadTip], clients: int) -> Posted:
    with bare_endpoint(settings, log) as url:
        return asyncio.run(post_tips(url, load, clients))


@dataclass(frozen=True)
class RoundTrips:
    per_second: float
    latencies: list[float]  # seconds, send → receipt, per message


async def broker_round_trips(settings: Settings, messages: int, size: int = 1024) -> RoundTrips:
    """``messages`` of ``size`` bytes produced as fast as the producer takes them, each timed
    until a consumer of the topic receives it."""
    bootstrap = settings.require_kafka()
    topic = f"bench.ceiling.{uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], auth=settings.broker_auth())
    producer = create_producer(
        bootstrap, client_id="bench-ceiling", enable_idempotence=False, auth=settings.broker_auth()
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        client_id="bench-ceiling",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        **settings.broker_auth().client_options(),
    )
    await producer.start()
    await consumer.start()
    sent: dict[int, float] = {}
    latencies: list[float] = []
    padding = b"x" * size
    try:

        async def produce() -> None:
            for n in range(messages):
                sent[n] = time.perf_counter()
                await producer.send(topic, n.to_bytes(8, "big") + padding)
            await producer.flush()

        began = time.perf_counter()
        producing = asyncio.create_task(produce())
        while len(latencies) < messages:
            batches = await consumer.getmany(timeout_ms=1000)
            received = time.perf_counter()
            for records in batches.values():
                for record in records:
                    n = int.from_bytes((record.value or b"")[:8], "big")
                    latencies.append(received - sent[n])
        await producing
        return RoundTrips(messages / (time.perf_counter() - began), latencies)
    finally:
        await consumer.stop()
        await producer.stop()


def ledger_ingest(settings: Settings, events: int) -> float:
    """Events per second the ledger records with no broker in front."""
    return asyncio.run(ingest(settings, "whistle_ceiling_ledger", recording(), events))
