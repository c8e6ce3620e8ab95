"""Which lifecycle action may follow which, and who may take it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts.cases import CaseStatus
from services.dispatch.lifecycle import (
    COUNTY,
    DISPATCHER,
    UNIT,
    Action,
    Allowed,
    FollowUp,
    Refused,
    check,
    closes_at,
)

ANYONE = frozenset({DISPATCHER, UNIT, COUNTY})


@pytest.mark.parametrize(
    ("status", "action", "actor", "to"),
    [
        (CaseStatus.TRIAGE, Action.ASSIGN, DISPATCHER, CaseStatus.ASSIGNED),
        (CaseStatus.ASSIGNED, Action.ACCEPT, UNIT, CaseStatus.ACCEPTED),
        (CaseStatus.ACCEPTED, Action.START, UNIT, CaseStatus.IN_PROGRESS),
        (
            CaseStatus.ACCEPTED,
            Action.RESOLVE,
            UNIT,
            CaseStatus.RESOLVED,
        ),  # 即时解决 after accepting
        (CaseStatus.IN_PROGRESS, Action.PROGRESS, UNIT, CaseStatus.IN_PROGRESS),
        (CaseStatus.IN_PROGRESS, Action.RESOLVE, UNIT, CaseStatus.RESOLVED),
        (CaseStatus.RESOLVED, Action.CLOSE, DISPATCHER, CaseStatus.CLOSED),
        (CaseStatus.RESOLVED, Action.REOPEN, DISPATCHER, CaseStatus.IN_PROGRESS),
        (CaseStatus.CLOSED, Action.REOPEN, COUNTY, CaseStatus.IN_PROGRESS),
        (CaseStatus.ARBITRATION, Action.ASSIGN, COUNTY, CaseStatus.ASSIGNED),
    ],
)
def test_the_allowed_steps(status: CaseStatus, action: Action, actor: str, to: CaseStatus) -> None:
    assert check(status, action, frozenset({actor})) == Allowed(to)


def test_a_first_rejection_returns_the_case_to_the_township_queue() -> None:
    assert check(CaseStatus.ASSIGNED, Action.REJECT, frozenset({UNIT}), rejections=0) == Allowed(
        CaseStatus.TRIAGE
    )


def test_a_second_rejection_goes_to_county_arbitration() -> None:
    assert check(CaseStatus.ASSIGNED, Action.REJECT, frozenset({UNIT}), rejections=1) == Allowed(
        CaseStatus.ARBITRATION
    )


def test_only_the_county_assigns_a_case_in_arbitration() -> None:
    refused = check(CaseStatus.ARBITRATION, Action.ASSIGN, frozenset({DISPATCHER}))
    assert isinstance(refused, Refused)
    assert "county" in refused.reason
    assert refused.allowed == (Action.ASSIGN,)


@pytest.mark.parametrize(
    ("status", "action", "actor"),
    [
        (CaseStatus.ASSIGNED, Action.ACCEPT, DISPATCHER),  # the unit accepts, not the dispatcher
        (CaseStatus.IN_PROGRESS, Action.RESOLVE, DISPATCHER),
        (CaseStatus.RESOLVED, Action.CLOSE, UNIT),  # a unit does not close its own case
        (CaseStatus.TRIAGE, Action.ASSIGN, UNIT),
    ],
)
def test_the_wrong_actor_is_refused(status: CaseStatus, action: Action, actor: str) -> None:
    assert isinstance(check(status, action, frozenset({actor})), Refused)


def test_an_impossible_step_names_the_possible_ones() -> None:
    refused = check(CaseStatus.ACCEPTED, Action.CLOSE, ANYONE)
    assert isinstance(refused, Refused)
    assert set(refused.allowed) == {Action.START, Action.RESOLVE, Action.CONTACT}


def test_a_closed_case_can_only_be_reopened() -> None:
    for action in Action:
        verdict = check(CaseStatus.CLOSED, action, ANYONE)
        assert isinstance(verdict, Allowed) == (action is Action.REOPEN)


RESOLVED = datetime(2026, 12, 1, 2, tzinfo=UTC)
WINDOW = timedelta(days=3)


@pytest.mark.parametrize(
    ("followed_up_at", "now", "may_close_at"),
    [
        (None, RESOLVED, RESOLVED + WINDOW),  # just resolved: the citizen has not been heard
        (None, RESOLVED + WINDOW - timedelta(seconds=1), RESOLVED + WINDOW),
        (None, RESOLVED + WINDOW, None),  # the window has passed: a silent citizen
        (RESOLVED + timedelta(hours=1), RESOLVED + timedelta(hours=1), None),  # 回访 recorded
    ],
)
def test_a_resolved_case_closes_after_its_follow_up_or_its_window(
    followed_up_at: datetime | None, now: datetime, may_close_at: datetime | None
) -> None:
    assert closes_at(FollowUp(RESOLVED, followed_up_at), now, WINDOW) == may_close_at


def test_a_case_resolved_before_the_rule_has_no_window_to_wait_for() -> None:
    assert closes_at(FollowUp(None, None), RESOLVED, WINDOW) is None


@pytest.mark.parametrize("status", [CaseStatus.ACCEPTED, CaseStatus.IN_PROGRESS])
def test_the_unit_records_its_contact_with_the_citizen_without_changing_the_status(
    status: CaseStatus,
) -> None:
    assert check(status, Action.CONTACT, frozenset({UNIT})) == Allowed(status)
    assert isinstance(check(status, Action.CONTACT, frozenset({DISPATCHER})), Refused)
