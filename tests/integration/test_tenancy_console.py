"""The dispatcher console and dispatch's reads per county (issue 18, item 4; docs/scale.md,
"Tenancy"): a triage row's routing suggestions, the admission and legal-review queues' forms,
the reference listing and the open-case gauge take their townships, units, staff and matters
from the case's county (a row about a case) or the token's (a form about none; a city token,
``county:*``, chooses). A 桃林县 dispatcher sees only 桃林县's; a 清溪县 token never sees a
桃林县 name."""

from __future__ import annotations

import httpx
import pytest

from reference.county import ReferenceData
from services.dispatch.metrics import refresh_open_cases
from services.dispatch.routing import ADMISSION_QUEUE
from services.dispatch.wiring import current_counties
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.integration.test_authority import PROPOSAL
from tests.integration.test_metrics import sample
from tests.support.tips import act, bearer, waiting_case

QINGXI, TAOLIN = "140999", "140998"
# Words the catalogue knows (占道经营 and more): suggestions that routing gives to a unit.
OCCUPYING = "路边有人占道经营，还在店外摆摊，噪音也大"
WAGES = "公司拖欠工资不发，要求劳动仲裁"  # 欠薪: an out-of-list matter (LD-005)


def _names(reference: ReferenceData) -> set[str]:
    """The names a reader would recognise as the county's: itself, its places and units."""
    return (
        {reference.county.name}
        | {t.name for t in reference.townships.values()}
        | {v.name for _, v in reference.villages.values()}
        | {u.name for u in reference.units.values()}
    )


@pytest.fixture
def taolin(dispatch: tuple[httpx.AsyncClient, Runtime]) -> ReferenceData:
    return current_counties(dispatch[1])[TAOLIN]


@pytest.fixture
def taolin_only(dispatch: tuple[httpx.AsyncClient, Runtime]) -> set[str]:
    """桃林县's names that 清溪县's data does not also hold (two counties may share a utility's
    name, never a township's or its units')."""
    counties = current_counties(dispatch[1])
    return _names(counties[TAOLIN]) - _names(counties[QINGXI])


def _suggests_only(row: dict[str, list[dict[str, str]]], taolin: ReferenceData) -> None:
    """Each suggestion routing gives to a unit names one of 桃林县's units in 桃源街道 (L01)."""
    given = [s for s in row["suggestions"] if s["unit_id"]]
    assert given, row["suggestions"]
    for suggestion in given:
        assert suggestion["unit_id"].startswith("L01-"), suggestion
        assert suggestion["unit_name"] == taolin.units[suggestion["unit_id"]].name


async def test_a_taolin_triage_row_suggests_only_taolin_units(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    token: TokenFactory,
    taolin: ReferenceData,
    taolin_only: set[str],
) -> None:
    client, runtime = dispatch
    case = await waiting_case(runtime, "L01", OCCUPYING, county=TAOLIN)
    # 桃林县's dispatcher of every township: its queues are 桃林县's townships.
    dispatcher = bearer(token, "dispatcher", f"county:{TAOLIN}", "township:*")

    answer = await client.get("/v1/console/triage", headers=dispatcher)
    assert answer.status_code == 200, answer.text
    row = {r["id"]: r for r in answer.json()}[str(case)]
    assert (row["county"], row["township_name"]) == (TAOLIN, "桃源街道")
    _suggests_only(row, taolin)

    # The JSON API's queue and the case page suggest the same.
    queue = await client.get("/v1/queues/triage?township=L01", headers=dispatcher)
    assert queue.status_code == 200, queue.text
    _suggests_only({r["case_id"]: r for r in queue.json()}[str(case)], taolin)
    page = (await client.get(f"/v1/console/cases/{case}", headers=dispatcher)).json()
    _suggests_only(page, taolin)
    assert {u["id"] for u in page["assignable_units"]} <= set(taolin.units)

    # 清溪县's dispatcher of every township (a token naming no county: the default's) sees
    # neither the case nor a name of 桃林县 in its triage queue.
    qingxi = bearer(token, "dispatcher", "township:*")
    listed = await client.get("/v1/console/triage", headers=qingxi)
    assert str(case) not in {r["id"] for r in listed.json()}
    assert not {name for name in taolin_only if name in listed.text}


async def test_the_admission_and_legal_review_forms_list_only_the_tokens_county(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    token: TokenFactory,
    taolin: ReferenceData,
) -> None:
    client, runtime = dispatch
    case = await waiting_case(runtime, "L01", WAGES, county=TAOLIN, queue=ADMISSION_QUEUE)
    supervisor = bearer(token, "county_supervisor", f"county:{TAOLIN}")
    reviewer = bearer(token, "legal_reviewer", f"county:{TAOLIN}")
    # The forms' lists (townships, units and their staff's units, matters) are 桃林县's.
    for headers in (supervisor, reviewer):
        me = (await client.get("/v1/console/me", headers=headers)).json()
        assert me["county"] == {"code": TAOLIN, "name": "桃林县"}
        assert me["counties"] == [{"code": TAOLIN, "name": "桃林县"}]
        assert [t["code"] for t in me["townships"]] == ["L01", "L02"]
        assert {u["id"] for u in me["units"]} == set(taolin.units)
        assert {m["code"] for m in me["matters"]} == set(taolin.items)

    rows = (await client.get("/v1/console/admission", headers=supervisor)).json()
    row = {r["id"]: r for r in rows}[str(case)]
    assert (row["county"], row["township_name"]) == (TAOLIN, "桃源街道")
    assert {s["unit_id"] for s in row["suggestions"] if s["unit_id"]} <= set(taolin.units)

    # Proposed to 桃林县's 司法所: the county government's approval row names it from 桃林县.
    proposal = {**PROPOSAL, "unit_id": "L01-SFJ"}
    proposed = await act(client, case, "admission", supervisor, proposal)
    assert proposed.status_code == 200, proposed.text
    government = bearer(token, "county_government", f"county:{TAOLIN}")
    approval = (await client.get("/v1/console/approval", headers=government)).json()
    waiting = {r["id"]: r for r in approval}[str(case)]["proposal"]
    assert waiting["unit_name"] == taolin.units["L01-SFJ"].name == "桃源街道司法所"
    assert waiting["matter_name"] == taolin.items["LD-005"].name


async def test_a_city_token_chooses_its_county_and_another_token_cannot(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory, taolin: ReferenceData
) -> None:
    client, _ = dispatch
    city = bearer(token, "county_supervisor", "county:*")
    me = (await client.get("/v1/console/me", headers=city)).json()
    assert me["county"]["code"] == QINGXI  # the default, until it chooses
    assert {c["code"] for c in me["counties"]} == {QINGXI, TAOLIN}
    chosen = (await client.get(f"/v1/console/me?county={TAOLIN}", headers=city)).json()
    assert chosen["county"]["code"] == TAOLIN
    assert {u["id"] for u in chosen["units"]} == set(taolin.units)
    listing = (await client.get(f"/v1/reference?county={TAOLIN}", headers=city)).json()
    assert (listing["county"], listing["townships"]) == (TAOLIN, 2)

    qingxi = bearer(token, "county_supervisor")
    for read in (f"/v1/console/me?county={TAOLIN}", f"/v1/reference?county={TAOLIN}"):
        refused = await client.get(read, headers=qingxi)
        assert refused.status_code == 404, read
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["title"] == "未找到"
        assert refused.json()["detail"] == f"没有您可查看的县：{TAOLIN}。"
    assert (await client.get("/v1/console/me?county=T01", headers=city)).status_code == 422


async def test_the_reference_listing_is_the_tokens_county(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory, taolin: ReferenceData
) -> None:
    client, _ = dispatch
    taolin_dispatcher = bearer(token, "dispatcher", f"county:{TAOLIN}", "township:L01")
    listing = (await client.get("/v1/reference", headers=taolin_dispatcher)).json()
    assert (listing["county"], listing["county_name"]) == (TAOLIN, "桃林县")
    assert (listing["townships"], listing["units"]) == (2, len(taolin.units))
    assert listing["version"] == taolin.version
    qingxi_dispatcher = bearer(token, "dispatcher", "township:T01")
    own = (await client.get("/v1/reference", headers=qingxi_dispatcher)).json()
    assert (own["county"], own["county_name"]) == (QINGXI, "清溪县")


async def test_a_qingxi_token_never_sees_a_taolin_name(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory, taolin_only: set[str]
) -> None:
    client, runtime = dispatch
    await waiting_case(runtime, "L02", OCCUPYING, county=TAOLIN)
    await waiting_case(runtime, "L02", WAGES, county=TAOLIN, queue=ADMISSION_QUEUE)
    reads = [
        "/v1/console/me",
        "/v1/console/triage",
        "/v1/console/admission",
        "/v1/console/approval",
        "/v1/console/legal-review",
        "/v1/console/cases",
        "/v1/queues/admission",
        "/v1/reference",
    ]
    for role, scopes in (
        ("county_supervisor", ()),
        ("dispatcher", ("township:*",)),
        ("legal_reviewer", (f"county:{QINGXI}",)),
    ):
        headers = bearer(token, role, *scopes)
        for read in reads:
            answer = await client.get(read, headers=headers)
            if answer.status_code == 403:  # not this role's read
                continue
            assert answer.status_code == 200, (role, read, answer.text)
            assert not {name for name in taolin_only if name in answer.text}, (role, read)


async def test_the_open_case_gauge_counts_the_second_countys_townships(
    dispatch: tuple[httpx.AsyncClient, Runtime],
) -> None:
    """One series per township code (unique across counties), 桃林县's among them: a case in
    桃源街道 counts under L01, not under ``other``."""
    _, runtime = dispatch
    before = await refresh_open_cases(runtime)
    await waiting_case(runtime, "L01", OCCUPYING, county=TAOLIN)
    after = await refresh_open_cases(runtime)
    assert after[("triage", "L01")] == before[("triage", "L01")] + 1
    assert after[("triage", "other")] == before[("triage", "other")]
    assert (
        sample("whistle_dispatch_open_cases", state="triage", township="L01")
        == after[("triage", "L01")]
    )
    assert sample("whistle_dispatch_open_cases", state="assigned", township="L02") >= 0
