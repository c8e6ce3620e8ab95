"""Two counties on one stack (issue 18, item 4; docs/scale.md, "Tenancy"): intake and dispatch
in process over the shipped reference data, which holds 清溪县 (140999, the default) and
桃林县 (140998). A tip in each county becomes that county's case, with the county's tracking
prefix and the county on every event; each county's dispatcher sees only its own case — in the
list, the detail, the console — and another county's case is 404, as another township's is."""

from __future__ import annotations

from uuid import UUID

import httpx

from contracts.topics import CASES, TIPS
from services.dispatch.models import Case
from services.intake.models import Tip
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.support.tips import case_events, case_of, published, send_tip

QINGXI, TAOLIN = "140999", "140998"
# A point in 龙泉街道 (T01) of 清溪县, and the same one degree east: 桃源街道 (L01) of 桃林县.
IN_QINGXI = {"lat": 38.71, "lon": 113.31}
IN_TAOLIN = {"lat": 38.71, "lon": 114.31}
WORDS = "路口有人乱倒建筑垃圾"


async def _tip(client: httpx.AsyncClient, location: dict[str, float]) -> dict[str, str]:
    response = await client.post("/v1/tips", json={"text": WORDS, "location": location})
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_two_counties_on_one_stack_never_see_each_others_cases(
    intake: tuple[httpx.AsyncClient, Runtime],
    dispatch: tuple[httpx.AsyncClient, Runtime],
    token: TokenFactory,
) -> None:
    citizen, intake_runtime = intake
    staff, dispatch_runtime = dispatch
    bootstrap = intake_runtime.settings.kafka_bootstrap or ""

    qingxi_tip, taolin_tip = await _tip(citizen, IN_QINGXI), await _tip(citizen, IN_TAOLIN)
    # Each citizen's number carries their county's prefix.
    assert qingxi_tip["tracking_no"].startswith("QX")
    assert taolin_tip["tracking_no"].startswith("TL")
    async with intake_runtime.sessions() as session:
        tips = [await session.get(Tip, UUID(t["tip_id"])) for t in (qingxi_tip, taolin_tip)]
    assert [t.county for t in tips if t] == [QINGXI, TAOLIN]

    qingxi = await case_of(dispatch_runtime, UUID(qingxi_tip["tip_id"]))
    taolin = await case_of(dispatch_runtime, UUID(taolin_tip["tip_id"]))
    # Routed by each county's own reference data: its townships, its units.
    assert (qingxi.county, qingxi.township_code) == (QINGXI, "T01")
    assert (taolin.county, taolin.township_code) == (TAOLIN, "L01")
    assert taolin.unit_id is None or taolin.unit_id.startswith("L01-")

    # The events carry the right county, from intake's tip to dispatch's case.
    for tip, county in ((qingxi_tip, QINGXI), (taolin_tip, TAOLIN)):
        received = await published(bootstrap, TIPS, tip["tip_id"], "whistle.tip.received")
        assert received["county"] == county
    for case, county in ((qingxi, QINGXI), (taolin, TAOLIN)):
        opened = await published(bootstrap, CASES, str(case.id), "whistle.case.opened")
        assert opened["county"] == county
        assert {e["county"] for e in await case_events(dispatch_runtime, case.id)} == {county}

    # 清溪县's dispatcher holds a token from before tenancy (no county: the default county's);
    # 桃林县's names its county. A township:* of one county is not the other's townships.
    qingxi_dispatcher = _bearer(token("dispatcher", "township:T01"))
    taolin_dispatcher = _bearer(token("dispatcher", f"county:{TAOLIN}", "township:*"))
    for headers, own, other in (
        (qingxi_dispatcher, qingxi, taolin),
        (taolin_dispatcher, taolin, qingxi),
    ):
        await _sees_only(staff, headers, own, other)
    # The console names each county's places from its own reference data.
    me = (await staff.get("/v1/console/me", headers=taolin_dispatcher)).json()
    assert [t["code"] for t in me["townships"]] == ["L01", "L02"]
    rows = (await staff.get("/v1/console/cases", headers=taolin_dispatcher)).json()
    assert {r["township_name"] for r in rows if r["id"] == str(taolin.id)} == {"桃源街道"}

    # The city's own role (county:*) sees both.
    city = _bearer(token("county_supervisor", "county:*"))
    listed = {row["id"] for row in (await staff.get("/v1/cases", headers=city)).json()}
    assert {str(qingxi.id), str(taolin.id)} <= listed


async def _sees_only(
    staff: httpx.AsyncClient, headers: dict[str, str], own: Case, other: Case
) -> None:
    """The list, the detail, the console's list and page show ``own`` and never ``other``,
    which answers 404 to a read and to a step, exactly as another township's case does."""
    listed = (await staff.get("/v1/cases", headers=headers)).json()
    assert str(own.id) in {row["id"] for row in listed}
    assert str(other.id) not in {row["id"] for row in listed}
    assert {row["county"] for row in listed} == {own.county}
    detail = await staff.get(f"/v1/cases/{own.id}", headers=headers)
    assert detail.status_code == 200 and detail.json()["county"] == own.county

    console = (await staff.get("/v1/console/cases", headers=headers)).json()
    assert str(own.id) in {row["id"] for row in console}
    assert str(other.id) not in {row["id"] for row in console}
    assert (await staff.get(f"/v1/console/cases/{own.id}", headers=headers)).status_code == 200

    for read in (f"/v1/cases/{other.id}", f"/v1/console/cases/{other.id}"):
        refused = await staff.get(read, headers=headers)
        assert refused.status_code == 404, read
        assert refused.headers["content-type"].startswith("application/problem+json")
    step = await staff.post(
        f"/v1/cases/{other.id}/reject",
        json={"reason": "不属于本乡镇"},
        headers={**headers, "If-Match": f'"{other.version}"'},
    )
    assert step.status_code == 404
    assert step.headers["content-type"].startswith("application/problem+json")


async def test_an_event_its_producer_left_without_a_county_leaves_with_the_default(
    intake: tuple[httpx.AsyncClient, Runtime],
    dispatch: tuple[httpx.AsyncClient, Runtime],
) -> None:
    """A producer that names no county (escalation's, a tool's) publishes the default one:
    every event on the wire says its county, and dispatch takes it as the default county's."""
    _, intake_runtime = intake
    _, dispatch_runtime = dispatch
    tip_id = await send_tip(intake_runtime, WORDS, "T01V01G02")
    bootstrap = intake_runtime.settings.kafka_bootstrap or ""
    received = await published(bootstrap, TIPS, str(tip_id), "whistle.tip.received")
    assert received["county"] == QINGXI
    assert (await case_of(dispatch_runtime, tip_id)).county == QINGXI


async def test_a_department_refers_within_its_own_county(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    """移送 from a county department opens the case in the department's county (its token's),
    and a department cannot hand its matter to another county's township."""
    staff, _ = dispatch
    referral = {
        "department_code": "CGJ",
        "matter_code": "CG-001",
        "township_code": "L01",
        "grid_id": "L01V01G01",
        "place": "桃源社区路口",
        "facts": "巡查发现路口有人占道摆摊，影响通行，属桃源街道赋权事项，依法移送",
    }
    taolin_cgj = _bearer(token("county_department", f"county:{TAOLIN}", "dept:CGJ"))
    answer = await staff.post("/v1/referrals", json=referral, headers=taolin_cgj)
    assert answer.status_code == 201, answer.text
    assert (answer.json()["county"], answer.json()["township_code"]) == (TAOLIN, "L01")
    # 清溪县's department (a token naming no county: the default county's).
    qingxi_cgj = _bearer(token("county_department", "dept:CGJ"))
    refused = await staff.post("/v1/referrals", json=referral, headers=qingxi_cgj)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")


async def test_a_grid_workers_report_is_the_county_of_its_grid(
    intake: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = intake
    worker = _bearer(token("grid_worker", f"county:{TAOLIN}", "grid:L02V01G01"))
    report = {"grid_id": "L02V01G01", "text": "村口有人占道摆摊"}
    answer = await client.post("/v1/grid/reports", json=report, headers=worker)
    assert answer.status_code == 201, answer.text
    assert answer.json()["tracking_no"].startswith("TL")
    async with runtime.sessions() as session:
        tip = await session.get(Tip, UUID(answer.json()["tip_id"]))
    assert tip is not None and tip.county == TAOLIN
