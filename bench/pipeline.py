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
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.stack import LOAD_LIMITS, embedded_stack, print_table, running_services

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


@dataclass
class Posted:
    """What ``post_tips`` saw; filled as it goes, so that it holds what was accepted even if
    posting stopped with an exception."""

    # Per accepted tip, from its first attempt to intake's 201/200 (what the citizen waited).
    latencies: list[float] = field(default_factory=list)
    # Tip number → the tracking number intake answered with.
    tracking: dict[int, str] = field(default_factory=dict)
    # Answers that were not an acceptance and were retried: "503", "429", "connection (…)".
    retried: Counter[str] = field(default_factory=Counter)
    # Tips whose client stopped retrying (``retry_for`` ran out) without an acceptance.
    given_up: list[int] = field(default_factory=list)
    # First POST to the latest acceptance.
    elapsed: float = 0.0


# What a client retries by default: the answers intake gives when it is briefly unable (rate
# limit, draining, its database unavailable) and a proxy's for a backend that is away.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})


async def post_tips(
    url: str,
    count: int,
    concurrency: int,
    rate: float = 0,
    *,
    retry_for: float = 0,
    retry_statuses: frozenset[int] = RETRIED_STATUSES,
    on_accepted: Callable[[int], None] | None = None,
    posted: Posted | None = None,
) -> Posted:
    """Post ``count`` tips from ``concurrency`` clients, at most ``rate`` a second (0: no cap).

    Each tip carries its own Idempotency-Key. With ``retry_for`` > 0 a client that is answered
    one of ``retry_statuses`` or loses its connection sends the same request, same key, again —
    after the Retry-After it was given or a short backoff — for up to that many seconds per tip,
    as a citizen's app would, then gives that tip up; without, any refusal raises.
    ``on_accepted`` hears the running count of accepted tips."""
    posted = posted if posted is not None else Posted()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    run = uuid.uuid4().hex[:12]

    began = time.perf_counter()

    async def post(client: httpx.AsyncClient, n: int) -> None:
        text, grid = TEXTS[n % len(TEXTS)]
        headers = {"Idempotency-Key": f"bench-{run}-{n}"}
        started = time.perf_counter()
        backoff = 0.2
        while True:
            try:
                response = await client.post(
                    f"{url}/v1/tips", json={"text": text, "grid_id": grid}, headers=headers
                )
            except httpx.TransportError as exc:
                # Sent or not, the key makes a second attempt safe: intake answers a retry of a
                # tip it already took with the original.
                if not retry_for:
                    raise
                refusal, wait = f"connection ({type(exc).__name__})", backoff
            else:
                if response.status_code in (200, 201):
                    posted.latencies.append(time.perf_counter() - started)
                    posted.tracking[n] = response.json()["tracking_no"]
                    posted.elapsed = time.perf_counter() - began
                    if on_accepted is not None:
                        on_accepted(len(posted.tracking))
                    return
                if not retry_for or response.status_code not in retry_statuses:
                    response.raise_for_status()
                    raise RuntimeError(f"intake answered {response.status_code}: {response.text}")
                refusal, wait = str(response.status_code), _retry_after(response, backoff)
            if time.perf_counter() - started + wait > retry_for:
                posted.given_up.append(n)
                return
            posted.retried[refusal] += 1
            await asyncio.sleep(wait)
            backoff = min(2.0, backoff * 2)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            if rate:
                await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            await post(client, n)

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return posted


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return default


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

    with embedded_stack() as (settings, root), running_services(settings, root, LOAD_LIMITS):
        posted = asyncio.run(
            post_tips(settings.url_of("intake"), args.tips, args.concurrency, args.rate)
        )
        assert settings.database_url is not None
        ledger_db = make_url(settings.database_url).set(database="whistle_ledger")
        pipeline, drained = asyncio.run(
            wait_for_ledger(ledger_db.render_as_string(hide_password=False), args.tips, 300)
        )

    report(args, posted.latencies, posted.elapsed, pipeline, drained)


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
