"""The benchmark's CPU accounting (bench/footprint.py): what each process group spent, its
children included, and the rate the machine's cores bound the pipeline to."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.footprint import cpu_bound_rate, cpu_per_tip, cpu_seconds

# Burns ``seconds`` of its own CPU time, then says so.
BURN = """
import sys, time
while time.process_time() < {seconds}:
    pass
print("burnt", flush=True)
"""

# Starts one child that burns and exits (reaped), and one that burns and stays alive; says
# "ready" once both have burnt, then waits for its stdin to close.
PARENT = f"""
import subprocess, sys
burn = {BURN.format(seconds=0.3)!r}
gone = subprocess.run([sys.executable, "-c", burn], check=True, capture_output=True)
alive = subprocess.Popen([sys.executable, "-c", burn + "sys.stdin.read()"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert alive.stdout.readline() == "burnt\\n"
print("ready", flush=True)
sys.stdin.read()
alive.stdin.close()
alive.wait()
"""


def test_a_group_counts_its_live_and_reaped_children() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "ready\n"
        used = cpu_seconds({"database": [parent.pid]})
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        parent.wait(timeout=30)
    # Two children's 0.3 s each; the parent itself mostly waited.
    assert used["database"] >= 0.6
    assert used["database"] < 5


def test_cpu_per_tip_is_the_growth_between_readings_per_tip() -> None:
    before = {"dispatch": 10.0, "postgresql": 4.0}
    after = {"dispatch": 22.0, "postgresql": 9.0}
    assert cpu_per_tip(before, after, 1000) == pytest.approx({"dispatch": 12.0, "postgresql": 5.0})


def test_the_machine_bounds_the_rate_by_its_cores_over_all_cpu_per_tip() -> None:
    # 40 ms of CPU per tip in all: two cores carry at most 50 tips a second, one core 25.
    per_tip = {"dispatch": 12.0, "escalation": 8.0, "postgresql": 20.0}
    assert cpu_bound_rate(per_tip, 2) == pytest.approx(50.0)
    assert cpu_bound_rate(per_tip, 1) == pytest.approx(25.0)
