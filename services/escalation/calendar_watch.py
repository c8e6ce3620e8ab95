"""The business calendar in force in an escalation process, and how a new one takes over.

The State Council publishes each year's holiday notice in November or December; the county
adds it to ``calendar.yaml``. If it has not by 1 January, escalation does not stop: deadlines
in the missing year are counted Monday to Friday and flagged provisional, and the service says
so loudly while that lasts —

- a warning in the log at start, at every reload and when the year turns, naming the years;
- the gauge ``whistle_escalation_calendar_provisional`` (1 while the current year is missing);
- a ``calendar`` entry in the details of ``/readyz`` (the service stays ready);
- ``GET /v1/calendar`` (the department page's banner).

A new file takes over without a restart, whole: when its digest changes (polled every
``WHISTLE_CALENDAR_POLL_SECONDS``), on ``kill -HUP``, or on ``POST /v1/calendar/reload``. An
invalid file leaves the calendar in force as it is and says why in the log (or in the 422).
After each reload every provisional clock the new calendar covers is counted again
(``services/escalation/recompute.py``). Only an invalid file at start stops the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Gauge

from contracts.tenancy import Counties
from services.escalation.calendar import (
    BusinessCalendar,
    CalendarError,
    digest,
    missing_years,
    parse_calendar,
    read_calendar,
)
from services.escalation.recompute import recompute_provisional
from services.runtime.clock import Clock
from services.runtime.db import Sessions
from services.runtime.service import Runtime
from services.runtime.signals import on_sighup

log = logging.getLogger(__name__)

CALENDAR_PROVISIONAL = Gauge(
    "whistle_escalation_calendar_provisional",
    "1 while the business calendar lacks the county's current year (its deadlines counted "
    "Monday to Friday, provisionally), else 0",
)


@dataclass(frozen=True)
class CalendarStatus:
    """What the calendar in force covers, seen at one instant."""

    version: str
    years: list[int]
    missing_years: list[int]

    @property
    def provisional(self) -> bool:
        return bool(self.missing_years)

    def warning(self) -> str | None:
        """The operator's warning while a year is missing; None when all is covered."""
        if not self.missing_years:
            return None
        missing = ", ".join(map(str, self.missing_years))
        return (
            f"the business calendar has no State Council holiday notice for {missing} (it "
            f"covers {', '.join(map(str, self.years))}): deadlines there are counted Monday to "
            f"Friday, provisionally, and counted again once calendar.yaml has {missing}"
        )

    def notice(self) -> str | None:
        """The banner the department page shows while the current year is missing."""
        if not self.missing_years:
            return None
        years = "、".join(f"{y}年" for y in self.missing_years)
        return f"{years}节假日安排尚未录入，期限暂按周一至周五计算，录入后自动重算。"

    def readiness(self) -> dict[str, object] | None:
        """The ``/readyz`` detail: present only while provisional."""
        if not self.missing_years:
            return None
        return {"provisional": True, "missing_years": self.missing_years, "version": self.version}


class CalendarWatch:
    """Holds the calendar in force and replaces it whole; one reload at a time."""

    def __init__(
        self,
        path: Path,
        timezone: str,
        sessions: Sessions,
        clock: Clock,
        *,
        counties: Counties | None,
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = path
        self._counties = counties
        self.timezone = timezone
        self._sessions = sessions
        self._clock = clock
        self._after_commit = after_commit
        text = self._read()  # an unreadable or invalid file at start stops the service
        self._calendar = parse_calendar(text, path, timezone)
        self._seen = digest(text)  # the last file looked at, taken or refused
        self._lock = asyncio.Lock()
        self._warned: list[int] = []
        self._recount_due = True  # at start: clocks of a year this file has since gained
        CALENDAR_PROVISIONAL.set_function(lambda: float(self.status().provisional))

    def current(self) -> BusinessCalendar:
        return self._calendar

    def status(self) -> CalendarStatus:
        return CalendarStatus(
            version=self._calendar.version,
            years=list(self._calendar.years),
            missing_years=missing_years(self._calendar, self._clock()),
        )

    def announce(self, *, always: bool) -> CalendarStatus:
        """Log the warning while a year is missing: ``always`` (start, reload), else only when
        the missing years changed since the last warning (the year turned)."""
        status = self.status()
        if status.missing_years != self._warned or always:
            if warning := status.warning():
                log.warning("PROVISIONAL CALENDAR: %s", warning)
            elif self._warned:
                log.info("business calendar %s covers the current year", status.version)
            self._warned = status.missing_years
        return status

    async def reload(self) -> tuple[BusinessCalendar, int]:
        """Read the file and put it in force, then count provisional clocks again; returns the
        calendar and how many clocks were counted again. CalendarError leaves the calendar in
        force as it was."""
        async with self._lock:
            try:
                text = self._read()
                self._seen = digest(text)
                loaded = parse_calendar(text, self.path, self.timezone)
            except CalendarError as exc:
                log.error(
                    "business calendar not reloaded, %s stays in force: %s",
                    self._calendar.version,
                    "; ".join(exc.reasons),
                )
                raise
            previous, self._calendar = self._calendar, loaded
            log.info(
                "business calendar %s in force (was %s), covering %s",
                loaded.version,
                previous.version,
                ", ".join(map(str, loaded.years)),
            )
            self.announce(always=True)
            self._recount_due = True
            recounted = await self.recount()
        return loaded, recounted

    async def recount(self) -> int:
        """Count again the provisional clocks the calendar in force covers; how many.

        Clocks the scheduler holds locked at that moment are passed over, not waited for: the
        next poll counts again until a run finds nothing left. A failure (the database away)
        is logged and retried at the next poll; the calendar in force stays in force.
        """
        calendar = self._calendar
        try:
            recounted = await recompute_provisional(
                self._sessions, calendar, self._clock, counties=self._counties
            )
        except Exception:
            log.exception("provisional clocks not counted again yet; retrying at the next poll")
            return 0
        self._recount_due = recounted > 0
        if recounted:
            self._after_commit()
            log.info(
                "%d provisional clocks counted again on calendar %s", recounted, calendar.version
            )
        return recounted

    async def check(self) -> None:
        """One poll: reload if the file changed since it was last looked at; an invalid file
        is logged once, and the calendar in force stays."""
        try:
            text = await asyncio.to_thread(self._read)
        except CalendarError as exc:
            log.error("business calendar not reloaded: %s", "; ".join(exc.reasons))
            return
        if digest(text) != self._seen:
            await self._reload_or_log()
        elif self._recount_due:
            async with self._lock:
                await self.recount()
        self.announce(always=False)

    async def poll(self, interval_seconds: float) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            await self.check()

    async def reload_on_sighup(self) -> None:
        """``kill -HUP`` reloads the calendar, like ``POST /v1/calendar/reload``."""
        await on_sighup(self._reload_or_log)

    async def _reload_or_log(self) -> None:
        with contextlib.suppress(CalendarError):  # logged by reload; the old one stays
            await self.reload()

    def _read(self) -> bytes:
        return read_calendar(self.path)


def watch_of(runtime: Runtime) -> CalendarWatch:
    """The process's calendar watch (set up by ``services/escalation/app.py``)."""
    watch: CalendarWatch = runtime.state["calendar_watch"]
    return watch


def current_calendar(runtime: Runtime) -> BusinessCalendar:
    """The calendar in force now: a reload swaps it whole, so ask at each use."""
    return watch_of(runtime).current()
