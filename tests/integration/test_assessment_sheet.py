"""The printable assessment sheet (派驻人员考核表, issue #15, item 1): the township's opinions
(``whistle.staff.assessed``) and the officers' figures, recorded through the real Recorder into
a freshly migrated ledger, rendered by ``GET /v1/assessments/sheet`` for the unit's township,
its seconding department and the county — and for no one else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from uuid import uuid4

import httpx
import pytest

from contracts.envelope import CloudEvent, new_event
from contracts.events import CaseLegalReviewDecided, StaffAssessed
from services.ledger import assessment_api
from services.runtime.db import Sessions
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_kpis import at, ledger_router, record, script, sessions
from tests.integration.test_kpis_assessment import handled
from tests.integration.test_kpis_that_hold import rated
from tests.support.tips import bearer

__all__ = ["sessions"]  # the fixture, shared with test_kpis.py

SQUAD, OFFICER = "T03-SCJGJ", "S0077"  # 城关镇市场监管派驻组, 段保平


@pytest.fixture
async def ledger(sessions: Sessions, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with ledger_router(sessions, settings, assessment_api.router) as (client, _):
        yield client


def assessed(grade: str, opinion: str, when: datetime) -> CloudEvent:
    data = StaffAssessed(
        assessment_id=uuid4(),
        staff_id=OFFICER,
        unit_id=SQUAD,
        department_code="SCJGJ",
        township_code="T03",
        period="2026-12",
        grade=grade,  # type: ignore[arg-type]
        opinion=opinion,
        seal="城关镇人民政府",
        assessed_by="leader-T03",
        assessed_at=when,
    )
    return new_event("whistle/dispatch", OFFICER, data, when)


async def test_the_sheet_shows_each_officers_figures_and_the_townships_sealed_opinion(
    sessions: Sessions, ledger: httpx.AsyncClient, token: TokenFactory
) -> None:
    """December 2026: 段保平 resolved two cases for the squad, one on time (rated satisfied),
    one late; his legal review of the first was returned once. The township first graded him
    基本称职 and then, on 18 December, 称职 — recorded in the other order: the later holds.
    Expected: 办结 2, 按期 1/2, 退单 0, 满意 1/1, 法制审核退回 1/1, 称职."""
    a, b = script(), script()
    review = a.step(
        CaseLegalReviewDecided,
        at(3),
        SQUAD,
        2,
        "S0900",
        review_id=uuid4(),
        approved=False,
        opinion="处罚依据不充分",
        requested_by=OFFICER,
        requested_at=at(3) - timedelta(hours=1),
    )
    await record(
        sessions,
        [
            *handled(a, at(2), OFFICER, late=False, unit=SQUAD),
            review,
            rated(a, a.tip_id, "satisfied", "wechat", at(12)),
            *handled(b, at(2), OFFICER, late=True, unit=SQUAD),
        ],
    )
    await record(sessions, [assessed("competent", "工作认真，按期办结率有待提高。", at(18))])
    await record(sessions, [assessed("basically_competent", "初评。", at(16))])

    params = {"unit": SQUAD, "period": "month", "at": "2026-12-01"}
    for role, scopes in (
        ("township_leader", ("township:T03",)),
        ("county_department", ("dept:SCJGJ",)),
        ("auditor", ()),
    ):
        answer = await ledger.get(
            "/v1/assessments/sheet", params=params, headers=bearer(token, role, *scopes)
        )
        assert answer.status_code == 200, (role, answer.text)
        assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert "派驻人员考核表" in page and "城关镇市场监管派驻组" in page and "2026-12" in page
    row = page.split("<td>段保平</td>")[1].split("</tr>")[0]
    cells = [cell.split("</td>")[0] for cell in row.split("<td>")[1:]]
    assert cells == [
        OFFICER,
        "2",
        "1/2（50.0%）",
        "0",
        "1/1（100.0%）",
        "1/1",
        "称职",
        "工作认真，按期办结率有待提高。",
    ]
    assert "未出具" in page  # the squad's other officers: no opinion yet
    assert "乡镇（街道）意见（盖章）：城关镇人民政府" in page and "盖章处" in page

    for role, scopes in (
        ("township_leader", ("township:T01",)),
        ("county_department", ("dept:JTYSJ",)),
    ):
        other = await ledger.get(
            "/v1/assessments/sheet", params=params, headers=bearer(token, role, *scopes)
        )
        assert other.status_code == 404 and other.json()["title"] == "未找到派驻机构"
    refused = await ledger.get(
        "/v1/assessments/sheet", params=params, headers=bearer(token, "dispatcher", "township:T03")
    )
    assert refused.status_code == 403
