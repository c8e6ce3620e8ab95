"""The whole pipeline under load: tips posted to intake until each is recorded as routed
and deadlined in the ledger.

Starts its own embedded PostgreSQL and Tansu broker on free ports in a temporary directory,
runs the four services as processes (as ``whistle up`` does), posts tips with a fixed
concurrency, then reads timings from the ledger's own records. Everything is on loopback and
the run is bounded in count and time.

    python -m bench pipeline [--tips 1000] [--concurrency 20] [--rate 0]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.stack import embedded_stack, print_table
from services.runtime.settings import SERVICES
from services.runtime.stack import (
    service_environment,
    spawn_service,
    stop_processes,
    wait_ready,
)

TEXTS = [
    ("村口有人占道摆摊，车都过不去了", "T03V02G01"),
    ("楼下广场舞高音喇叭每天晚上十点还在放，太吵了", "T03V01G02"),
    ("集市上卖菜的用鬼秤，短斤少两", "T04V01G01"),
    ("小区楼道里有人飞线充电，消防通道也被堵了", "T05V02G01"),
    ("河边有人乱倒垃圾，垃圾成堆", "T06V01G01"),
]

PIPELINE_LATENCY = """
SELECT extract(epoch FROM d.recorded_at - t.event_time)
FROM ledger_entry t
JOIN ledger_case_tip l ON l.tip_id::text = t.subject
JOIN ledger_entry d ON d.subject = l.case_id::text AND d.type = 'whistle.deadlines.set'
WHERE t.type = 'whistle.tip.received'
"""


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def post_tips(
    url: str, count: int, concurrency: int, rate: float = 0
) -> tuple[list[float], float]:
    """Post ``count`` tips from ``concurrency`` clients, at most ``rate`` a second (0: no cap)."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    began = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            if rate:
                await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            text, grid = TEXTS[n % len(TEXTS)]
            started = time.perf_counter()
            response = await client.post(f"{url}/v1/tips", json={"text": text, "grid_id": grid})
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, time.perf_counter() - began


async def wait_for_ledger(ledger_db: str, count: int, limit: float) -> tuple[list[float], float]:
    conn = await asyncpg.connect(ledger_db)
    began = time.perf_counter()
    try:
        while True:
            rows = await conn.fetch(PIPELINE_LATENCY)
            if len(rows) >= count or time.perf_counter() - began > limit:
                return [float(r[0]) for r in rows], time.perf_counter() - began
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench pipeline")
    parser.add_argument("--tips", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0, help="tips per second; 0 = no cap")
    args = parser.parse_args(argv)

    with embedded_stack() as (settings, root):
        processes = {}
        try:
            env = service_environment(settings)
            for service in SERVICES:
                processes[service] = spawn_service(service, env, root / f"{service}.log")
            wait_ready({s: settings.url_of(s) for s in SERVICES}, processes, timeout=60)

            latencies, posting = asyncio.run(
                post_tips(settings.url_of("intake"), args.tips, args.concurrency, args.rate)
            )
            assert settings.database_url is not None
            ledger_db = make_url(settings.database_url).set(database="whistle_ledger")
            pipeline, drained = asyncio.run(
                wait_for_ledger(ledger_db.render_as_string(hide_password=False), args.tips, 300)
            )
        finally:
            stop_processes(processes)

    report(args, latencies, posting, pipeline, drained)


def report(
    args: argparse.Namespace,
    latencies: list[float],
    posting: float,
    pipeline: list[float],
    drained: float,
) -> None:
    ms = 1000
    rows = [
        (
            "tips posted",
            f"{len(latencies)}",
            f"concurrency {args.concurrency}"
            + (f", paced at {args.rate:g}/s" if args.rate else ""),
        ),
        ("intake accept rate", f"{len(latencies) / posting:.0f} tips/s", "201 after commit"),
        ("intake POST p50", f"{statistics.median(latencies) * ms:.1f} ms", ""),
        ("intake POST p95", f"{percentile(latencies, 95) * ms:.1f} ms", ""),
        ("intake POST p99", f"{percentile(latencies, 99) * ms:.1f} ms", ""),
        ("tips fully recorded", f"{len(pipeline)}/{len(latencies)}", "deadlines set, in ledger"),
        (
            "tip → ledger p50",
            f"{statistics.median(pipeline) * ms:.0f} ms",
            "received → deadlines set",
        ),
        ("tip → ledger p95", f"{percentile(pipeline, 95) * ms:.0f} ms", ""),
        ("tip → ledger max", f"{max(pipeline) * ms:.0f} ms", ""),
        ("drain after last POST", f"{drained:.1f} s", ""),
    ]
    print_table("Whistle pipeline benchmark", rows)
