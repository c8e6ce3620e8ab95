"""The ledger at scale: how fast it records events, how fast it answers for a log of a million
entries, and how long an auditor's offline check of that log takes.

1. Ingest: a tip's four events at a time, through the inbox's batch path
   (``InboxConsumer.process_batch``: a fetch's batch of up to ``BATCH_SIZE`` records in
   one transaction) and the real Recorder, into PostgreSQL. The broker is left out: this is
   the ledger's own cost. The same batches with a handler that does nothing show what the
   inbox alone costs.
2. A log of ``--entries`` entries is written straight into the ledger's database (COPY of the
   rows and tree nodes the Recorder would have written), the ledger runs as a process, as
   ``whistle up`` runs it, and is asked for proofs, trails and tree heads over HTTP.
3. That log is exported (``GET /v1/export``) and checked by ``whistle ledger verify`` in a
   process of its own.

    python -m bench ledger [--events 20000] [--entries 1000000] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
from aiokafka import ConsumerRecord
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from bench.stack import embedded_stack, print_table
from contracts.envelope import CloudEvent, new_event
from contracts.events import (
    CaseAssigned,
    CaseOpened,
    ContactRef,
    Deadline,
    DeadlinesSet,
    TipReceived,
)
from contracts.topics import CASES, DEADLINES, TIPS
from services.launcher.stack import service_environment, spawn_service, stop_processes, wait_ready
from services.ledger.heads import TreeHead, load_public_key, verify_head
from services.ledger.merkle import (
    Frontier,
    canonical_bytes,
    leaf_hash,
    verify_inclusion,
)
from services.ledger.recorder import ENTRY_COLUMNS, Recorder
from services.runtime.auth import issue_token
from services.runtime.clock import system_clock
from services.runtime.db import create_engine, ensure_database, session_factory
from services.runtime.inbox import BATCH_SIZE, InboxConsumer, Subscription
from services.runtime.kafka import create_producer
from services.runtime.migrations import upgrade
from services.runtime.settings import Settings

COPY_CHUNK = 50_000


# --- 1. ingest -----------------------------------------------------------------------------


def tip_events(n: int, now: datetime) -> list[tuple[str, CloudEvent]]:
    """What the ledger records for one routed tip, with texts of realistic length."""
    tip_id, case_id = uuid4(), uuid4()
    received = TipReceived(
        tip_id=tip_id,
        tracking_no=f"QX20261121-{n:06d}",
        channel="web",
        text="村口有人占道摆摊，车都过不去了，早上七点到九点最严重，已经好几天了",
        grid_id="T03V02G01",
        contact=ContactRef(masked_phone="138****1234", phone_hash="9f" * 32),
        received_at=now,
    )
    opened = CaseOpened(
        case_id=case_id,
        tip_id=tip_id,
        matter_code="CG-001",
        matter_name="占道经营",
        confidence=0.82,
        township_code="T03",
        village_code="T03V02",
        grid_id="T03V02G01",
        urgency="general",
        catalogue_version="2026.11",
        explanation=["关键词「占道」「摆摊」命中事项 CG-001", "网格 T03V02G01 属城关镇五里铺村"],
    )
    assigned = CaseAssigned(
        case_id=case_id,
        tip_id=tip_id,
        unit_id="T03-CGJ",
        unit_kind="township_team",
        township_code="T03",
        staff_id="T03-CGJ-007",
        matter_code="CG-001",
        authority="township",
        urgency="general",
        deadline_policy="P-GENERAL",
        catalogue_version="2026.11",
        rule="township-claim",
        explanation=["城关镇认领事项 CG-001", "执法人员持证且在办件最少"],
    )
    deadlines = DeadlinesSet(
        case_id=case_id,
        policy_id="P-GENERAL",
        urgency="general",
        deadlines=[
            Deadline(kind="first_response", due_at=now, warn_at=now),
            Deadline(kind="resolution", due_at=now, warn_at=now),
        ],
    )
    return [
        (TIPS, new_event("whistle/intake", str(tip_id), received, now)),
        (CASES, new_event("whistle/dispatch", str(case_id), opened, now)),
        (CASES, new_event("whistle/dispatch", str(case_id), assigned, now)),
        (DEADLINES, new_event("whistle/escalation", str(case_id), deadlines, now)),
    ]


def partition_batches(count: int) -> list[list[ConsumerRecord]]:
    """``count`` events as the consumer would get them: per topic, in batches of BATCH_SIZE."""
    now = datetime.now(UTC)
    by_topic: dict[str, list[CloudEvent]] = {}
    for n in range(count // 4):
        for topic, event in tip_events(n, now):
            by_topic.setdefault(topic, []).append(event)
    batches = []
    for topic, events in by_topic.items():
        records = [
            ConsumerRecord(
                topic, 0, offset, 0, 0, (e.subject or "").encode(), e.to_bytes(), None, 0, 0, []
            )
            for offset, e in enumerate(events)
        ]
        batches += [records[i : i + BATCH_SIZE] for i in range(0, len(records), BATCH_SIZE)]
    random.Random(7).shuffle(batches)
    return batches


async def ingest(
    settings: Settings, database: str, subscription: Subscription, events: int
) -> float:
    """Events per second through process_batch into a fresh ledger database."""
    assert settings.database_url is not None
    url = make_url(settings.database_url_for("ledger")).set(database=database)
    url_text = url.render_as_string(hide_password=False)
    await ensure_database(url_text)
    await upgrade("ledger", url_text)
    engine = create_engine(url_text)
    producer = create_producer(
        settings.require_kafka(), client_id="bench", enable_idempotence=False
    )
    consumer = InboxConsumer(
        service="ledger",
        subscription=subscription,
        sessions=session_factory(engine),
        bootstrap=settings.require_kafka(),
        dlq_producer=producer,
        clock=system_clock,
    )
    batches = partition_batches(events)
    await producer.start()
    try:
        await consumer.process_batch(batches[0])  # connections and statement caches warm
        began = time.perf_counter()
        for batch in batches[1:]:
            await consumer.process_batch(batch)
        elapsed = time.perf_counter() - began
    finally:
        await consumer.stop()
        await producer.stop()
        await engine.dispose()
    return sum(len(b) for b in batches[1:]) / elapsed


def recording() -> Subscription:
    """Every event recorded as the ledger's own subscription records it (services/ledger/
    consumers.py), for a bench that feeds the inbox's batches itself: no topics."""
    recorder = Recorder(system_clock)
    return Subscription(topics=(), handlers={}, any_type=recorder, before_commit=recorder.flush)


async def nothing(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    """A handler with no effect: what is left is the inbox's own cost."""


# --- 2. a large log, and the ledger answering for it ----------------------------------------


def large_log(size: int) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[int, int, bytes]]]]:
    """The rows and tree nodes the Recorder would have written for ``size`` events, in chunks.

    One event is canonicalised once; each entry swaps in ids of the same length, which keeps
    the bytes canonical (same keys, same order) and every entry distinct.
    """
    now = datetime(2026, 11, 21, 8, tzinfo=UTC)
    topic, template = tip_events(0, now)[2]
    document = template.to_json()
    placeholders = [document["id"], document["data"]["case_id"], document["data"]["tip_id"]]
    canonical = canonical_bytes(document)
    frontier = Frontier()
    for start in range(0, size, COPY_CHUNK):
        rows, nodes = [], []
        for seq in range(start, min(size, start + COPY_CHUNK)):
            ids = [str(UUID(int=(seq << 2) + k)) for k in range(3)]
            entry = canonical
            for old, new in zip(placeholders, ids, strict=True):
                entry = entry.replace(old.encode(), new.encode())
            leaf = leaf_hash(entry)
            rows.append(
                (seq, template.source, ids[0], template.type, ids[1], topic, now, now, entry, leaf)
            )
            nodes += [(level, index, h) for (level, index), h in frontier.append(leaf)]
        yield rows, nodes


async def write_large_log(settings: Settings, size: int) -> float:
    url = make_url(settings.database_url_for("ledger"))
    conn = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    began = time.perf_counter()
    try:
        for rows, nodes in large_log(size):
            await conn.copy_records_to_table("ledger_entry", records=rows, columns=ENTRY_COLUMNS)
            await conn.copy_records_to_table("ledger_node", records=nodes)
        await conn.execute("UPDATE ledger_state SET size = $1", size)
        await conn.execute("VACUUM ANALYZE ledger_entry, ledger_node")
    finally:
        await conn.close()
    return time.perf_counter() - began


def percentiles(samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return f"{statistics.median(ms):.1f} / {cuts[94]:.1f} / {cuts[98]:.1f} ms"


async def timed(count: int, call: Callable[[int], Awaitable[None]]) -> list[float]:
    samples = []
    for n in range(count):
        began = time.perf_counter()
        await call(n)
        samples.append(time.perf_counter() - began)
    return samples


async def ask(settings: Settings, size: int, requests: int, export_to: Path) -> dict[str, Any]:
    token = issue_token(
        settings.private_key_path.read_bytes(),
        subject="bench",
        roles=["auditor"],
        scopes=[],
        issuer=settings.jwt_issuer,
        audience=settings.audiences(),
        now=datetime.now(UTC),
    )
    pick = random.Random(11)
    base = settings.url_of("ledger")
    async with httpx.AsyncClient(
        base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=600
    ) as client:
        key = load_public_key((await client.get("/v1/public-key")).content)
        head = TreeHead.from_json((await client.get("/v1/tree-head")).json())
        assert head.tree_size == size and verify_head(head, key)

        async def inclusion(_: int) -> None:
            seq = pick.randrange(size)
            proof = (
                await client.get("/v1/proofs/inclusion", params={"seq": seq, "size": size})
            ).json()
            path = [bytes.fromhex(h) for h in proof["inclusion_path"]]
            leaf = bytes.fromhex(proof["leaf_hash"])
            assert verify_inclusion(leaf, seq, size, path, head.root_hash)

        async def consistency(_: int) -> None:
            old = pick.randrange(1, size)
            answer = await client.get("/v1/proofs/consistency", params={"from": old, "to": size})
            answer.raise_for_status()

        async def trail(_: int) -> None:
            case_id = UUID(int=(pick.randrange(size) << 2) + 1)
            entries = (await client.get(f"/v1/cases/{case_id}/trail")).json()["entries"]
            assert len(entries) == 1 and entries[0]["inclusion_path"] is not None

        results: dict[str, Any] = {
            "inclusion": await timed(requests, inclusion),
            "consistency": await timed(requests, consistency),
            "trail": await timed(requests, trail),
        }
        began = time.perf_counter()
        async with client.stream("GET", "/v1/export") as response:
            response.raise_for_status()
            with export_to.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        results["export"] = time.perf_counter() - began
    return results


def verify_offline(export: Path, key: Path, output: Path) -> tuple[float, int, str]:
    """Seconds, peak memory (KiB) and the verdict of ``whistle ledger verify`` on the export."""
    command = [sys.executable, "-m", "services.launcher.cli", "ledger", "verify", str(export)]
    peak = 0
    with output.open("w+") as out:
        began = time.perf_counter()
        process = subprocess.Popen([*command, "--public-key", str(key)], stdout=out)
        # The child's VmHWM, read while it runs: rusage would count this (large) process too,
        # which a forked child inherits as its high-water mark.
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            with contextlib.suppress(OSError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            time.sleep(0.05)
        elapsed = time.perf_counter() - began
        out.seek(0)
        verdict = out.read().strip().splitlines()[-1]
    if process.returncode != 0:
        raise RuntimeError(f"the export did not verify: {verdict}")
    return elapsed, peak, verdict


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench ledger")
    parser.add_argument("--events", type=int, default=20_000, help="events to ingest")
    parser.add_argument("--entries", type=int, default=1_000_000, help="size of the large log")
    parser.add_argument("--requests", type=int, default=300, help="requests per kind")
    args = parser.parse_args(argv)

    with embedded_stack() as (settings, root):
        recorded = asyncio.run(ingest(settings, "whistle_bench_ingest", recording(), args.events))
        inbox_only = asyncio.run(
            ingest(settings, "whistle_bench_inbox", Subscription((), {}, nothing), args.events)
        )
        built = asyncio.run(write_large_log(settings, args.entries))
        processes = {}
        try:
            processes["ledger"] = spawn_service(
                "ledger", service_environment(settings), root / "ledger.log"
            )
            started = time.perf_counter()
            wait_ready({"ledger": settings.url_of("ledger")}, processes, timeout=120)
            ready = time.perf_counter() - started
            export = root / "export.jsonl"
            answers = asyncio.run(ask(settings, args.entries, args.requests, export))
            verified, peak_kib, verdict = verify_offline(
                export, settings.ledger_public_key_path, root / "verify.out"
            )
        finally:
            stop_processes(processes)
        size_mb = export.stat().st_size / 1e6

    n = args.entries
    print_table(
        "Whistle ledger benchmark",
        [
            (
                "ingest, Recorder + inbox batch path",
                f"{recorded:,.0f} events/s",
                f"{args.events:,} events, batches of {BATCH_SIZE}; target 5,000",
            ),
            (
                "ingest, inbox alone (no-op handler)",
                f"{inbox_only:,.0f} events/s",
                "the ceiling the inbox sets",
            ),
            (
                f"build a {n:,}-entry log (COPY)",
                f"{built:.0f} s",
                "entries and tree nodes, then VACUUM ANALYZE",
            ),
            ("ledger start to ready", f"{ready:.1f} s", f"signs a head at {n:,} entries"),
            (
                "inclusion proof p50 / p95 / p99",
                percentiles(answers["inclusion"]),
                f"HTTP, random entry, size {n:,}",
            ),
            (
                "consistency proof p50 / p95 / p99",
                percentiles(answers["consistency"]),
                f"HTTP, random old size, new size {n:,}",
            ),
            (
                "case trail p50 / p95 / p99",
                percentiles(answers["trail"]),
                "HTTP, with each entry's proof",
            ),
            (
                "export",
                f"{answers['export']:.0f} s",
                f"{size_mb:,.0f} MB JSON Lines, {n / answers['export']:,.0f} entries/s",
            ),
            (
                "offline verification",
                f"{verified:.0f} s",
                f"whistle ledger verify, {n / verified:,.0f} entries/s, "
                f"peak RSS {peak_kib / 1024:,.0f} MiB",
            ),
            ("verdict", verdict, ""),
        ],
    )
