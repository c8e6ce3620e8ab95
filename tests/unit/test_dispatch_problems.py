"""Every refusal of dispatch's case service reaches a router as the problem it always was."""

from __future__ import annotations

from uuid import UUID

import pytest

from reference.county import DEFAULT_ENTRUSTED_CEILING
from services.dispatch import authority
from services.dispatch.errors import (
    AdmissionRequired,
    AssignmentNotAuthorised,
    AssignmentRefusal,
    AssignmentRefused,
    BeyondEntrustment,
    CaseNotFound,
    DispatchError,
    NotAwaitingAdmission,
    NotAwaitingLegalReview,
    NotPermitted,
    SplitRefused,
    StaleVersion,
    TipNotOfCase,
    TransitionRefused,
    WhistleRefused,
)
from services.dispatch.lifecycle import Action
from services.dispatch.merging import SplitRefusal
from services.dispatch.problems import answered_as_problems, problem
from services.dispatch.whistles import Refusal
from services.runtime.problems import Problem

CASE = UUID("01890000-0000-7000-8000-000000000001")


@pytest.mark.parametrize(
    ("error", "status", "title", "extensions"),
    [
        (CaseNotFound(CASE), 404, "Not Found", {}),
        (NotPermitted("no"), 403, "Forbidden", {}),
        (StaleVersion(3), 412, "Precondition Failed", {}),
        (
            TransitionRefused("a case that is closed cannot be accepted", (Action.REOPEN,)),
            409,
            "Conflict",
            {"allowed_actions": ["reopen"]},
        ),
        (AdmissionRequired(), 409, "Conflict", {"allowed_actions": []}),
        (NotAwaitingAdmission("no"), 409, "Conflict", {}),
        (NotAwaitingLegalReview("no"), 409, "Conflict", {}),
        (
            BeyondEntrustment("超出委托范围：…", DEFAULT_ENTRUSTED_CEILING),
            422,
            "超出委托范围",
            {"entrusted_ceiling": {"penalties": ["warning", "fine"], "max_fine_yuan": 200}},
        ),
        (AssignmentRefused(AssignmentRefusal.UNKNOWN_UNIT, "x"), 422, "Unknown unit", {}),
        (AssignmentRefused(AssignmentRefusal.FOREIGN_UNIT, "x"), 403, "Forbidden", {}),
        (AssignmentRefused(AssignmentRefusal.MATTER_NEEDED, "x"), 422, "Matter needed", {}),
        (
            AssignmentRefused(AssignmentRefusal.STAFF_CANNOT_ENFORCE, "x"),
            422,
            "Staff cannot enforce",
            {},
        ),
        (
            AssignmentNotAuthorised(
                (authority.Refusal(authority.AuthorityRefusal.NOT_ADMITTED, "须经县政府准入批准"),)
            ),
            422,
            "Assignment not authorised",
            {
                "rules": ["not_admitted"],
                "refusals": [{"rule": "not_admitted", "reason": "须经县政府准入批准"}],
            },
        ),
        (SplitRefused(SplitRefusal.ORIGINAL_TIP, CASE), 409, "Conflict", {}),
        (SplitRefused(SplitRefusal.CLOSED, CASE), 409, "Conflict", {}),
        (SplitRefused(SplitRefusal.NOT_MERGED, CASE), 422, "Not a merged tip", {}),
        (
            WhistleRefused((Refusal("a", "甲"), Refusal("b", "乙"))),
            422,
            "Whistle not allowed",
            {
                "rules": ["a", "b"],
                "refusals": [{"rule": "a", "reason": "甲"}, {"rule": "b", "reason": "乙"}],
            },
        ),
    ],
)
def test_each_refusal_has_its_problem(
    error: DispatchError, status: int, title: str, extensions: dict[str, object]
) -> None:
    answered = problem(error)
    assert (answered.status, answered.title, answered.extensions) == (status, title, extensions)


def test_a_stale_version_sends_the_current_etag() -> None:
    assert problem(StaleVersion(7)).headers == {"ETag": '"7"'}


def test_a_refusal_no_router_meets_is_not_hidden_behind_a_client_error() -> None:
    with pytest.raises(TipNotOfCase):
        problem(TipNotOfCase(CASE, CASE))


def test_within_the_block_a_refusal_leaves_as_its_problem() -> None:
    with pytest.raises(Problem) as raised, answered_as_problems():
        raise CaseNotFound(CASE)
    assert raised.value.detail == f"No case {CASE} that you may see."
