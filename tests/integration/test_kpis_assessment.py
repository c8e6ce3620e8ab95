"""考核 figures (issue #15, item 1): per officer and per seconded unit, per period — cases
handled, on time, rejected, satisfaction and legal-review returns. Real CloudEvents through the
real Recorder into a freshly migrated ledger, then ``GET /v1/kpis?group_by=staff|unit``; the
figures are worked out by hand in the docstring."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import uuid4

import httpx
import pytest

from contracts.envelope import CloudEvent
from contracts.events import (
    CaseClosed,
    CaseLegalReviewDecided,
    CaseRejected,
    CaseResolved,
)
from services.runtime.db import Sessions
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.integration.test_kpis import (
    SQUAD,
    TEAM,
    Script,
    at,
    groups,
    kpis,
    record,
    report,
    script,
    sessions,
    value,
)
from tests.integration.test_kpis_that_hold import rated

__all__ = ["kpis", "sessions"]  # the fixtures, shared with test_kpis.py

LI, WANG = "S0101", "S0102"  # two officers of the seconded 城管 squad


def handled(
    s: Script, opened: datetime, officer: str, late: bool, version: int = 2, unit: str = SQUAD
) -> list[CloudEvent]:
    """Assigned to ``unit`` (the squad), resolved by ``officer`` (late or not) and closed."""
    due = opened + timedelta(days=7)
    resolved = due + timedelta(hours=5 if late else -5)
    return [
        s.opened(opened),
        s.assigned(opened, unit),
        s.deadlines(opened, None, due),
        s.step(CaseResolved, resolved, unit, version, officer, resolution="rectified", note="办结"),
        s.stopped("resolution", due, resolved),
        s.step(CaseClosed, resolved + timedelta(hours=1), unit, version + 1, officer),
    ]


def reviewed(s: Script, when: datetime, officer: str, approved: bool) -> CloudEvent:
    return s.step(
        CaseLegalReviewDecided,
        when,
        SQUAD,
        2,
        "S0900",  # the legal reviewer acts; the return counts for who asked
        review_id=uuid4(),
        approved=approved,
        opinion=None if approved else "处罚依据不充分",
        requested_by=officer,
        requested_at=when - timedelta(hours=1),
    )


async def test_assessment_figures_per_officer_and_seconded_unit(
    sessions: Sessions, kpis: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    """December 2026, every case in T03 and handled by the 城管 squad (SQUAD):

    A  resolved by 李 on time, closed, rated satisfied; his legal review of it was returned
       once (3 Dec), then approved (4 Dec)
    B  resolved by 李 late, closed, rated dissatisfied
    C  sent back (退单) by 王 on 5 Dec, then resolved by 王 on time, closed
    D  opened by the township's own team, resolved by 张 (not the squad's)

    李: handled (closed) 2, resolution clocks stopped 2, on time 1; rated 2, satisfied 1 → 50 %;
        legal reviews 2, returned 1; rejections 0
    王: handled 1, on time 1; rejections 1; no ratings, no legal reviews
    SQUAD: handled 3, on time 2; rejections 1; legal reviews 2, returned 1
    """
    a, b, c, d = script(), script(), script(), script()
    await record(
        sessions,
        [
            *handled(a, at(2), LI, late=False),
            reviewed(a, at(3), LI, approved=False),
            reviewed(a, at(4), LI, approved=True),
            rated(a, a.tip_id, "satisfied", "web", at(12)),
        ],
    )
    await record(
        sessions,
        [*handled(b, at(2), LI, late=True), rated(b, b.tip_id, "dissatisfied", "hotline", at(14))],
    )
    rejected = c.step(
        CaseRejected,
        at(5),
        SQUAD,
        2,
        WANG,
        reason="不属于本单位职责",
        rejections=1,
        queue="township:T03",
    )
    await record(sessions, [rejected, *handled(c, at(5), WANG, late=False, version=3)])
    await record(sessions, handled(d, at(6), "S0001", late=False, unit=TEAM))
    client, _ = kpis

    staff = groups(await report(client, token, at="2026-12-01", group_by="staff"))
    li, wang = staff[LI], staff[WANG]
    assert (li["counts"]["closed"], li["counts"]["resolution_stopped"]) == (2, 2)
    assert value(li, "on_time_resolution_rate") == (pytest.approx(0.5), 1, 2)
    assert value(li, "satisfaction_rate") == (pytest.approx(0.5), 1, 2)
    assert (li["counts"]["legal_reviews"], li["counts"]["legal_review_returns"]) == (2, 1)
    assert li["counts"]["rejections"] == 0
    assert value(wang, "on_time_resolution_rate") == (1.0, 1, 1)
    assert wang["counts"]["rejections"] == 1
    assert wang["rejections_by_reason"] == [{"reason": "不属于本单位职责", "count": 1}]
    assert (wang["counts"]["legal_reviews"], wang["counts"]["rated"]) == (0, 0)
    assert "S0900" not in staff  # the reviewer reviewed; the returns are not his
    # Counts add up: the squad's officers make the squad.
    unit = groups(await report(client, token, at="2026-12-01", group_by="unit"))[SQUAD]
    for name in ("closed", "resolution_on_time", "rejections", "legal_review_returns", "rated"):
        assert unit["counts"][name] == li["counts"][name] + wang["counts"][name]
    assert (unit["counts"]["closed"], unit["counts"]["legal_review_returns"]) == (3, 1)
    [county] = (await report(client, token, at="2026-12-01"))["groups"]
    assert county["counts"]["legal_reviews"] == 2
    assert "legal_review_returns" in (await report(client, token))["count_definitions"]
