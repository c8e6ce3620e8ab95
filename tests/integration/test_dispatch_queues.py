"""Queues and lists: the township triage queues, the county's admission queue (准入) and the
open-case list, each scoped to the caller."""

from __future__ import annotations

from uuid import UUID

import httpx

from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.integration.test_authority import PROPOSAL
from tests.support.tips import case_events, case_of, send_tip, waiting_case


def _bearer(token: TokenFactory, role: str, *scopes: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token(role, *scopes)}"}


async def test_a_dispatcher_sees_their_own_townships_triage_queue_with_suggestions(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    own = await waiting_case(runtime, "T03", "路边有人占道经营，还在店外摆摊，噪音也大")
    other = await waiting_case(runtime, "T01", "有人占道经营")
    as_t03 = _bearer(token, "dispatcher", "township:T03")

    answer = await client.get("/v1/queues/triage", headers=as_t03)
    assert answer.status_code == 200, answer.text
    rows = {UUID(r["case_id"]): r for r in answer.json()}
    assert own in rows and other not in rows
    row = rows[own]
    assert row["queue"] == "township:T03" and row["age_seconds"] >= 30 * 60
    assert row["reason"] == "待调度员人工分拨"
    suggestions = row["suggestions"]
    assert 1 <= len(suggestions) <= 3
    assert suggestions[0]["matter_code"] == "CG-001" and suggestions[0]["name"]
    assert [s["score"] for s in suggestions] == sorted(
        (s["score"] for s in suggestions), reverse=True
    )

    foreign = await client.get("/v1/queues/triage", params={"township": "T01"}, headers=as_t03)
    assert foreign.status_code == 403
    county = _bearer(token, "county_supervisor", "township:*")
    t01 = await client.get("/v1/queues/triage", params={"township": "T01"}, headers=county)
    assert other in {UUID(r["case_id"]) for r in t01.json()}
    assert own not in {UUID(r["case_id"]) for r in t01.json()}


async def test_the_open_case_list_is_scoped_and_filtered(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    t03 = await waiting_case(runtime, "T03", "垃圾乱倒")
    t01 = await waiting_case(runtime, "T01", "垃圾乱倒")
    as_t03 = _bearer(token, "dispatcher", "township:T03")
    mine = {UUID(c["id"]) for c in (await client.get("/v1/cases", headers=as_t03)).json()}
    assert t03 in mine and t01 not in mine
    asked = await client.get("/v1/cases", params={"township": "T01"}, headers=as_t03)
    assert asked.status_code == 200 and asked.json() == []
    assigned = await client.get("/v1/cases", params={"state": "assigned"}, headers=as_t03)
    assert t03 not in {UUID(c["id"]) for c in assigned.json()}
    county = _bearer(token, "county_supervisor", "township:*")
    both = await client.get(
        "/v1/cases", params={"township": ["T01", "T03"], "state": "triage"}, headers=county
    )
    assert {t01, t03} <= {UUID(c["id"]) for c in both.json()}


async def test_out_of_list_tips_wait_for_admission_and_are_admitted_or_declined(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    admitted_tip = await send_tip(runtime, "公司拖欠工伤待遇，劳动争议", "T05V01G01", hint="LD-005")
    declined_tip = await send_tip(runtime, "有人高息揽储", "T05V01G01", hint="GA-003")
    admitted, declined = await case_of(runtime, admitted_tip), await case_of(runtime, declined_tip)
    assert (admitted.status, admitted.queue) == ("triage", "admission")
    triage = (await case_events(runtime, admitted.id))[1]
    assert triage["type"] == "whistle.case.triage_required"
    assert triage["data"]["queue"] == "admission"

    county = _bearer(token, "county_supervisor", "township:*")
    dispatcher = _bearer(token, "dispatcher", "township:T05")
    queue = await client.get("/v1/queues/admission", headers=county)
    assert {admitted.id, declined.id} <= {UUID(r["case_id"]) for r in queue.json()}
    assert (await client.get("/v1/queues/admission", headers=dispatcher)).status_code == 403
    township_queue = await client.get("/v1/queues/triage", headers=dispatcher)
    assert admitted.id not in {UUID(r["case_id"]) for r in township_queue.json()}

    # Never silently assigned: the township cannot assign it around the county's decision.
    bypass = await client.post(
        f"/v1/cases/{admitted.id}/assign",
        json={"unit_id": "T05-RSJ", "matter_code": "LD-001"},
        headers={**dispatcher, "If-Match": '"1"'},
    )
    assert bypass.status_code == 409

    incomplete = await client.post(
        f"/v1/cases/{admitted.id}/admission",
        json={"decision": "propose", "unit_id": "T05-SFJ", "matter_code": "LD-005"},
        headers={**county, "If-Match": '"1"'},
    )
    assert incomplete.status_code == 422  # no approving body, document number or reason
    # The county supervisor alone no longer admits: that was one office moving a duty.
    alone = await client.post(
        f"/v1/cases/{admitted.id}/admission",
        json={"decision": "admit", "unit_id": "T05-SFJ", "matter_code": "LD-005"},
        headers={**county, "If-Match": '"1"'},
    )
    assert alone.status_code == 422
    proposed = await client.post(
        f"/v1/cases/{admitted.id}/admission",
        json=PROPOSAL,
        headers={**county, "If-Match": '"1"'},
    )
    assert proposed.status_code == 200, proposed.text
    assert (proposed.json()["status"], proposed.json()["queue"]) == (
        "triage",
        "admission_approval",
    )
    waiting = await client.get("/v1/queues/admission-approval", headers=county)
    assert admitted.id in {UUID(r["case_id"]) for r in waiting.json()}

    decline = await client.post(
        f"/v1/cases/{declined.id}/admission",
        json={"decision": "decline", "reason": "属金融监管部门职责，请拨打金融监管热线"},
        headers={**county, "If-Match": '"1"'},
    )
    assert decline.status_code == 200, decline.text
    assert decline.json()["status"] == "closed"
    closed = (await case_events(runtime, declined.id))[-1]
    assert closed["type"] == "whistle.case.closed"
    assert closed["data"]["reason"] == "属金融监管部门职责，请拨打金融监管热线"

    again = await client.post(
        f"/v1/cases/{declined.id}/admission",
        json={"decision": "decline", "reason": "再次"},
        headers={**county, "If-Match": '"2"'},
    )
    assert again.status_code == 409
    queue = await client.get("/v1/queues/admission", headers=county)
    assert not {admitted.id, declined.id} & {UUID(r["case_id"]) for r in queue.json()}


async def test_a_filter_that_is_no_code_is_refused_with_a_problem(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    # Found by fuzzing (tests/integration/test_fuzzing.py): a NUL reached PostgreSQL, 500.
    client, _ = dispatch
    county = _bearer(token, "county_supervisor", "township:*", "unit:*")
    for path, name in (
        ("/v1/cases", "township"),
        ("/v1/cases", "unit"),
        ("/v1/cases", "matter"),
        ("/v1/queues/triage", "township"),
        ("/v1/console/cases", "unit_id"),
        ("/v1/console/cases", "matter_code"),
    ):
        for value in ("\x00", "T03\x00", "T 03", "x" * 65):
            answer = await client.get(path, params={name: value}, headers=county)
            assert answer.status_code == 422, (path, name, value, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
        fine = await client.get(path, params={name: "T03"}, headers=county)
        assert fine.status_code == 200, (path, name, fine.text)
