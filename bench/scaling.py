"""The pipeline with one and then two processes of a service, side by side (issue #18).

    python -m bench scaling [--service intake] [--tips 1000] [--concurrency 20] [--duplicates 0.05]

Each run starts fresh servers and the four services, one of them as ``--replicas`` processes
(1, then 2), and posts the same generated load; the ceiling (a) — a bare FastAPI endpoint
committing one row to the same PostgreSQL — is measured once, after the first run, with the
same client. Beside each figure, the ratio of the two-replica run to the one-replica run: what
the second process bought on this machine.
"""

from __future__ import annotations

import argparse
import statistics

from bench.load import Posted, generate_load
from bench.pipeline import Outcome, Run, percentile, run
from bench.stack import REPO, print_table
from reference.county import load_reference
from services.runtime.settings import SERVICES

COUNTS = (1, 2)


def _accepted(posted: Posted) -> float:
    return len(posted.latencies) / posted.elapsed


def _post_p99(posted: Posted) -> float:
    return percentile(posted.latencies, 99) * 1000


def _recorded_p50(outcome: Run) -> float:
    values = outcome.measured.latencies.get(Outcome.DEADLINED, [])
    return statistics.median(values) * 1000 if values else float("nan")


def _rows(runs: dict[int, Run], service: str) -> list[tuple[str, str, str]]:
    one, two = runs[1], runs[2]
    ceiling = one.ceilings.acceptance if one.ceilings else None
    figures = [
        ("intake accept rate, tips/s", _accepted(one.posted), _accepted(two.posted)),
        ("intake POST p99, ms", _post_p99(one.posted), _post_p99(two.posted)),
        ("tip → deadlines in ledger p50, ms", _recorded_p50(one), _recorded_p50(two)),
        ("drain after last POST, s", one.drained, two.drained),
        (
            f"{service} memory, MiB (all replicas)",
            one.loaded.memory[service] / 2**20,
            two.loaded.memory[service] / 2**20,
        ),
    ]
    rows = [
        (what, f"{a:,.1f} → {b:,.1f}", f"{b / a:.2f}× with 2 {service} processes" if a else "")
        for what, a, b in figures
    ]
    if ceiling is not None:
        rows.append(
            ("ceiling (a) accept rate, tips/s", f"{_accepted(ceiling):,.1f}", "measured once")
        )
    pending = [runs[n].measured.outcomes[Outcome.PENDING] for n in COUNTS]
    rows.append(("tips not recorded", " / ".join(map(str, pending)), "1 / 2 processes"))
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench scaling")
    parser.add_argument("--service", choices=SERVICES, default="intake")
    parser.add_argument("--tips", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--duplicates", type=float, default=0.05)
    args = parser.parse_args(argv)
    load = generate_load(load_reference(REPO / "deploy" / "config"), args.tips, args.duplicates)
    runs = {
        count: run(load, args.concurrency, 0, {args.service: count}, with_ceilings=count == 1)
        for count in COUNTS
    }
    print_table(
        f"Pipeline with 1 and 2 {args.service} processes "
        f"({args.tips} tips, {args.concurrency} clients)",
        _rows(runs, args.service),
    )
