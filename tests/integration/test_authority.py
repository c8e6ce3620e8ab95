"""The authority rule on every assignment path, through dispatch's HTTP API and the broker: a
dispatcher's assignment in triage, the county's arbitration, admission (准入) in two steps —
the county supervisor proposes, the county government approves or rejects, both in the
ledger — a reassignment after a rejection, and routing, which keeps a penalty away from a unit
with nobody holding a valid 执法证. The sample county's data throughout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import select
from uuid6 import uuid7

from services.dispatch.models import AdmissionDecision, Case
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.support.infra import eventually
from tests.support.tips import act, bearer, case_events, case_of, send_tip

PROBLEM = "application/problem+json"
NOT_ADMITTED = "该事项不在本乡镇赋权清单内，须经县政府准入批准后方可指派"
PROPOSAL = {
    "decision": "propose",
    "unit_id": "T05-SFJ",
    "matter_code": "LD-005",
    "approving_body": "县人民政府",
    "document_no": "五政发〔2026〕12号",
    "reason": "劳动争议调处由司法所承担",
}


async def _case(
    runtime: Runtime,
    township: str,
    matter: str,
    *,
    status: str = "triage",
    queue: str | None = None,
    rejections: int = 0,
) -> UUID:
    now = datetime.now(UTC)
    case = Case(
        county="140999",
        id=uuid7(),
        tip_id=uuid7(),
        status=status,
        matter_code=matter,
        township_code=township,
        urgency="general",
        queue=queue or f"township:{township}",
        rejections=rejections,
        catalogue_version="test",
        routing={"rule": "low_confidence", "explanation": ["待调度员人工分拨"]},
        created_at=now,
        updated_at=now,
    )
    async with runtime.transaction() as session:
        session.add(case)
    return case.id


async def _unchanged(runtime: Runtime, case_id: UUID, status: str, events: int) -> None:
    """Nothing of a refused command was kept: the case as it was, no event staged."""
    async with runtime.sessions() as session:
        case = await session.get(Case, case_id)
    assert case is not None
    assert (case.status, case.version, case.unit_id) == (status, 1, None)
    assert len(await case_events(runtime, case_id)) == events


def _refused(answer: httpx.Response, rules: list[str]) -> str:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["rules"] == rules
    detail: str = problem["detail"]
    return detail


async def test_a_dispatcher_cannot_assign_what_the_township_does_not_hold(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    as_t03 = bearer(token, "dispatcher", "township:T03")
    case_id = await _case(runtime, "T03", "SC-006")  # 电梯 hazards: county-only

    county_only = await act(client, case_id, "assign", as_t03, {"unit_id": "T03-SCJGJ"})
    detail = _refused(county_only, ["county_only"])
    assert detail == "电梯等特种设备安全隐患为县级专属事项，须由县直部门办理，不得指派给乡镇"
    out_of_list = await act(
        client, case_id, "assign", as_t03, {"unit_id": "T03-SFJ", "matter_code": "LD-005"}
    )
    assert _refused(out_of_list, ["not_admitted"]) == NOT_ADMITTED
    await _unchanged(runtime, case_id, "triage", 0)

    # What the township holds it assigns: 占道经营, devolved and claimed.
    allowed = await act(
        client, case_id, "assign", as_t03, {"unit_id": "T03-CGJ", "matter_code": "CG-001"}
    )
    assert allowed.status_code == 200, allowed.text
    [assigned] = await case_events(runtime, case_id)
    assert assigned["data"]["explanation"] == [
        "dispatcher test-dispatcher 指派 城关镇城市管理派驻组",
        "赋权事项，本乡镇已认领，由城关镇城市管理派驻组办理",
        "联合执法：城关镇城市管理派驻组 牵头，城关镇市场监管派驻组、城关镇派出所 配合",
    ]


async def test_county_arbitration_is_held_to_the_same_rule(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    county = bearer(token, "county_supervisor", "township:*")
    # 燃气泄漏 (YJ-002), an assist matter, rejected twice: the county decides.
    case_id = await _case(
        runtime, "T03", "YJ-002", status="arbitration", queue="arbitration", rejections=2
    )
    township_lead = await act(client, case_id, "assign", county, {"unit_id": "T03-YJGLJ"})
    assert "由县直部门牵头、乡镇协助" in _refused(township_lead, ["assist"])
    elsewhere = await act(
        client, case_id, "assign", county, {"unit_id": "T05-TEAM", "matter_code": "CG-001"}
    )
    assert "不得跨乡镇指派" in _refused(elsewhere, ["other_township"])
    await _unchanged(runtime, case_id, "arbitration", 0)

    decided = await act(client, case_id, "assign", county, {"unit_id": "YJGLJ-COUNTY"})
    assert decided.status_code == 200, decided.text
    [assigned] = await case_events(runtime, case_id)
    assert (assigned["data"]["rule"], assigned["data"]["unit_id"]) == (
        "arbitration",
        "YJGLJ-COUNTY",
    )


async def test_admission_takes_a_proposal_and_the_governments_approval(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    ledger: httpx.AsyncClient,
    token: TokenFactory,
) -> None:
    client, runtime = dispatch
    county = bearer(token, "county_supervisor", "township:*")
    government = bearer(token, "county_government")
    dispatcher = bearer(token, "dispatcher", "township:T05")
    tip = await send_tip(runtime, "公司拖欠工伤待遇，劳动争议", "T05V01G01", hint="LD-005")
    case_id = (await case_of(runtime, tip)).id

    # Nobody assigns it before the county government has approved: not the township...
    bypass = await act(client, case_id, "assign", dispatcher, {"unit_id": "T05-SFJ"})
    assert bypass.status_code == 409 and NOT_ADMITTED in bypass.json()["detail"]
    # ... nor the government before anything was proposed, nor anyone in the wrong role.
    early = await act(client, case_id, "admission/approval", government, {"decision": "approve"})
    assert early.status_code == 409
    for who, action, body in (
        (dispatcher, "admission", PROPOSAL),
        (government, "admission", PROPOSAL),
        (dispatcher, "admission/approval", {"decision": "approve"}),
        (county, "admission/approval", {"decision": "approve"}),
    ):
        refused = await act(client, case_id, action, who, body)
        assert refused.status_code == 403, (action, refused.text)
        assert refused.headers["content-type"] == PROBLEM

    proposed = await act(client, case_id, "admission", county, PROPOSAL)
    assert proposed.status_code == 200, proposed.text
    assert (proposed.json()["status"], proposed.json()["queue"]) == ("triage", "admission_approval")
    county_assigns = await act(client, case_id, "assign", county, {"unit_id": "T05-SFJ"})
    assert county_assigns.status_code == 409  # proposed is not approved

    waiting = await client.get("/v1/queues/admission-approval", headers=government)
    [row] = [r for r in waiting.json() if r["case_id"] == str(case_id)]
    assert {k: row["proposal"][k] for k in ("unit_id", "approving_body", "document_no")} == {
        "unit_id": "T05-SFJ",
        "approving_body": "县人民政府",
        "document_no": "五政发〔2026〕12号",
    }
    console = await client.get("/v1/console/approval", headers=government)
    [card] = [r for r in console.json() if r["id"] == str(case_id)]
    assert (card["proposal"]["unit_name"], card["proposal"]["matter_name"]) == (
        "台城镇司法所",
        "劳动合同、工伤待遇等劳动争议",
    )

    approved = await act(client, case_id, "admission/approval", government, {"decision": "approve"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["unit_id"]) == ("assigned", "T05-SFJ")
    *_, proposal, decision, assigned = await case_events(runtime, case_id)
    assert proposal["type"] == "whistle.case.admission_proposed"
    assert {k: proposal["data"][k] for k in ("actor_role", "proposed_unit_id", "document_no")} == {
        "actor_role": "county_supervisor",
        "proposed_unit_id": "T05-SFJ",
        "document_no": "五政发〔2026〕12号",
    }
    assert decision["type"] == "whistle.case.admission_decided"
    assert (decision["data"]["approved"], decision["data"]["actor_role"]) == (
        True,
        "county_government",
    )
    assert decision["data"]["proposal_id"] == proposal["data"]["proposal_id"]
    assert assigned["type"] == "whistle.case.assigned"
    assert (assigned["data"]["rule"], assigned["data"]["actor_role"]) == (
        "admission",
        "county_government",
    )
    assert (
        "经县人民政府准入批准（五政发〔2026〕12号），由台城镇司法所办理"
        in (assigned["data"]["explanation"])
    )
    async with runtime.sessions() as session:
        [kept] = await session.scalars(
            select(AdmissionDecision).where(AdmissionDecision.case_id == case_id)  # type: ignore[arg-type]
        )
    assert (kept.status, kept.decided_by, kept.document_no) == (
        "approved",
        "test-county_government",
        "五政发〔2026〕12号",
    )

    # The decision stays in force for the case: sent back by the unit, the township may give
    # it to another of its units.
    unit = bearer(token, "unit_member", "unit:T05-SFJ")
    rejected = await act(client, case_id, "reject", unit, {"reason": "不属于本单位职责"})
    assert rejected.status_code == 200, rejected.text
    reassigned = await act(client, case_id, "assign", dispatcher, {"unit_id": "T05-TEAM"})
    assert reassigned.status_code == 200, reassigned.text

    # Both steps are in the ledger, with who took them and the document they rest on.
    trail_reader = bearer(token, "auditor")

    async def recorded() -> list[dict[str, Any]] | None:
        answer = await ledger.get(f"/v1/cases/{case_id}/trail", headers=trail_reader)
        entries = [e["event"] for e in answer.json()["entries"]]
        types = [e["type"] for e in entries]
        return entries if "whistle.case.admission_decided" in types else None

    entries = await eventually(recorded, what="the admission decision in the ledger")
    by_type = {e["type"]: e["data"] for e in entries}
    assert by_type["whistle.case.admission_proposed"]["approving_body"] == "县人民政府"
    assert by_type["whistle.case.admission_decided"]["actor"] == "test-county_government"


async def test_a_rejected_proposal_goes_back_to_the_county_supervisor(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    county = bearer(token, "county_supervisor", "township:*")
    government = bearer(token, "county_government")
    tip = await send_tip(runtime, "有人高息揽储", "T05V01G01", hint="GA-003")
    case_id = (await case_of(runtime, tip)).id
    proposal = {**PROPOSAL, "unit_id": "T05-GAJ", "matter_code": "GA-003", "reason": "协查线索"}

    # A proposal is checked as the assignment it would make: another township's unit is not.
    foreign = await act(client, case_id, "admission", county, {**proposal, "unit_id": "T03-GAJ"})
    assert "不得跨乡镇指派" in _refused(foreign, ["other_township"])
    assert (await act(client, case_id, "admission", county, proposal)).status_code == 200

    silent = await act(client, case_id, "admission/approval", government, {"decision": "reject"})
    assert silent.status_code == 422  # a rejection says why
    rejected = await act(
        client,
        case_id,
        "admission/approval",
        government,
        {"decision": "reject", "opinion": "属金融监管部门职责，不宜由乡镇承担"},
    )
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["queue"]) == ("triage", "admission")
    decided = (await case_events(runtime, case_id))[-1]
    assert decided["type"] == "whistle.case.admission_decided"
    assert (decided["data"]["approved"], decided["data"]["opinion"]) == (
        False,
        "属金融监管部门职责，不宜由乡镇承担",
    )
    again = await act(client, case_id, "admission/approval", government, {"decision": "approve"})
    assert again.status_code == 409  # nothing waits for approval any more
    queue = await client.get("/v1/queues/admission", headers=county)
    assert str(case_id) in {r["case_id"] for r in queue.json()}
    declined = await act(
        client,
        case_id,
        "admission",
        county,
        {"decision": "decline", "reason": "请拨打金融监管热线"},
    )
    assert declined.json()["status"] == "closed"


async def test_a_penalty_is_never_given_to_a_unit_with_nobody_certified(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    # 电鱼 (NY-006) in 龙泉街道: its agriculture squad's only 执法证 ran out on 2025-03-07.
    tip = await send_tip(runtime, "河里有人电鱼", "T01V02G01", hint="NY-006")
    case = await case_of(runtime, tip)
    assert (case.status, case.queue, case.routing["rule"]) == (
        "triage",
        "township:T01",
        "no_certificate",
    )
    reason = (
        "赋权事项，由龙泉街道农业农村派驻组办理；龙泉街道农业农村派驻组当前无持有效执法证人员，"
        "不得指派行政处罚事项（使用电鱼、炸鱼、毒鱼等方法捕捞），待调度员人工分拨"
    )
    assert case.routing["explanation"][-1] == reason
    triage = (await case_events(runtime, case.id))[-1]
    assert (triage["type"], triage["data"]["reason"]) == ("whistle.case.triage_required", reason)

    dispatcher = bearer(token, "dispatcher", "township:T01")
    by_hand = await act(client, case.id, "assign", dispatcher, {"unit_id": "T01-NYNCJ"})
    assert "无持有效执法证人员" in _refused(by_hand, ["no_certificate"])
    team = await act(client, case.id, "assign", dispatcher, {"unit_id": "T01-TEAM"})
    assert team.status_code == 200, team.text
    assert team.json()["staff_id"] is not None
