"""Which lifecycle action may follow which, and who may take it."""

from __future__ import annotations

import pytest

from services.dispatch.lifecycle import (
    COUNTY,
    DISPATCHER,
    UNIT,
    Action,
    Allowed,
    Refused,
    Status,
    check,
)

ANYONE = frozenset({DISPATCHER, UNIT, COUNTY})


@pytest.mark.parametrize(
    ("status", "action", "actor", "to"),
    [
        (Status.TRIAGE, Action.ASSIGN, DISPATCHER, Status.ASSIGNED),
        (Status.ASSIGNED, Action.ACCEPT, UNIT, Status.ACCEPTED),
        (Status.ACCEPTED, Action.START, UNIT, Status.IN_PROGRESS),
        (Status.ACCEPTED, Action.RESOLVE, UNIT, Status.RESOLVED),  # 即时解决 after accepting
        (Status.IN_PROGRESS, Action.PROGRESS, UNIT, Status.IN_PROGRESS),
        (Status.IN_PROGRESS, Action.RESOLVE, UNIT, Status.RESOLVED),
        (Status.RESOLVED, Action.CLOSE, DISPATCHER, Status.CLOSED),
        (Status.RESOLVED, Action.REOPEN, DISPATCHER, Status.IN_PROGRESS),
        (Status.CLOSED, Action.REOPEN, COUNTY, Status.IN_PROGRESS),
        (Status.ARBITRATION, Action.ASSIGN, COUNTY, Status.ASSIGNED),
    ],
)
def test_the_allowed_steps(status: Status, action: Action, actor: str, to: Status) -> None:
    assert check(status, action, frozenset({actor})) == Allowed(to)


def test_a_first_rejection_returns_the_case_to_the_township_queue() -> None:
    assert check(Status.ASSIGNED, Action.REJECT, frozenset({UNIT}), rejections=0) == Allowed(
        Status.TRIAGE
    )


def test_a_second_rejection_goes_to_county_arbitration() -> None:
    assert check(Status.ASSIGNED, Action.REJECT, frozenset({UNIT}), rejections=1) == Allowed(
        Status.ARBITRATION
    )


def test_only_the_county_assigns_a_case_in_arbitration() -> None:
    refused = check(Status.ARBITRATION, Action.ASSIGN, frozenset({DISPATCHER}))
    assert isinstance(refused, Refused)
    assert "county" in refused.reason
    assert refused.allowed == (Action.ASSIGN,)


@pytest.mark.parametrize(
    ("status", "action", "actor"),
    [
        (Status.ASSIGNED, Action.ACCEPT, DISPATCHER),  # the unit accepts, not the dispatcher
        (Status.IN_PROGRESS, Action.RESOLVE, DISPATCHER),
        (Status.RESOLVED, Action.CLOSE, UNIT),  # a unit does not close its own case
        (Status.TRIAGE, Action.ASSIGN, UNIT),
    ],
)
def test_the_wrong_actor_is_refused(status: Status, action: Action, actor: str) -> None:
    assert isinstance(check(status, action, frozenset({actor})), Refused)


def test_an_impossible_step_names_the_possible_ones() -> None:
    refused = check(Status.ACCEPTED, Action.CLOSE, ANYONE)
    assert isinstance(refused, Refused)
    assert set(refused.allowed) == {Action.START, Action.RESOLVE}


def test_a_closed_case_can_only_be_reopened() -> None:
    for action in Action:
        verdict = check(Status.CLOSED, action, ANYONE)
        assert isinstance(verdict, Allowed) == (action is Action.REOPEN)
