"""The colour a dispatcher sees on an open case: how close its running clocks are to due.

green — every running clock is before its warning time; yellow — a clock passed its warning
time (escalation's ``whistle.deadline.warning`` falls then); red — a clock is overdue
(``whistle.deadline.overdue``). A case with no running clock (waiting in triage, resolved,
closed) has no colour. Plain data: the caller says what time it is.

A clock is also **provisional** (暂定) while escalation counted it Monday to Friday because the
business calendar lacked a year it reaches into: its ``DeadlinesSet`` gave a
``provisional_reason``, and no ``DeadlineRecomputed`` has counted it again since. The console
marks it, and shows a banner while any case it lists has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from contracts.events import DeadlineRecomputed, DeadlinesSet

LEGAL_REVIEW_CLOCK = "legal_review"
"""The clock of a decision waiting for legal review (法制审核): the legal reviewer's, not the
unit's; the legal review queue shows it per decision."""

ClockKey = tuple[UUID, str, int]
"""A case's clock: case id, kind, round."""


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


def provisional_clocks(
    events: Iterable[tuple[UUID, str, Mapping[str, Any]]],
) -> set[ClockKey]:
    """The clocks still provisional after ``events`` — (case id, event type, event data) of a
    case's deadline events, in the order they happened."""
    provisional: set[ClockKey] = set()
    for case_id, kind_of_event, data in events:
        if kind_of_event == DeadlinesSet.event_type:
            for deadline in data.get("deadlines", []):
                key = (case_id, deadline["kind"], deadline.get("round", 1))
                if deadline.get("provisional_reason"):
                    provisional.add(key)
                else:
                    provisional.discard(key)
        elif kind_of_event == DeadlineRecomputed.event_type and not data.get("whistle_id"):
            provisional.discard((case_id, data["kind"], data["round"]))
    return provisional
