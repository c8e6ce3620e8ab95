"""``whistle up`` keeps its children running: a child that exits is started again after a
backoff, one that reports itself unhealthy is stopped and so started again, and only a crash
loop (``CRASH_LOOP_EXITS`` exits within ``CRASH_LOOP_SECONDS``) makes the stack give up.

The children are the four services and, when embedded, the broker and PostgreSQL. The policy is
here; starting each kind of child is the launcher's (services/launcher/stack.py).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CRASH_LOOP_EXITS = 5
CRASH_LOOP_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0
# Consecutive failed health checks before a child is restarted: one slow answer is not a hang.
UNHEALTHY_CHECKS = 2
# A child stopped for being unhealthy that has not exited this long after SIGTERM is killed.
KILL_AFTER_SECONDS = 15.0


class CrashLoop(RuntimeError):
    pass


@dataclass
class Child:
    """A process the supervisor keeps running. ``start`` starts it (and may raise to say it
    could not); ``healthy`` is asked now and then, if given."""

    name: str
    log: Path
    start: Callable[[], subprocess.Popen[bytes]]
    healthy: Callable[[], bool] | None = None
    process: subprocess.Popen[bytes] | None = None
    exits: deque[float] = field(default_factory=deque)
    restarts: int = 0
    restart_at: float | None = None
    unhealthy: int = 0
    stopped_at: float | None = None


class Supervisor:
    def __init__(
        self,
        children: list[Child],
        say: Callable[[str], None],
        *,
        backoff_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = children
        self._say = say
        self._backoff = backoff_seconds
        self._clock = clock

    def tend(self) -> None:
        """Notice exits and start again what is due; raises CrashLoop to give up."""
        now = self._clock()
        for child in self.children:
            process = child.process
            if child.restart_at is None and process is not None and process.poll() is not None:
                child.stopped_at = None
                self._exited(child, process.returncode, now)
            elif child.stopped_at is not None and now - child.stopped_at > KILL_AFTER_SECONDS:
                child.stopped_at = None
                if process is not None:
                    process.kill()
            if child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                child.restarts += 1
                child.process = child.start()
                self._say(f"whistle: {child.name} started again (restart {child.restarts})")

    def _exited(self, child: Child, code: int, now: float) -> None:
        child.exits.append(now)
        while child.exits and now - child.exits[0] > CRASH_LOOP_SECONDS:
            child.exits.popleft()
        if len(child.exits) >= CRASH_LOOP_EXITS:
            raise CrashLoop(
                f"{child.name} exited {len(child.exits)} times within "
                f"{CRASH_LOOP_SECONDS:.0f}s (last code {code}); giving up; see {child.log}"
            )
        delay = min(MAX_BACKOFF_SECONDS, self._backoff * 2 ** (len(child.exits) - 1))
        child.restart_at = now + delay
        self._say(
            f"whistle: {child.name} exited (code {code}); starting it again in {delay:.0f}s; "
            f"see {child.log}"
        )

    def check_health(self) -> None:
        """Stop a child that failed its health check ``UNHEALTHY_CHECKS`` times in a row; its
        exit then starts it again."""
        for child in self.children:
            process = child.process
            if child.healthy is None or process is None or process.poll() is not None:
                continue
            if child.healthy():
                child.unhealthy = 0
                continue
            child.unhealthy += 1
            if child.unhealthy >= UNHEALTHY_CHECKS:
                child.unhealthy = 0
                self._say(f"whistle: {child.name} is unhealthy; stopping it to start it again")
                child.stopped_at = self._clock()
                process.send_signal(signal.SIGTERM)
