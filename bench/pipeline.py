"""The whole pipeline under load: tips posted to intake until each is recorded as routed
and deadlined in the ledger.

Starts its own embedded PostgreSQL and Tansu broker on free ports in a temporary directory,
runs the four services as processes (as ``whistle up`` does), posts tips with a fixed
concurrency, then reads timings from the ledger's own records. Everything is on loopback and
the run is bounded in count and time.

The tips are distinct, as a county's are: each original names a catalogue matter (by its
strongest keyword, in a sentence of its own) in a grid no other original of that matter uses,
so that it opens a case of its own; ``--duplicates`` of them (5 % by default) report an earlier
tip's problem again, in other words, in the same grid, and join its case (merging.py). Each
tip's outcome is read back from the ledger — opened and deadlined, merged, or waiting in manual
triage — and latency is counted per outcome from events that name that tip, never from a case
some other tip opened (``measure``).

    python -m bench pipeline [--tips 1000] [--concurrency 20] [--rate 0] [--duplicates 0.05]
                             [--replicas intake=2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import asyncpg
from sqlalchemy.engine import make_url

from bench import ceilings, footprint
from bench.load import LoadTip, Posted, generate_load, post_tips
from bench.stack import (
    LOAD_LIMITS,
    REPO,
    Servers,
    Services,
    embedded_servers,
    embedded_stack,
    print_table,
    running_services,
)
from reference.county import load_reference
from services.launcher.stack import parse_replicas
from services.runtime.settings import SERVICES


class Outcome(StrEnum):
    DEADLINED = "opened a case, deadlines set"
    MERGED = "merged into an open case"
    MANUAL = "waiting in manual triage"
    PENDING = "not recorded (yet)"


@dataclass(frozen=True)
class LedgerTimes:
    """What the ledger recorded, as the latency measure needs it (times are the ledger's
    ``recorded_at``, but a tip's own ``event_time``, when intake accepted it)."""

    received: Mapping[str, datetime]  # tip id → accepted by intake
    opened: Mapping[str, str]  # tip id → the case it opened
    merged: Mapping[str, datetime]  # tip id → recorded as merged into a case
    triage: Mapping[str, datetime]  # case id → first sent to manual triage
    deadlines: Mapping[str, datetime]  # case id → first deadlines set


@dataclass
class Measured:
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    # Seconds, per outcome, from the tip's acceptance to the event that names it.
    latencies: dict[Outcome, list[float]] = field(default_factory=dict)


def measure(times: LedgerTimes) -> Measured:
    """Each tip's outcome and latency. A tip's latency ends at an event caused by that tip — the
    deadlines of the case it opened, the merge that names it, the triage of its case — so it
    cannot end before the tip was accepted; a tip merged into an older case is counted as
    merged, never against the deadlines that case got before it arrived."""
    measured = Measured()
    for tip, accepted in times.received.items():
        case = times.opened.get(tip)
        if tip in times.merged:
            outcome, end = Outcome.MERGED, times.merged[tip]
        elif case is not None and case in times.deadlines:
            outcome, end = Outcome.DEADLINED, times.deadlines[case]
        elif case is not None and case in times.triage:
            outcome, end = Outcome.MANUAL, times.triage[case]
        else:
            measured.outcomes[Outcome.PENDING] += 1
            continue
        measured.outcomes[outcome] += 1
        measured.latencies.setdefault(outcome, []).append((end - accepted).total_seconds())
    return measured


LEDGER_TIMES = """
SELECT type, subject, event_time, recorded_at,
       convert_from(canonical, 'UTF8')::jsonb -> 'data' ->> 'tip_id' AS tip_id
FROM ledger_entry
WHERE type IN ('whistle.tip.received', 'whistle.case.opened', 'whistle.case.merged',
               'whistle.case.triage_required', 'whistle.deadlines.set')
ORDER BY seq
"""


async def read_ledger_times(conn: asyncpg.Connection) -> LedgerTimes:
    received: dict[str, datetime] = {}
    opened: dict[str, str] = {}
    merged: dict[str, datetime] = {}
    triage: dict[str, datetime] = {}
    deadlines: dict[str, datetime] = {}
    for row in await conn.fetch(LEDGER_TIMES):
        kind, subject = row["type"], row["subject"]
        if kind == "whistle.tip.received":
            received[subject] = row["event_time"]
        elif kind == "whistle.case.opened":
            opened[row["tip_id"]] = subject
        elif kind == "whistle.case.merged":
            merged.setdefault(row["tip_id"], row["recorded_at"])
        elif kind == "whistle.case.triage_required":
            triage.setdefault(subject, row["recorded_at"])
        else:
            deadlines.setdefault(subject, row["recorded_at"])
    return LedgerTimes(received, opened, merged, triage, deadlines)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def wait_for_ledger(ledger_db: str, count: int, limit: float) -> tuple[Measured, float]:
    """Read the ledger until every accepted tip has an outcome (or ``limit`` seconds pass)."""
    conn = await asyncpg.connect(ledger_db)
    began = time.perf_counter()
    try:
        while True:
            measured = measure(await read_ledger_times(conn))
            done = measured.outcomes.total() - measured.outcomes[Outcome.PENDING]
            if done >= count or time.perf_counter() - began > limit:
                return measured, time.perf_counter() - began
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


# Each tip is four to six events in the ledger; its ingest ceiling is measured on as many.
EVENTS_PER_TIP = 4
CLIENT = "bench client"
CORES = os.cpu_count() or 1


@dataclass(frozen=True)
class Footprint:
    memory: dict[str, int]  # service → resident bytes
    disk: footprint.Disk
    cpu: dict[str, float]  # service, database, broker or the client → CPU seconds so far


@dataclass(frozen=True)
class Ceilings:
    acceptance: Posted
    broker: ceilings.RoundTrips
    ledger_events_per_second: float
    # Intake alone on fresh servers, posted as ceiling (a) is: what it is read against, like
    # for like (in the pipeline the other three services share the cores with it).
    intake_alone: Posted


@dataclass
class Run:
    """One pipeline run: what was posted and recorded, and the footprint around it."""

    posted: Posted
    measured: Measured
    drained: float
    at_rest: Footprint
    loaded: Footprint
    ceilings: Ceilings | None = None


def _memory(services: Services) -> dict[str, int]:
    """Resident memory per service, its replicas' added up."""
    rss = footprint.memory({name: p.pid for name, p in services.processes.items()})
    return {service: sum(rss[r.name] for r in services.replicas[service]) for service in SERVICES}


def _footprint(servers: Servers, services: Services) -> Footprint:
    processes = {
        service: [services.processes[r.name].pid for r in services.replicas[service]]
        for service in SERVICES
    }
    for name, server in (("postgresql", servers.postgres), ("broker", servers.broker)):
        assert server.process is not None
        processes[name] = [server.process.pid]
    cpu = {**footprint.cpu_seconds(processes), CLIENT: footprint.own_cpu_seconds()}
    return Footprint(_memory(services), footprint.disk(servers.settings), cpu)


def run(
    load: list[LoadTip],
    concurrency: int,
    rate: float,
    replicas: Mapping[str, int] | None = None,
    with_ceilings: bool = True,
) -> Run:
    """The services (with ``replicas``) on fresh servers, the load posted and drained; then,
    the services stopped, the ceilings on the same servers."""
    with embedded_servers() as servers:
        settings, root = servers.settings, servers.root
        with running_services(settings, root, LOAD_LIMITS, replicas) as services:
            at_rest = _footprint(servers, services)
            posted = asyncio.run(post_tips(services.urls("intake"), load, concurrency, rate))
            assert settings.database_url is not None
            ledger_db = make_url(settings.database_url).set(database="whistle_ledger")
            measured, drained = asyncio.run(
                wait_for_ledger(
                    ledger_db.render_as_string(hide_password=False), len(posted.tracking), 300
                )
            )
            loaded = _footprint(servers, services)
        outcome = Run(posted, measured, drained, at_rest, loaded)
        if with_ceilings:
            # The services are stopped: each ceiling has the machine to itself, as Whistle had.
            outcome.ceilings = Ceilings(
                ceilings.acceptance(settings, root / "ceiling.log", load, concurrency),
                asyncio.run(ceilings.broker_round_trips(settings, len(load) * EVENTS_PER_TIP)),
                ceilings.ledger_ingest(settings, len(load) * EVENTS_PER_TIP),
                intake_alone(load, concurrency),
            )
    return outcome


def intake_alone(load: list[LoadTip], concurrency: int) -> Posted:
    """Intake as the only service, on fresh servers, posted the load with no pacing — as
    ceiling (a) is posted it, so that the two figures differ by Whistle's acceptance alone."""
    with (
        embedded_stack() as (settings, root),
        running_services(settings, root, LOAD_LIMITS, only=("intake",)) as services,
    ):
        return asyncio.run(post_tips(services.urls("intake"), load, concurrency, 0))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench pipeline")
    parser.add_argument("--tips", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0, help="tips per second; 0 = no cap")
    parser.add_argument(
        "--duplicates", type=float, default=0.05, help="share of tips retelling an earlier one"
    )
    parser.add_argument(
        "--replicas",
        type=parse_replicas,
        default={},
        help="processes per service, as whistle up --replicas: 2, or intake=2,ledger=2",
    )
    args = parser.parse_args(argv)
    load = generate_load(load_reference(REPO / "deploy" / "config"), args.tips, args.duplicates)
    outcome = run(load, args.concurrency, args.rate, args.replicas)
    assert outcome.ceilings is not None
    cpu = footprint.cpu_per_tip(
        outcome.at_rest.cpu, outcome.loaded.cpu, len(outcome.posted.tracking)
    )
    report(args, outcome.posted, outcome.measured, outcome.drained, outcome.ceilings, cpu)
    report_footprint(outcome.at_rest, outcome.loaded, len(outcome.posted.tracking), cpu)


def _spread(values: list[float]) -> str:
    if not values:
        return "–"
    ms = [v * 1000 for v in values]
    p95, p99 = (percentile(ms, q) for q in (95, 99)) if len(ms) > 1 else (ms[0], ms[0])
    return f"{statistics.median(ms):.0f} / {p95:.0f} / {p99:.0f} / {max(ms):.0f} ms"


def _rate(posted: Posted) -> float:
    return len(posted.latencies) / posted.elapsed


def _p(posted: Posted, q: int) -> float:
    return percentile(posted.latencies, q) * 1000


def report(
    args: argparse.Namespace,
    posted: Posted,
    measured: Measured,
    drained: float,
    ceiling: Ceilings,
    cpu: Mapping[str, float],
) -> None:
    bare, alone = ceiling.acceptance, ceiling.intake_alone
    recorded = measured.outcomes.total() - measured.outcomes[Outcome.PENDING]
    whole = recorded / (posted.elapsed + drained)
    machine_bound = footprint.cpu_bound_rate(cpu, CORES)
    rows = [
        (
            "tips posted",
            f"{len(posted.latencies)}",
            f"concurrency {args.concurrency}"
            + (f", paced at {args.rate:g}/s" if args.rate else "")
            + f", {args.duplicates:.0%} retold; rate limits lifted for the bench client",
        ),
        (
            "intake accept rate",
            f"{_rate(posted):.0f} tips/s",
            f"ceiling (a) {_rate(bare):.0f} tips/s: {_rate(posted) / _rate(bare):.2f}×"
            " (the other services busy beside it)",
        ),
        (
            "intake accept rate, alone",
            f"{_rate(alone):.0f} tips/s",
            f"ceiling (a) {_rate(bare):.0f} tips/s: {_rate(alone) / _rate(bare):.2f}×"
            f" (intake the only service, {args.concurrency} clients unpaced, as (a))",
        ),
    ]
    for label, figures in (("intake POST", posted), ("intake alone POST", alone)):
        for q in (50, 95, 99):
            rows.append(
                (
                    f"{label} p{q}",
                    f"{_p(figures, q):.1f} ms",
                    f"ceiling (a) {_p(bare, q):.1f} ms: {_p(figures, q) / _p(bare, q):.1f}×",
                )
            )
    for outcome in Outcome:
        count = measured.outcomes[outcome]
        if outcome is Outcome.PENDING:
            rows.append((outcome.value, f"{count}", "after the drain limit"))
            continue
        rows.append(
            (
                outcome.value,
                f"{count}",
                "p50 / p95 / p99 / max " + _spread(measured.latencies.get(outcome, [])),
            )
        )
    broker = ceiling.broker
    rows += [
        ("drain after last POST", f"{drained:.1f} s", ""),
        (
            "whole pipeline",
            f"{whole:.0f} tips/s",
            f"{recorded} tips through to the ledger in {posted.elapsed + drained:.1f} s, "
            "first POST to the last tip recorded",
        ),
        (
            "ceiling (d) the machine's CPU",
            f"{machine_bound:.0f} tips/s",
            f"{CORES} cores ÷ {sum(cpu.values()):.1f} ms CPU per tip, every process of the run"
            f" (footprint below): whole pipeline {whole / machine_bound:.2f}×",
        ),
        (
            "ceiling (b) broker round trip",
            f"{broker.per_second:,.0f} msg/s",
            "raw aiokafka, 1 KiB, send → receipt p50 / p95 / p99 / max "
            + _spread(broker.latencies),
        ),
        (
            "ceiling (c) ledger ingest alone",
            f"{ceiling.ledger_events_per_second:,.0f} events/s",
            f"Recorder + inbox batch path, no broker; Whistle needs ~{EVENTS_PER_TIP}/tip",
        ),
    ]
    print_table("Whistle pipeline benchmark", rows)


def report_footprint(
    at_rest: Footprint, loaded: Footprint, tips: int, cpu: Mapping[str, float]
) -> None:
    mib = 1024 * 1024
    total = sum(cpu.values())
    rows = [
        (f"{name} CPU per tip", f"{ms:.1f} ms", f"{ms / total:.0%} of the run's CPU")
        for name, ms in sorted(cpu.items(), key=lambda named: -named[1])
    ]
    for service in SERVICES:
        grown = footprint.growth_per_thousand(at_rest.disk, loaded.disk, service, tips)
        largest = ", ".join(footprint.largest_growth(at_rest.disk, loaded.disk, service))
        rows += [
            (
                f"{service} memory",
                f"{at_rest.memory[service] / mib:.0f} → {loaded.memory[service] / mib:.0f} MiB",
                f"resident, at rest → after {tips:,} tips",
            ),
            (f"{service} disk per 1,000 tips", f"{grown / mib:.2f} MiB", f"most: {largest}"),
        ]
    print_table("Whistle footprint", rows)
