"""``python -m bench [pipeline|ledger] [options]``; with no arguments, both with their defaults."""

import sys

from bench import ledger, pipeline

BENCHMARKS = {"pipeline": pipeline.main, "ledger": ledger.main}

args = sys.argv[1:]
if not args:
    for run in BENCHMARKS.values():
        run([])
elif args[0] in BENCHMARKS:
    BENCHMARKS[args[0]](args[1:])
else:
    sys.exit(f"usage: python -m bench [{'|'.join(BENCHMARKS)}] [options]")
