"""Retention: what each service removes once it has been kept long enough, applied by one job
per process (``RetentionJob``), every ``WHISTLE_RETENTION_INTERVAL_HOURS``.

Every service sweeps its inbox: a consumed event's ``(source, id)`` is kept
``WHISTLE_INBOX_RETENTION_DAYS`` so that a redelivery is recognised, then removed. That must
outlast every way the event can come again — an outbox sending it again after the broker lost
it (``WHISTLE_OUTBOX_RETENTION_DAYS``, which the settings hold it to) and the broker's own log
retention (Kafka's default is seven days). A service adds its own sweeps (intake: contact data,
tips' personal data, attachments) in its setup. Each run logs one line and counts what it
removed (``whistle_retention_removed_total``); a sweep that fails is logged and tried again at
the next run, the others still run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete

from services.runtime.clock import Clock
from services.runtime.db import Sessions
from services.runtime.inbox import InboxRecord
from services.runtime.metrics import RETENTION_LAST_RUN, RETENTION_REMOVED

log = logging.getLogger(__name__)

# What stands where a citizen's words were, wherever a service erased them.
ERASED_TEXT = "已按规定删除"

# What a sweep removes as of ``now``; returns how many (rows, files) it removed.
SweepFunction = Callable[[datetime], Awaitable[int]]


@dataclass(frozen=True)
class Sweep:
    what: str  # the metric's label: "inbox", "contact", …
    run: SweepFunction


def inbox_sweep(sessions: Sessions, retention: timedelta) -> Sweep:
    async def run(now: datetime) -> int:
        async with sessions() as session, session.begin():
            result = await session.execute(
                delete(InboxRecord).where(InboxRecord.processed_at < now - retention)  # type: ignore[arg-type]
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    return Sweep("inbox", run)


class RetentionJob:
    def __init__(self, service: str, clock: Clock, every: timedelta) -> None:
        self._service = service
        self._clock = clock
        self._every = every
        self.sweeps: list[Sweep] = []

    def add(self, sweep: Sweep) -> None:
        self.sweeps.append(sweep)

    async def run_once(self) -> dict[str, int]:
        """Every sweep once; how many each removed (a failed sweep is left out)."""
        now = self._clock()
        removed: dict[str, int] = {}
        for sweep in self.sweeps:
            try:
                removed[sweep.what] = await sweep.run(now)
            except Exception:
                log.exception("retention: %s not swept; trying again at the next run", sweep.what)
                continue
            RETENTION_REMOVED.labels(self._service, sweep.what).inc(removed[sweep.what])
        RETENTION_LAST_RUN.labels(self._service).set(now.timestamp())
        log.info(
            "retention: removed %s",
            ", ".join(f"{count} {what}" for what, count in removed.items()) or "nothing to sweep",
        )
        return removed

    async def run(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self._every.total_seconds())
