"""The colour a dispatcher sees on an open case: how close its running clocks are to due.

green — every running clock is before its warning time; yellow — a clock passed its warning
time (escalation's ``whistle.deadline.warning`` falls then); red — a clock is overdue
(``whistle.deadline.overdue``). A case with no running clock (waiting in triage, resolved,
closed) has no colour. Plain data: the caller says what time it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Colour(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


_RANK = {Colour.GREEN: 0, Colour.YELLOW: 1, Colour.RED: 2}


class ClockTimes(Protocol):
    @property
    def warn_at(self) -> datetime: ...

    @property
    def due_at(self) -> datetime: ...

    @property
    def stopped_at(self) -> datetime | None: ...


def clock_colour(clock: ClockTimes, now: datetime) -> Colour | None:
    """None for a stopped clock: it no longer runs towards anything."""
    if clock.stopped_at is not None:
        return None
    if now >= clock.due_at:
        return Colour.RED
    if now >= clock.warn_at:
        return Colour.YELLOW
    return Colour.GREEN


def case_colour(clocks: Iterable[ClockTimes], now: datetime) -> Colour | None:
    """The worst colour among the case's running clocks."""
    colours = [c for c in (clock_colour(clock, now) for clock in clocks) if c is not None]
    return max(colours, key=_RANK.__getitem__) if colours else None
