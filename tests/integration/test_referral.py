"""移送 and 协助 (issue #14, items 6 and 2): a county department refers a matter that belongs to
a township, through dispatch's HTTP API and the pipeline — the township's case opened and
assigned by the authority rule, the referral's own clock in escalation, stopped by the
township's acceptance, and the whole trail in the ledger; and the department leading an assist
matter asks the township to assist — its unit a supporting unit with a task and a clock of its
own, stopped by the unit's first progress. The sample county's data; time fixed by hand on Monday
16 November 2026, 09:00 in the county (no holidays that week)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from uuid6 import uuid7

from contracts.envelope import CONTENT_TYPE, EventData, new_event
from contracts.events import CaseAssistanceRequested, CaseClosed, ReferralSubmitted
from contracts.topics import CASES, REFERRALS, dlq_topic
from services.dispatch.models import Case, TipText
from services.escalation.models import CaseDeadline
from services.runtime.inbox import InboxRecord
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.integration.test_escalation_clocks import local
from tests.support.infra import Infra, eventually, find_on_topic
from tests.support.tips import act, bearer, case_events, case_of, send_tip

PROBLEM = "application/problem+json"
MONDAY_9 = local(2026, 11, 16, 9, 0)
# 县城市管理局 finds a street stall in 城关镇五里铺村: 占道经营 (CG-001) is devolved to the
# township, which has claimed it.
STALL = {
    "department_code": "CGJ",
    "matter_code": "CG-001",
    "township_code": "T03",
    "grid_id": "T03V02G01",
    "place": "五里铺村村口",
    "facts": "巡查发现村口有人占道摆摊，影响通行，属城关镇赋权事项，依法移送",
}


def _cgj(token: TokenFactory) -> dict[str, str]:
    return bearer(token, "county_department", "dept:CGJ")


async def _cases(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Case)) or 0)


async def test_a_referral_opens_the_townships_case_assigned_by_the_authority_rule(
    dispatch_at: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch_at
    answer = await client.post("/v1/referrals", json=STALL, headers=_cgj(token))
    assert answer.status_code == 201, answer.text
    case = answer.json()
    assert (case["status"], case["township_code"], case["grid_id"]) == (
        "assigned",
        "T03",
        "T03V02G01",
    )
    assert case["unit_id"] == "T03-CGJ"  # the seconded squad of the item's domain
    assert case["acting"]["acting_in_name_of"]["code"] == "T03"

    referred, opened, assigned = await case_events(runtime, UUID(case["id"]))
    assert [e["type"] for e in (referred, opened, assigned)] == [
        "whistle.case.referred",
        "whistle.case.opened",
        "whistle.case.assigned",
    ]
    assert {k: referred["data"][k] for k in ("department_code", "referred_by", "facts")} == {
        "department_code": "CGJ",
        "referred_by": "test-county_department",
        "facts": STALL["facts"],
    }
    assert referred["data"]["referral_id"] == case["tip_id"] == opened["data"]["tip_id"]
    assert opened["data"]["explanation"][-1].startswith("县城市管理局移送：占道经营、出店经营")
    # Routing chose the unit and the authority rule allowed it (routing.py asks it).
    assert assigned["data"]["explanation"][0] == "赋权事项，由城关镇城市管理派驻组办理"
    assert (assigned["data"]["authority"], assigned["data"]["rule"]) == ("devolved", "devolved")
    # The township's console keeps the department's words as it keeps a citizen's.
    async with runtime.sessions() as session:
        said = await session.get(TipText, UUID(case["tip_id"]))
    assert said is not None and (said.channel, said.text) == ("referral", STALL["facts"])


async def test_a_referral_retried_under_its_idempotency_key_opens_one_case(
    dispatch_at: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch_at
    key = {**_cgj(token), "Idempotency-Key": f"CGJ-YS-{uuid4().hex}"}
    before = await _cases(runtime)
    first = await client.post("/v1/referrals", json=STALL, headers=key)
    assert first.status_code == 201, first.text
    # The answer was lost: the department sends it again, as it was.
    retry = await client.post("/v1/referrals", json=STALL, headers=key)
    assert retry.status_code == 200, retry.text
    assert retry.json()["id"] == first.json()["id"]
    assert await _cases(runtime) == before + 1
    # The same key with another body is not a retry: 409, nothing opened.
    other = {**STALL, "facts": "另一处占道摆摊"}
    reused = await client.post("/v1/referrals", json=other, headers=key)
    assert reused.status_code == 409, reused.text
    assert reused.headers["content-type"] == PROBLEM
    assert (reused.json()["type"], reused.json()["title"]) == (
        "https://whistle.example/problems/idempotency-key-reused",
        "Idempotency-Key 重复使用",
    )
    assert await _cases(runtime) == before + 1
    # Sent twice at once under a new key: one case, both answers naming it.
    twice = {**_cgj(token), "Idempotency-Key": f"CGJ-YS-{uuid4().hex}"}
    racing = await asyncio.gather(
        *(client.post("/v1/referrals", json=STALL, headers=twice) for _ in range(2))
    )
    assert sorted(r.status_code for r in racing) == [200, 201], [r.text for r in racing]
    assert racing[0].json()["id"] == racing[1].json()["id"]
    assert await _cases(runtime) == before + 2
    # Keys are the department's own: another department's same key is another referral.
    market = {**STALL, "department_code": "SCJGJ", "matter_code": "SC-001"}
    theirs = bearer(token, "county_department", "dept:SCJGJ")
    elsewhere = await client.post(
        "/v1/referrals", json=market, headers={**theirs, "Idempotency-Key": key["Idempotency-Key"]}
    )
    assert elsewhere.status_code == 201, elsewhere.text
    assert elsewhere.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("matter", "rule", "detail"),
    [
        (
            "SC-006",
            "county_only",
            "不予移送：电梯等特种设备安全隐患为县级专属事项，须由县直部门办理，不得指派给乡镇",
        ),
        ("YJ-002", "assist", None),
        ("LD-005", "not_admitted", None),
    ],
)
async def test_a_department_may_not_refer_what_the_township_may_not_lead(
    dispatch_at: tuple[httpx.AsyncClient, Runtime],
    token: TokenFactory,
    matter: str,
    rule: str,
    detail: str | None,
) -> None:
    client, runtime = dispatch_at
    before = await _cases(runtime)
    body = {**STALL, "matter_code": matter}
    refused = await client.post("/v1/referrals", json=body, headers=_cgj(token))
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == PROBLEM
    problem = refused.json()
    assert (problem["type"], problem["title"]) == (
        "https://whistle.example/problems/referral-refused",
        "不予移送",
    )
    assert problem["rules"] == [rule]
    assert problem["detail"].startswith("不予移送：")
    if detail is not None:
        assert problem["detail"] == detail
    assert await _cases(runtime) == before  # nothing opened


async def test_only_a_department_refers_and_only_for_itself(
    dispatch_at: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch_at
    before = await _cases(runtime)
    for role, scope in (("dispatcher", "township:T03"), ("county_supervisor", "township:*")):
        answer = await client.post("/v1/referrals", json=STALL, headers=bearer(token, role, scope))
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"] == PROBLEM
    other = bearer(token, "county_department", "dept:SCJGJ")
    foreign = await client.post("/v1/referrals", json=STALL, headers=other)
    assert foreign.status_code == 403, foreign.text
    assert "不得以其名义移送" in foreign.json()["detail"]
    elsewhere = {**STALL, "grid_id": "T01V01G01"}
    misplaced = await client.post("/v1/referrals", json=elsewhere, headers=_cgj(token))
    assert misplaced.status_code == 422, misplaced.text
    assert await _cases(runtime) == before


async def test_the_referral_has_its_own_clock_and_trail(
    dispatch_at: tuple[httpx.AsyncClient, Runtime],
    escalation: Runtime,
    ledger: httpx.AsyncClient,
    token: TokenFactory,
) -> None:
    client, _ = dispatch_at
    answer = await client.post("/v1/referrals", json=STALL, headers=_cgj(token))
    assert answer.status_code == 201, answer.text
    case_id = UUID(answer.json()["id"])

    async def referral_clock() -> CaseDeadline | None:
        return await _clock_of(escalation, case_id, "referral_acceptance")

    clock = await eventually(referral_clock, what="the referral's clock")
    # P-GENERAL: the township responds within one working day of the referral.
    assert (clock.status, clock.started_at, clock.due_at) == (
        "running",
        MONDAY_9,
        local(2026, 11, 17, 9, 0),
    )

    unit = bearer(token, "unit_member", "unit:T03-CGJ")
    accepted = await act(client, case_id, "accept", unit)
    assert accepted.status_code == 200, accepted.text

    async def stopped() -> CaseDeadline | None:
        found = await referral_clock()
        return found if found is not None and found.status != "running" else None

    assert (await eventually(stopped, what="the referral's clock stopped")).status == "met"

    auditor = bearer(token, "auditor")

    async def trail() -> list[dict[str, Any]] | None:
        # The ledger reads dispatch's topic and escalation's apart: wait for both sides, the
        # case's first three events as well as the clock's stop, whichever arrived first.
        got = await ledger.get(f"/v1/cases/{case_id}/trail", headers=auditor)
        entries = [e["event"] for e in got.json()["entries"]]
        types = {e["type"] for e in entries}
        stops = [e for e in entries if e["type"] == "whistle.deadline.stopped"]
        stopped = any(s["data"]["kind"] == "referral_acceptance" for s in stops)
        case_events = {"whistle.case.referred", "whistle.case.opened", "whistle.case.assigned"}
        return entries if stopped and case_events <= types else None

    entries = await eventually(trail, what="the referral in the ledger")
    # In the order dispatch wrote them (escalation's, on another topic, may interleave).
    case_types = [e["type"] for e in entries if e["type"].startswith("whistle.case.")]
    assert case_types[:3] == [
        "whistle.case.referred",
        "whistle.case.opened",
        "whistle.case.assigned",
    ]
    kinds = {
        d["kind"]
        for e in entries
        if e["type"] == "whistle.deadlines.set"
        for d in e["data"]["deadlines"]
    }
    assert kinds == {"referral_acceptance", "first_response", "resolution"}
    [stop] = [
        e["data"]
        for e in entries
        if e["type"] == "whistle.deadline.stopped" and e["data"]["kind"] == "referral_acceptance"
    ]
    assert (stop["on_time"], stop["stopped_by"]) == (True, "whistle.case.accepted")


async def _clock_of(escalation: Runtime, case_id: UUID, kind: str) -> CaseDeadline | None:
    async with escalation.sessions() as session:
        return await session.scalar(
            select(CaseDeadline).where(
                CaseDeadline.case_id == case_id,  # type: ignore[arg-type]
                CaseDeadline.kind == kind,  # type: ignore[arg-type]
            )
        )


async def test_the_department_leading_an_assist_matter_asks_the_township_to_assist(
    dispatch_at: tuple[httpx.AsyncClient, Runtime],
    escalation: Runtime,
    ledger: httpx.AsyncClient,
    token: TokenFactory,
) -> None:
    client, runtime = dispatch_at
    # 燃气泄漏 (YJ-002) is an assist matter: 县应急管理局's own unit leads it.
    tip = await send_tip(runtime, "五里铺村有燃气泄漏，气味很大", "T03V02G01", hint="YJ-002")
    case = await case_of(runtime, tip)
    assert (case.status, case.unit_id) == ("assigned", "YJGLJ-COUNTY"), case.routing
    lead = bearer(token, "unit_member", "unit:YJGLJ-COUNTY")
    assert (await act(client, case.id, "accept", lead)).status_code == 200
    task = {"task": "协助疏散周边群众、设置警戒区"}

    # Only the lead unit asks; a township's dispatcher or unit may not ask for itself.
    for who in (
        bearer(token, "dispatcher", "township:T03"),
        bearer(token, "unit_member", "unit:T03-TEAM"),
    ):
        refused = await act(client, case.id, "assistance", who, task)
        assert refused.status_code in (403, 404), refused.text
        assert refused.headers["content-type"] == PROBLEM
    elsewhere = await act(client, case.id, "assistance", lead, {**task, "unit_id": "T01-TEAM"})
    assert elsewhere.status_code == 422, elsewhere.text
    assert elsewhere.json()["title"] == "不能请求协助"
    assert "不是本案所在乡镇" in elsewhere.json()["detail"]

    # The console offers it to the lead unit only.
    offered = (await client.get(f"/v1/console/cases/{case.id}", headers=lead)).json()
    assert "assistance" in offered["actions"]
    dispatcher = bearer(token, "dispatcher", "township:T03")
    not_offered = (await client.get(f"/v1/console/cases/{case.id}", headers=dispatcher)).json()
    assert "assistance" not in not_offered["actions"]

    asked = await act(client, case.id, "assistance", lead, task)
    assert asked.status_code == 200, asked.text
    assert "T03-TEAM" in asked.json()["supporting_units"]  # the township's team, by default
    requested = (await case_events(runtime, case.id))[-1]
    assert requested["type"] == "whistle.case.assistance_requested"
    assert {k: requested["data"][k] for k in ("department_code", "assisting_unit_id", "task")} == {
        "department_code": "YJGLJ",
        "assisting_unit_id": "T03-TEAM",
        "task": task["task"],
    }
    again = await act(client, case.id, "assistance", lead, task)
    assert again.status_code == 422 and "已是本案的协助单位" in again.json()["detail"]

    # The township's team sees it in its list, and its clock runs: P-EMERGENCY, two hours.
    team = bearer(token, "unit_member", "unit:T03-TEAM")
    listed = await client.get("/v1/cases", params={"unit": "T03-TEAM"}, headers=team)
    assert str(case.id) in {c["id"] for c in listed.json()}, listed.text
    clock = await eventually(
        lambda: _clock_of(escalation, case.id, "assistance_response"), what="the assistance clock"
    )
    assert (clock.status, clock.due_at) == ("running", MONDAY_9 + timedelta(hours=2))

    # The township's console shows the request and its clock, to the assisting team.
    async def on_console() -> dict[str, Any] | None:
        page = (await client.get(f"/v1/console/cases/{case.id}", headers=team)).json()
        kinds = {c["kind"] for c in page.get("clocks", [])}
        return page if "assistance_response" in kinds else None

    page = await eventually(on_console, what="the assistance clock on the console")
    assert "whistle.case.assistance_requested" in {e["type"] for e in page["timeline"]}

    # The lead's own progress answers nothing; the team's first progress answers the request.
    assert (await act(client, case.id, "start", lead)).status_code == 200
    mine = await act(client, case.id, "progress", lead, {"note": "已关闭燃气总阀"})
    assert mine.status_code == 200, mine.text
    theirs = await act(client, case.id, "progress", team, {"note": "已疏散群众12人，设置警戒"})
    assert theirs.status_code == 200, theirs.text
    *_, own, supported = await case_events(runtime, case.id)
    assert (own["data"]["supporting_unit_id"], supported["data"]["supporting_unit_id"]) == (
        None,
        "T03-TEAM",
    )

    async def answered() -> CaseDeadline | None:
        found = await _clock_of(escalation, case.id, "assistance_response")
        return found if found is not None and found.status != "running" else None

    assert (await eventually(answered, what="the assistance clock stopped")).status == "met"

    auditor = bearer(token, "auditor")

    async def trail() -> list[str] | None:
        got = await ledger.get(f"/v1/cases/{case.id}/trail", headers=auditor)
        types = [e["event"]["type"] for e in got.json()["entries"]]
        return types if "whistle.case.assistance_requested" in types else None

    assert "whistle.case.assistance_requested" in await eventually(trail, what="the ledger")


async def test_assistance_is_only_for_assist_matters(
    dispatch_at: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, _ = dispatch_at
    answer = await client.post("/v1/referrals", json=STALL, headers=_cgj(token))
    case_id = UUID(answer.json()["id"])
    unit = bearer(token, "unit_member", "unit:T03-CGJ")
    refused = await act(client, case_id, "assistance", unit, {"task": "协助"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith("仅协助事项可请求乡镇协助")


async def _produce(
    producer: AIOKafkaProducer,
    topic: str,
    source: str,
    key: UUID,
    data: EventData,
    at: datetime,
    token: str | None = None,
) -> str:
    """Put ``data`` on ``topic`` as ``source`` would; a department's submission carries its
    ``token`` in the ``authorization`` header."""
    event = new_event(source, str(key), data, at)
    headers = [("content-type", CONTENT_TYPE.encode())]
    if token is not None:
        headers.append(("authorization", f"Bearer {token}".encode()))
    await producer.send_and_wait(
        topic, value=event.to_bytes(), key=str(key).encode(), headers=headers
    )
    return event.id


async def _submit(producer: AIOKafkaProducer, referral: ReferralSubmitted, token: str) -> str:
    """The referral on dispatch.referrals.v1, as the department's own system would send it."""
    source = f"whistle/dept/{referral.department_code.lower()}"
    return await _produce(
        producer, REFERRALS, source, referral.referral_id, referral, MONDAY_9, token
    )


async def test_a_department_refers_over_kafka_once_and_a_refusal_is_dead_lettered(
    dispatch_at: tuple[httpx.AsyncClient, Runtime],
    producer: AIOKafkaProducer,
    infra: Infra,
    token: TokenFactory,
) -> None:
    _, runtime = dispatch_at
    cgj = token("county_department", "dept:CGJ")
    referral = ReferralSubmitted(referral_id=uuid7(), officer="王科长", **STALL)
    await _submit(producer, referral, cgj)

    async def opened() -> Case | None:
        async with runtime.sessions() as session:
            return await session.scalar(
                select(Case).where(Case.tip_id == referral.referral_id)  # type: ignore[arg-type]
            )

    case = await eventually(opened, what="the referred case")
    assert (case.status, case.unit_id) == ("assigned", "T03-CGJ")
    [referred, *_] = await case_events(runtime, case.id)
    assert referred["data"]["referral_id"] == str(referral.referral_id)
    assert referred["data"]["referred_by"] == "王科长"

    # Sent again (at least once): handled, and nothing more is opened.
    again = await _submit(producer, referral, cgj)

    async def handled() -> bool:
        async with runtime.sessions() as session:
            return await session.get(InboxRecord, ("whistle/dept/cgj", again)) is not None

    await eventually(handled, what="the resubmission handled")
    async with runtime.sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(Case).where(Case.tip_id == referral.referral_id)  # type: ignore[arg-type]
        )
    assert count == 1

    # A county-only matter is refused: parked on the dead-letter topic, no case.
    county_only = ReferralSubmitted(referral_id=uuid7(), **{**STALL, "matter_code": "SC-006"})
    refused = await _submit(producer, county_only, cgj)
    await find_on_topic(infra.bootstrap, dlq_topic(REFERRALS), lambda e: e.get("id") == refused)
    async with runtime.sessions() as session:
        assert (
            await session.scalar(
                select(Case).where(Case.tip_id == county_only.referral_id)  # type: ignore[arg-type]
            )
            is None
        )


async def test_an_unanswered_request_for_assistance_lapses_when_the_case_closes(
    escalation: Runtime, producer: AIOKafkaProducer
) -> None:
    # Dispatch is played here: its events onto dispatch.cases.v1, as it publishes them.
    case_id = uuid7()
    step = {
        "case_id": case_id,
        "tip_id": uuid7(),
        "actor": "S0500",
        "actor_role": "unit_member",
        "version": 3,
        "township_code": "T03",
        "unit_id": "YJGLJ-COUNTY",
    }
    requested = CaseAssistanceRequested(
        **step,
        assistance_id=uuid7(),
        department_code="YJGLJ",
        assisting_unit_id="T03-TEAM",
        task="协助设置警戒区",
        urgency="emergency",
        deadline_policy="P-EMERGENCY",
    )
    await _produce(producer, CASES, "whistle/dispatch", case_id, requested, MONDAY_9)
    await eventually(
        lambda: _clock_of(escalation, case_id, "assistance_response"), what="its clock"
    )
    closed_at = MONDAY_9 + timedelta(hours=1)
    closed = CaseClosed(**{**step, "version": 9})
    await _produce(producer, CASES, "whistle/dispatch", case_id, closed, closed_at)

    async def lapsed() -> CaseDeadline | None:
        found = await _clock_of(escalation, case_id, "assistance_response")
        return found if found is not None and found.status == "lapsed" else None

    clock = await eventually(lapsed, what="the assistance clock lapsed")
    assert clock.stopped_at == closed_at
