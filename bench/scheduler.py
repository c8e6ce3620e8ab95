"""Escalation's scheduler against APScheduler, side by side, on the same workload.

N deadlines are pending; during the measured window ``--rate`` of them (1,000 a second) fall
due, for ``--seconds`` seconds; the rest are due weeks later and only sit there. Measured: how
late each one fired (p50 / p99) and the resident memory of the process doing the firing.

- **ours**: ``escalation_step`` rows in PostgreSQL (an embedded server, as ``whistle up`` runs
  it), written with COPY; the real ``EscalationScheduler`` in a process of its own claims them
  with ``FOR UPDATE SKIP LOCKED``, fires each (outbox row, next ladder step) and commits. Its
  clock is injected, so the rows written before the process started fall due at the right
  moments of its run. Lag = when the batch holding the step committed − when it was due.
- **APScheduler 3** (``AsyncIOScheduler``, in-memory job store, default executor and misfire
  grace time): one ``date``-trigger job per deadline in a process of its own; each job records
  how late it ran. Jobs are handed over in due order (the store inserts them in order, the
  cheapest case for it). A job more than the grace time late is skipped ("missed").

    python -m bench scheduler [--sizes 10000,100000,1000000] [--apscheduler-sizes ...]
        [--rate 1000] [--seconds 10] [--interval 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bench.stack import REPO, machine
from services.escalation.calendar import load_calendar
from services.escalation.models import EscalationStep
from services.escalation.policies import load_policies
from services.escalation.scheduler import EscalationScheduler
from services.launcher.embedded import EmbeddedPostgres, free_port
from services.runtime.db import create_engine, ensure_database, session_factory
from services.runtime.migrations import upgrade
from services.runtime.settings import Settings

# The moment the worker's injected clock starts from, and the measured window's start after it.
BASE = datetime(2026, 11, 23, tzinfo=UTC)
LEAD_SECONDS = 3.0
DRAIN_SECONDS = 5.0
COPY_CHUNK = 100_000


def _window(n: int, rate: int, seconds: float) -> int:
    return min(n, int(rate * seconds))


def _due_offsets(n: int, rate: int, seconds: float) -> list[float]:
    """Seconds after the window opens at which each of the N deadlines falls due, ascending:
    ``rate`` a second through the window, the rest spread over the following weeks."""
    window = _window(n, rate, seconds)
    rest = n - window
    later = 14 * 86400.0
    return [i / rate for i in range(window)] + [
        later + i * (14 * 86400.0 / max(rest, 1)) for i in range(rest)
    ]


def _rss() -> tuple[int, int]:
    """(current, peak) resident set size of this process, in bytes."""
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return (
        int(fields["VmRSS"].split()[0]) * 1024,
        int(fields["VmHWM"].split()[0]) * 1024,
    )


def _percentiles(lags: list[float]) -> dict[str, float | None]:
    if len(lags) < 2:
        return {"p50": lags[0] if lags else None, "p99": lags[0] if lags else None}
    cuts = statistics.quantiles(lags, n=100, method="inclusive")
    return {"p50": statistics.median(lags), "p99": cuts[98], "max": max(lags)}


# ------------------------------------------------------------------ ours: rows in PostgreSQL


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def fill(url: str, n: int, rate: int, seconds: float) -> float:
    """Replace escalation's clocks with N running ones, each with its pending warning step."""
    started = time.monotonic()
    policy = load_policies(REPO / "deploy" / "config" / "policies.yaml").get("P-GENERAL")
    assert policy is not None
    snapshot = json.dumps({**policy.model_dump(mode="json"), "calendar_version": "bench"})
    window_open = BASE + timedelta(seconds=LEAD_SECONDS)
    # The deadline itself lies past every warning: firing a warning schedules an overdue step
    # that never falls due during the run, as in a real ladder.
    due = BASE + timedelta(days=60)
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await conn.execute("TRUNCATE escalation_step, deadline, outbox RESTART IDENTITY CASCADE")
        offsets = _due_offsets(n, rate, seconds)
        for first in range(0, n, COPY_CHUNK):
            chunk = range(first, min(n, first + COPY_CHUNK))
            warn = [window_open + timedelta(seconds=offsets[i]) for i in chunk]
            await conn.copy_records_to_table(
                "deadline",
                columns=[
                    "id",
                    "case_id",
                    "kind",
                    "round",
                    "status",
                    "started_at",
                    "due_at",
                    "warn_at",
                    "policy_id",
                    "policy_snapshot",
                ],
                records=[
                    (i + 1, uuid4(), "resolution", 1, "running", BASE, due, w, policy.id, snapshot)
                    for i, w in zip(chunk, warn, strict=True)
                ],
            )
            await conn.copy_records_to_table(
                "escalation_step",
                columns=["id", "deadline_id", "step", "due_at"],
                records=[(i + 1, i + 1, "warning", w) for i, w in zip(chunk, warn, strict=True)],
            )
        await conn.execute(f"ALTER TABLE deadline ALTER COLUMN id RESTART WITH {n + 1}")
        await conn.execute(f"ALTER TABLE escalation_step ALTER COLUMN id RESTART WITH {n + 1}")
        await conn.execute("VACUUM ANALYZE deadline")
        await conn.execute("VACUUM ANALYZE escalation_step")
    finally:
        await conn.close()
    return time.monotonic() - started


async def run_ours(url: str, n: int, rate: int, seconds: float, interval: float) -> dict[str, Any]:
    calendar = load_calendar(REPO / "deploy" / "config" / "calendar.yaml", "Asia/Shanghai")
    engine = create_engine(url, pool_size=2)
    sessions = session_factory(engine)
    wall0 = time.time()
    last_now: list[datetime] = [BASE]
    committed: dict[datetime, float] = {}

    def clock() -> datetime:
        now = BASE + timedelta(seconds=time.time() - wall0)
        last_now[0] = now
        return now

    def after_commit() -> None:
        # Every batch of a pass shares the pass's ``now``: the last commit is the honest one.
        committed[last_now[0]] = time.time() - wall0

    scheduler = EscalationScheduler(
        sessions, lambda: calendar, clock, interval_seconds=interval, after_commit=after_commit
    )
    rss_before = _rss()[0]
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(LEAD_SECONDS + seconds + DRAIN_SECONDS)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    rss, peak = _rss()
    window_close = BASE + timedelta(seconds=LEAD_SECONDS + seconds)
    async with sessions() as session:
        rows = (
            await session.execute(
                select(EscalationStep.due_at, EscalationStep.fired_at).where(
                    EscalationStep.step == "warning",
                    EscalationStep.due_at < window_close,  # type: ignore[arg-type]
                )
            )
        ).all()
    await engine.dispose()
    lags = [
        committed[fired] - (due - BASE).total_seconds()
        for due, fired in rows
        if fired is not None and fired in committed
    ]
    return {
        "fired": len(lags),
        "due": len(rows),
        "missed": sum(1 for _, fired in rows if fired is None),
        **_percentiles(lags),
        "rss_before": rss_before,
        "rss": rss,
        "peak": peak,
    }


# ------------------------------------------------------------------ APScheduler


async def run_apscheduler(n: int, rate: int, seconds: float) -> dict[str, Any]:
    from apscheduler.events import EVENT_JOB_MISSED
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    lags: list[float] = []
    missed: list[int] = []

    async def fire(due: float) -> None:
        lags.append(time.time() - due)

    def calibrate() -> float:
        """Seconds to create one job (pending, before start), measured on a throwaway."""
        trial = AsyncIOScheduler(timezone=UTC)
        started = time.perf_counter()
        later = datetime.now(UTC) + timedelta(days=1)
        for _ in range(2000):
            trial.add_job(fire, "date", run_date=later, args=[0.0])
        return (time.perf_counter() - started) / 2000

    per_job = calibrate()
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_listener(lambda _: missed.append(1), EVENT_JOB_MISSED)
    rss_before = _rss()[0]
    # Creating the jobs and starting the scheduler (which stores them) must end before the
    # window opens: give it twice the calibrated creation time (``setup_overran`` says if not).
    window_open = time.time() + LEAD_SECONDS + 2 * per_job * n
    setup_started = time.monotonic()
    for offset in _due_offsets(n, rate, seconds):
        due = window_open + offset
        scheduler.add_job(fire, "date", run_date=datetime.fromtimestamp(due, UTC), args=[due])
    scheduler.start()
    setup = time.monotonic() - setup_started
    overran = time.time() > window_open
    await asyncio.sleep(max(0.0, window_open - time.time()) + seconds + DRAIN_SECONDS)
    rss, peak = _rss()
    scheduler.shutdown(wait=False)
    return {
        "fired": len(lags),
        "due": _window(n, rate, seconds),
        "missed": len(missed),
        **_percentiles(lags),
        "rss_before": rss_before,
        "rss": rss,
        "peak": peak,
        "setup_seconds": setup,
        "setup_overran": overran,
    }


# ------------------------------------------------------------------ driver


def _worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["ours", "apscheduler"])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    if args.which == "ours":
        result = asyncio.run(run_ours(args.url, args.n, args.rate, args.seconds, args.interval))
    else:
        result = asyncio.run(run_apscheduler(args.n, args.rate, args.seconds))
    print(json.dumps(result))


def _spawn(which: str, n: int, args: argparse.Namespace, url: str | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.scheduler", "--worker", which, "--n", str(n)]
    command += ["--rate", str(args.rate), "--seconds", str(args.seconds)]
    command += ["--interval", str(args.interval)]
    if url:
        command += ["--url", url]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, check=False, timeout=1800
    )
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _mib(value: int) -> str:
    return f"{value / 2**20:,.0f} MiB"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:,.0f} ms"


def _row(name: str, n: int, result: dict[str, Any], note: str) -> str:
    if "error" in result:
        return f"| {name} | {n:,} | failed: {result['error']} | | | | {note} |"
    return (
        f"| {name} | {n:,} | {_ms(result.get('p50'))} | {_ms(result.get('p99'))} "
        f"| {result['fired']:,} / {result['due']:,} (missed {result['missed']:,}) "
        f"| {_mib(result['rss'])} (peak {_mib(result['peak'])}) | {note} |"
    )


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()] if text else []


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        _worker(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench scheduler")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="N for ours")
    parser.add_argument("--apscheduler-sizes", default="10000,100000,1000000")
    parser.add_argument("--rate", type=int, default=1000, help="deadlines due per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="the measured window")
    parser.add_argument(
        "--interval", type=float, default=0.25, help="ours: seconds between scheduler passes"
    )
    args = parser.parse_args(argv)
    rows: list[str] = []
    sizes = sorted(set(_sizes(args.sizes)) | set(_sizes(args.apscheduler_sizes)))
    with tempfile.TemporaryDirectory(prefix="whistle-bench-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "postgres" / "data", free_port())
        try:
            url = Settings(database_url=postgres.start()).database_url_for("escalation")
            asyncio.run(ensure_database(url))
            asyncio.run(upgrade("escalation", url))
            for n in sizes:
                if n in _sizes(args.sizes):
                    took = asyncio.run(fill(url, n, args.rate, args.seconds))
                    db = asyncio.run(_table_size(url))
                    result = _spawn("ours", n, args, url)
                    rows.append(
                        _row(
                            "escalation scheduler",
                            n,
                            result,
                            f"rows in PostgreSQL ({db}), COPY {took:.0f} s; "
                            f"RSS at start {_mib(result.get('rss_before', 0))}",
                        )
                    )
                    print(rows[-1], flush=True)
                if n in _sizes(args.apscheduler_sizes):
                    result = _spawn("apscheduler", n, args)
                    note = (
                        f"jobs in the process; creating and storing {result['setup_seconds']:.0f}"
                        f" s{' (overran the window start)' if result['setup_overran'] else ''}; "
                        f"RSS at start {_mib(result['rss_before'])}"
                        if "error" not in result
                        else ""
                    )
                    rows.append(_row("APScheduler 3 (memory)", n, result, note))
                    print(rows[-1], flush=True)
        finally:
            postgres.stop()
    print(
        f"\nScheduler: {args.rate:,} deadlines due per second for {args.seconds:g} s among N"
        f" pending; ours passes every {args.interval:g} s — {machine()}\n"
    )
    print("| scheduler | N pending | lag p50 | lag p99 | fired / due | RSS after | note |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)


async def _table_size(url: str) -> str:
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        size = await conn.fetchval(
            "SELECT pg_total_relation_size('deadline') + pg_total_relation_size('escalation_step')"
        )
    finally:
        await conn.close()
    return _mib(int(size))


if __name__ == "__main__":
    main(sys.argv[1:])
