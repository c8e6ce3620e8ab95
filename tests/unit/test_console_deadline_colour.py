"""The colour of an open case in the console: green, yellow after the warning, red overdue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from services.dispatch.deadline_colour import Colour, case_colour, clock_colour

WARN = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DUE = WARN + timedelta(hours=4)


@dataclass(frozen=True)
class Clock:
    warn_at: datetime = WARN
    due_at: datetime = DUE
    stopped_at: datetime | None = None


@pytest.mark.parametrize(
    ("now", "colour"),
    [
        (WARN - timedelta(seconds=1), Colour.GREEN),
        (WARN, Colour.YELLOW),  # the warning falls at warn_at
        (DUE - timedelta(seconds=1), Colour.YELLOW),
        (DUE, Colour.RED),  # overdue at the deadline itself
        (DUE + timedelta(days=3), Colour.RED),
    ],
)
def test_a_running_clock_turns_yellow_at_its_warning_and_red_at_its_deadline(
    now: datetime, colour: Colour
) -> None:
    assert clock_colour(Clock(), now) is colour


def test_a_stopped_clock_has_no_colour_even_if_it_stopped_late() -> None:
    assert clock_colour(Clock(stopped_at=DUE + timedelta(hours=1)), DUE + timedelta(days=1)) is None


def test_a_case_takes_the_worst_colour_of_its_running_clocks() -> None:
    now = WARN + timedelta(minutes=1)
    later = Clock(warn_at=WARN + timedelta(days=1), due_at=DUE + timedelta(days=2))
    overdue_but_stopped = Clock(due_at=WARN, stopped_at=WARN)
    assert case_colour([later], now) is Colour.GREEN
    assert case_colour([later, Clock()], now) is Colour.YELLOW
    assert case_colour([later, Clock(due_at=now)], now) is Colour.RED
    assert case_colour([later, overdue_but_stopped], now) is Colour.GREEN


def test_a_case_without_running_clocks_has_no_colour() -> None:
    assert case_colour([], WARN) is None
    assert case_colour([Clock(stopped_at=WARN)], DUE) is None


def test_a_clock_is_provisional_from_its_announcement_until_it_is_counted_again() -> None:
    from uuid import uuid4

    from services.dispatch.deadline_colour import provisional_clocks

    case, other = uuid4(), uuid4()
    due = "2027-01-13T01:00:00Z"
    announced = {
        "deadlines": [
            {"kind": "first_response", "due_at": due, "provisional_reason": None},
            {"kind": "resolution", "due_at": due, "provisional_reason": "no notice for 2027"},
        ]
    }
    reopened = {"deadlines": [{"kind": "resolution", "round": 2, "provisional_reason": "2027"}]}
    recounted = {"kind": "resolution", "round": 1, "due_at": due}
    assert provisional_clocks(
        [(case, "whistle.deadlines.set", announced), (other, "whistle.deadlines.set", announced)]
    ) == {(case, "resolution", 1), (other, "resolution", 1)}
    assert provisional_clocks(
        [
            (case, "whistle.deadlines.set", announced),
            (case, "whistle.deadlines.set", reopened),
            (case, "whistle.deadline.recomputed", recounted),
        ]
    ) == {(case, "resolution", 2)}
