"""``python -m bench [pipeline|ledger|scheduler|routing|roundtrips|triage|scaling|faults]
[options]``; with no arguments, the benchmarks (not the scaling comparison, which runs the
pipeline twice, nor the fault suite, which takes 15–20 minutes: ``make faults``) with their
defaults."""

import sys

from bench import faults, ledger, pipeline, roundtrips, routing, scaling, scheduler, triage

BENCHMARKS = {
    "pipeline": pipeline.main,
    "ledger": ledger.main,
    "scheduler": scheduler.main,
    "routing": routing.main,
    "roundtrips": roundtrips.main,
    "triage": triage.main,
}
SUITES = {"faults": faults.main, "scaling": scaling.main}

args = sys.argv[1:]
if not args:
    for run in BENCHMARKS.values():
        run([])
elif args[0] in BENCHMARKS | SUITES:
    (BENCHMARKS | SUITES)[args[0]](args[1:])
else:
    sys.exit(f"usage: python -m bench [{'|'.join(BENCHMARKS | SUITES)}] [options]")
