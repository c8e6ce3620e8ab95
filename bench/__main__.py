"""``python -m bench [pipeline|ledger|scheduler|routing] [options]``; with no arguments, all of
them with their defaults."""

import sys

from bench import ledger, pipeline, routing, scheduler

BENCHMARKS = {
    "pipeline": pipeline.main,
    "ledger": ledger.main,
    "scheduler": scheduler.main,
    "routing": routing.main,
}

args = sys.argv[1:]
if not args:
    for run in BENCHMARKS.values():
        run([])
elif args[0] in BENCHMARKS:
    BENCHMARKS[args[0]](args[1:])
else:
    sys.exit(f"usage: python -m bench [{'|'.join(BENCHMARKS)}] [options]")
