"""Entrusted matters and legal review through dispatch's HTTP API and the broker, on the sample
county's data: a township acting on an entrusted matter does so in the county department's
name and within the entrusted ceiling (a penalty beyond it is refused, nothing kept); a penalty
on the 重大执法决定 list waits for a legal reviewer, who approves it (the case is resolved) or
returns it with an opinion (in progress again); the ledger records the review."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from uuid6 import uuid7

from services.dispatch.models import Case, LegalReview
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.support.infra import eventually
from tests.support.tips import OFFICER, act, bearer, case_events, case_of, send_tip

PROBLEM = "application/problem+json"
MARKET = {"kind": "department", "code": "SCJGJ", "name": "县市场监督管理局", "entrusted": True}
TOWNSHIP = {"kind": "township", "code": "T03", "name": "城关镇", "entrusted": False}


async def _in_progress(
    client: httpx.AsyncClient, runtime: Runtime, token: TokenFactory, text: str, matter: str
) -> tuple[Case, dict[str, str]]:
    """A tip of ``matter`` in 城关镇 (T03), routed, accepted and started by its unit."""
    case = await case_of(runtime, await send_tip(runtime, text, "T03V02G01", hint=matter))
    assert case.status == "assigned", case.routing
    unit = bearer(token, "unit_member", f"unit:{case.unit_id}", subject=OFFICER)
    for step in ("accept", "start"):
        answer = await act(client, case.id, step, unit)
        assert answer.status_code == 200, answer.text
    return case, unit


def _penalised(kinds: list[str], fine_yuan: int | None = None) -> dict[str, Any]:
    penalty: dict[str, Any] = {"kinds": kinds}
    if fine_yuan is not None:
        penalty["fine_yuan"] = fine_yuan
    return {"resolution": "penalised", "note": "依法作出行政处罚决定", "penalty": penalty}


async def test_an_entrusted_penalty_is_decided_in_the_departments_name_within_its_ceiling(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    # 无证餐馆 (SC-002): entrusted to the township by the county's market regulator, up to a
    # warning or a fine of 2000 yuan.
    case, unit = await _in_progress(client, runtime, token, "村口有家无证餐馆", "SC-002")
    [assigned] = [e for e in await case_events(runtime, case.id) if e["type"].endswith("assigned")]
    assert assigned["data"]["acting_in_name_of"] == MARKET
    assert assigned["data"]["legal_basis"] == "《中华人民共和国食品安全法》第一百二十二条"
    assert assigned["data"]["document_type"] == "县市场监督管理局行政执法文书（城关镇受委托使用）"
    events = await case_events(runtime, case.id)
    started = events[-1]
    assert (started["type"], started["data"]["acting_in_name_of"]) == (
        "whistle.case.started",
        MARKET,
    )

    over = await act(client, case.id, "resolve", unit, _penalised(["fine"], 5000))
    assert over.status_code == 422, over.text
    assert over.headers["content-type"] == PROBLEM
    problem = over.json()
    assert (problem["type"], problem["title"]) == (
        "https://whistle.example/problems/beyond-entrustment",
        "超出委托范围",
    )
    assert problem["detail"] == (
        "超出委托范围：委托事项仅可给予警告或2000元以下罚款，"
        "应移交委托机关（县市场监督管理局）依法处理（本次决定：罚款5000元）"
    )
    assert problem["entrusted_ceiling"] == {"penalties": ["warning", "fine"], "max_fine_yuan": 2000}
    revoke = await act(client, case.id, "resolve", unit, _penalised(["licence_revocation"]))
    assert revoke.status_code == 422 and "吊销许可证件" in revoke.json()["detail"]
    # Nothing of either refusal was kept.
    async with runtime.sessions() as session:
        kept = await session.get(Case, case.id)
    assert kept is not None and (kept.status, kept.version) == ("in_progress", 3)
    assert len(await case_events(runtime, case.id)) == len(events)

    within = await act(client, case.id, "resolve", unit, _penalised(["warning", "fine"], 2000))
    assert within.status_code == 200, within.text
    assert within.json()["status"] == "resolved"
    assert within.json()["acting"]["acting_in_name_of"] == MARKET
    resolved = (await case_events(runtime, case.id))[-1]
    assert resolved["type"] == "whistle.case.resolved"
    assert resolved["data"]["acting_in_name_of"] == MARKET
    assert resolved["data"]["penalty"] == {"kinds": ["warning", "fine"], "fine_yuan": 2000}


async def test_a_penalised_resolution_states_its_penalty(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    case, unit = await _in_progress(client, runtime, token, "有人无照经营小卖部", "SC-001")
    bare = {"resolution": "penalised", "note": "罚款"}
    assert (await act(client, case.id, "resolve", unit, bare)).status_code == 422
    stray = {**_penalised(["warning"]), "resolution": "on_the_spot"}
    assert (await act(client, case.id, "resolve", unit, stray)).status_code == 422
    no_amount = _penalised(["fine"])
    assert (await act(client, case.id, "resolve", unit, no_amount)).status_code == 422


async def test_a_major_decision_waits_for_legal_review(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    ledger: httpx.AsyncClient,
    token: TokenFactory,
) -> None:
    client, runtime = dispatch
    reviewer = bearer(token, "legal_reviewer")
    # 无照经营 (SC-001) is devolved: the township decides in its own name, with no ceiling, but
    # a fine above 10000 yuan is on the sample county's 重大执法决定 list.
    case, unit = await _in_progress(client, runtime, token, "有人无照经营加工厂", "SC-001")
    major = _penalised(["fine", "confiscation"], 20000)

    held = await act(client, case.id, "resolve", unit, major)
    assert held.status_code == 200, held.text
    assert held.json()["status"] == "legal_review"
    requested = (await case_events(runtime, case.id))[-1]
    assert requested["type"] == "whistle.case.legal_review_requested"
    assert requested["data"]["major_decisions"] == [
        "罚款金额超过10000元",
        "没收违法所得、没收非法财物",
    ]
    assert requested["data"]["acting_in_name_of"] == TOWNSHIP
    assert requested["data"]["actor_role"] == "unit_member"
    # It has not taken effect: the unit cannot resolve it again, nor anyone close it.
    again = await act(client, case.id, "resolve", unit, major)
    assert again.status_code == 409

    queue = await client.get("/v1/queues/legal-review", headers=reviewer)
    [row] = [r for r in queue.json() if r["case"]["id"] == str(case.id)]
    assert row["review"]["penalty"] == {"kinds": ["fine", "confiscation"], "fine_yuan": 20000}
    console = await client.get("/v1/console/legal-review", headers=reviewer)
    [card] = [r for r in console.json() if r["id"] == str(case.id)]
    assert (card["penalty_words"], card["acting_in_name_of"]) == (
        "罚款20000元、没收违法所得、没收非法财物",
        "城关镇",
    )

    # Nobody but a legal reviewer decides it.
    dispatcher = bearer(token, "dispatcher", "township:T03")
    for who in (
        unit,
        dispatcher,
        bearer(token, "county_supervisor", "township:*"),
        bearer(token, "county_government"),
    ):
        refused = await act(client, case.id, "legal-review", who, {"decision": "approve"})
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == PROBLEM
    for who in (unit, dispatcher, bearer(token, "county_government")):
        assert (await client.get("/v1/queues/legal-review", headers=who)).status_code == 403
    silent = await act(client, case.id, "legal-review", reviewer, {"decision": "return"})
    assert silent.status_code == 422  # a return says why

    opinion = "没收违法所得数额未经核定，请补充证据后重新提交"
    returned = await act(
        client, case.id, "legal-review", reviewer, {"decision": "return", "opinion": opinion}
    )
    assert returned.status_code == 200, returned.text
    assert returned.json()["status"] == "in_progress"
    decided = (await case_events(runtime, case.id))[-1]
    assert decided["type"] == "whistle.case.legal_review_decided"
    assert {k: decided["data"][k] for k in ("approved", "opinion", "actor", "actor_role")} == {
        "approved": False,
        "opinion": opinion,
        "actor": "test-legal_reviewer",
        "actor_role": "legal_reviewer",
    }
    assert decided["data"]["review_id"] == requested["data"]["review_id"]
    late = await act(client, case.id, "legal-review", reviewer, {"decision": "approve"})
    assert late.status_code == 409  # nothing waits for review any more

    # Decided again, without the confiscation: still a major fine, reviewed again, approved.
    fine_only = _penalised(["fine"], 15000)
    assert (await act(client, case.id, "resolve", unit, fine_only)).json()["status"] == (
        "legal_review"
    )
    approved = await act(client, case.id, "legal-review", reviewer, {"decision": "approve"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "resolved"
    *_, second_request, approval, resolved = await case_events(runtime, case.id)
    assert approval["data"]["approved"] is True
    assert resolved["type"] == "whistle.case.resolved"
    assert resolved["data"]["legal_review_id"] == second_request["data"]["review_id"]
    assert resolved["data"]["penalty"] == {"kinds": ["fine"], "fine_yuan": 15000}
    # The decision is the unit's; it takes effect on the reviewer's approval.
    assert (resolved["data"]["actor_role"], resolved["data"]["actor"]) == (
        "unit_member",
        requested["data"]["actor"],
    )
    async with runtime.sessions() as session:
        reviews = list(
            await session.scalars(
                select(LegalReview)
                .where(LegalReview.case_id == case.id)  # type: ignore[arg-type]
                .order_by(LegalReview.requested_at)  # type: ignore[arg-type]
            )
        )
    assert [(r.status, r.reviewed_by, r.opinion) for r in reviews] == [
        ("returned", "test-legal_reviewer", opinion),
        ("approved", "test-legal_reviewer", None),
    ]

    # The ledger holds the review: who reviewed, the opinion, when.
    auditor = bearer(token, "auditor")

    async def recorded() -> list[dict[str, Any]] | None:
        answer = await ledger.get(f"/v1/cases/{case.id}/trail", headers=auditor)
        entries = [e["event"] for e in answer.json()["entries"]]
        return entries if "whistle.case.resolved" in {e["type"] for e in entries} else None

    entries = await eventually(recorded, what="the legal review in the ledger")
    decisions = [e for e in entries if e["type"] == "whistle.case.legal_review_decided"]
    assert [(d["data"]["actor"], d["data"]["opinion"]) for d in decisions] == [
        ("test-legal_reviewer", opinion),
        ("test-legal_reviewer", None),
    ]
    assert all(d["time"] for d in decisions)
    assert [e["type"] for e in entries].count("whistle.case.legal_review_requested") == 2


async def test_a_case_assigned_before_the_capacity_was_recorded_is_held_to_the_ceiling(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    now = datetime.now(UTC)
    case = Case(
        county="140999",
        id=uuid7(),
        tip_id=uuid7(),
        status="in_progress",
        matter_code="SC-002",
        township_code="T03",
        urgency="general",
        unit_id="T03-SCJGJ",
        catalogue_version="test",
        routing={"rule": "authority"},
        created_at=now,
        updated_at=now,
    )
    async with runtime.transaction() as session:
        session.add(case)  # as dispatch_0009 found it: no acting
    unit = bearer(token, "unit_member", "unit:T03-SCJGJ", subject=OFFICER)
    over = await act(client, case.id, "resolve", unit, _penalised(["fine"], 3000))
    assert over.status_code == 422 and "2000元以下罚款" in over.json()["detail"]
    within = await act(client, case.id, "resolve", unit, _penalised(["fine"], 300))
    assert within.status_code == 200, within.text
    assert within.json()["acting"]["acting_in_name_of"] == MARKET
