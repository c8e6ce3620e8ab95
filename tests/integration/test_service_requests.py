"""A public-service request through the pipeline (issue #21, item 5): a citizen's "the street
light is out" reaches dispatch over the broker, is classified as the catalogue's service item
GF-001, assigned to the township's 城建办 without any enforcement check, and escalation starts its
clocks from the item's deadline policy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from services.escalation.app import create_app as create_escalation
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.conftest import MovableClock
from tests.integration.test_authority import _case
from tests.support.infra import eventually
from tests.support.tips import act, bearer, case_events, case_of, send_tip


@pytest.fixture(scope="module")
async def escalation(migrated: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Escalation in process, consuming what dispatch publishes."""
    app = create_escalation(migrated, MovableClock(datetime(2026, 12, 7, 2, tzinfo=UTC)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_a_street_light_goes_to_the_townships_service_station_with_deadlines(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    escalation: httpx.AsyncClient,
    token: TokenFactory,
) -> None:
    _, runtime = dispatch
    # The issue's words: before the service part of the catalogue this waited in 城关镇's manual
    # triage with "未命中关键词".
    tip = await send_tip(runtime, "路灯坏了，晚上黑乎乎的", "T03V02G01")
    case = await case_of(runtime, tip)
    assert (case.status, case.matter_code, case.unit_id) == ("assigned", "GF-001", "T03-CJB")
    assert case.routing["rule"] == "service"
    assert "公共服务诉求（非执法事项），由责任单位城关镇城建办办理" in case.routing["explanation"]
    assert case.staff_id is not None  # anyone of the station: nobody needs a 执法证
    assert case.acting is None  # handled in no enforcement capacity

    assigned = next(
        e for e in await case_events(runtime, case.id) if e["type"] == "whistle.case.assigned"
    )
    data = assigned["data"]
    assert (data["authority"], data["deadline_policy"]) == ("service", "P-GENERAL")
    assert data.get("acting_in_name_of") is None and data.get("legal_basis") is None

    headers = {"authorization": f"Bearer {token('auditor')}"}

    async def clocks() -> list[dict[str, object]] | None:
        answer = await escalation.get(f"/v1/cases/{case.id}/deadlines", headers=headers)
        return answer.json()["deadlines"] or None if answer.status_code == 200 else None

    deadlines = await eventually(clocks, what=f"the clocks of case {case.id}")
    assert {d["kind"] for d in deadlines} >= {"first_response", "resolution"}


async def test_a_dispatcher_gives_a_service_request_to_a_utility_and_no_enforcement_to_it(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    dispatcher = bearer(token, "dispatcher", "township:T03")
    # A water outage waiting in 城关镇's triage: the county's water company takes it, through
    # a person of its own named by the township's dispatcher, who holds no 执法证.
    water = await _case(runtime, "T03", "GF-007")
    answer = await act(
        client, water, "assign", dispatcher, {"unit_id": "ZLS-COUNTY", "staff_id": "S0592"}
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["unit_id"], answer.json()["staff_id"]) == ("ZLS-COUNTY", "S0592")
    # 占道经营 is claimed by 城关镇, yet its 城建办 holds no enforcement power.
    stall = await _case(runtime, "T03", "CG-001")
    refused = await act(client, stall, "assign", dispatcher, {"unit_id": "T03-CJB"})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["rules"] == ["not_enforcement_body"]
    assert "无行政执法权" in refused.json()["detail"]
