"""The supervisor's policy with real child processes and a clock the test moves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.launcher.supervisor import CRASH_LOOP_EXITS, Child, CrashLoop, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _exits_at_once(code: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    process.wait()
    return process


def _runs() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_child_that_exits_is_started_again_after_a_growing_backoff(tmp_path: Path) -> None:
    clock, said = Clock(), []
    child = Child("dispatch", tmp_path / "dispatch.log", lambda: _exits_at_once(3))
    child.process = _exits_at_once(3)
    supervisor = Supervisor([child], said.append, backoff_seconds=1, clock=clock)

    supervisor.tend()
    assert said[-1].startswith("whistle: dispatch exited (code 3); starting it again in 1s")
    assert child.restarts == 0  # not before the backoff
    clock.now += 1
    supervisor.tend()
    assert child.restarts == 1
    assert said[-1] == "whistle: dispatch started again (restart 1)"
    supervisor.tend()
    assert "starting it again in 2s" in said[-1]


def test_a_crash_loop_gives_up_naming_the_child_and_its_log(tmp_path: Path) -> None:
    clock = Clock()
    log = tmp_path / "ledger.log"
    child = Child("ledger", log, lambda: _exits_at_once(1))
    child.process = _exits_at_once(1)
    supervisor = Supervisor([child], lambda _: None, backoff_seconds=1, clock=clock)
    with pytest.raises(CrashLoop, match=f"ledger exited {CRASH_LOOP_EXITS} times .* see {log}"):
        for _ in range(100):  # the backoffs (1, 2, 4, 8 s) keep every exit within the minute
            supervisor.tend()
            clock.now += 1


def test_exits_spread_over_more_than_a_minute_are_no_crash_loop(tmp_path: Path) -> None:
    clock = Clock()
    child = Child("intake", tmp_path / "intake.log", lambda: _exits_at_once(1))
    child.process = _exits_at_once(1)
    supervisor = Supervisor([child], lambda _: None, backoff_seconds=1, clock=clock)
    for _ in range(CRASH_LOOP_EXITS * 3):
        supervisor.tend()
        clock.now += 31
    assert child.restarts > CRASH_LOOP_EXITS


def test_an_unhealthy_child_is_stopped_on_the_second_failed_check_and_started_again(
    tmp_path: Path,
) -> None:
    clock, said = Clock(), []
    answers = iter([False, True, False, False])
    child = Child("escalation", tmp_path / "e.log", _runs, healthy=lambda: next(answers))
    child.process = _runs()
    first = child.process
    supervisor = Supervisor([child], said.append, backoff_seconds=1, clock=clock)
    try:
        supervisor.check_health()  # one failure: a slow answer, not a hang
        supervisor.check_health()
        supervisor.check_health()
        assert first.poll() is None
        supervisor.check_health()  # second failure in a row
        assert "escalation is unhealthy" in said[-1]
        assert first.wait(10) != 0
        supervisor.tend()
        clock.now += 1
        supervisor.tend()
        assert child.process is not first
        assert child.restarts == 1
    finally:
        for process in (first, child.process):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
