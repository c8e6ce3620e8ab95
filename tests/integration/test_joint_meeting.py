"""The township's joint meeting (联席会议) end to end: escalation in process over HTTP, the real
broker and database, the ledger consuming what escalation publishes, time moved by hand.

A township leader refers an overdue whistle to a joint meeting; the departments summoned hear
of it on their own topics; the meeting sits (attendance, minutes) and records decisions, each
with a clock on the same ladder as a whistle's; an overdue decision is chased (催办) and
supervised (督办); the owner reports it done; every step is in the case's ledger trail. Times
are Asia/Shanghai on the business calendar (working hours 08:30–12:00 and 14:30–17:30; no
holidays in late November or early December 2026).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
from aiokafka import AIOKafkaProducer, ConsumerRecord

from contracts.envelope import CONTENT_TYPE, new_event
from contracts.events import CaseAssigned, CaseClosed, MeetingDecisionReportSubmitted
from contracts.topics import CASES, DEADLINES, LEADERSHIP, MEETINGS, department_topic, dlq_topic
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration import test_whistle_protocol
from tests.integration.test_escalation_clocks import local
from tests.integration.test_whistle_protocol import (
    LADDER,
    Escalation,
    auth,
    blow,
    find_on_topic,
    produce,
    whistle,
)
from tests.support.infra import eventually

# Escalation in process with time moved by hand, one per module, as the whistle tests run it.
escalation = test_whistle_protocol.escalation

PROBLEM_JSON = "application/problem+json"


def assigned(case_id: UUID, township: str = "T03") -> CaseAssigned:
    return CaseAssigned(
        case_id=case_id,
        tip_id=uuid4(),
        unit_id=f"{township}-TEAM",
        unit_kind="township_team",
        township_code=township,
        staff_id=None,
        matter_code="CG-012",
        authority="devolved",
        urgency="general",
        deadline_policy="P-GENERAL",
        catalogue_version="test",
        rule="test",
        explanation=[],
    )


def about_meeting(meeting_id: str, event_type: str) -> Callable[[ConsumerRecord], bool]:
    def match(record: ConsumerRecord) -> bool:
        event = json.loads(record.value)
        return event["data"].get("meeting_id") == meeting_id and event["type"] == event_type

    return match


async def overdue_whistle(
    escalation: Escalation, producer: AIOKafkaProducer, departments: list[str]
) -> tuple[UUID, UUID]:
    """A T03 case (assigned Monday 16 Nov 09:00) whose whistle (Thursday 19th 10:00) the
    departments have not reported in to by Monday 23rd 09:00: the receipt was due Friday 10:00."""
    case_id = uuid4()
    escalation.clock.now = local(2026, 11, 16, 9, 0)
    await produce(producer, CASES, assigned(case_id), local(2026, 11, 16, 9, 0), "whistle/dispatch")
    blown = whistle(case_id, departments)
    escalation.clock.now = local(2026, 11, 19, 10, 0)
    await blow(producer, blown, local(2026, 11, 19, 10, 0))
    escalation.clock.now = local(2026, 11, 23, 9, 0)
    return case_id, blown.whistle_id


async def listed_overdue(escalation: Escalation, leader: str, whistle_id: UUID) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        response = await escalation.http.get(
            "/v1/whistles", params={"township": "T03", "state": "overdue"}, headers=auth(leader)
        )
        assert response.status_code == 200, response.text
        return next(
            (w for w in response.json()["whistles"] if w["whistle_id"] == str(whistle_id)), None
        )

    return await eventually(probe, what=f"whistle {whistle_id} overdue for T03")


def convening(**changes: Any) -> dict[str, Any]:
    return {
        "held_at": local(2026, 11, 24, 14, 30).isoformat(),
        "place": "城关镇人民政府三楼会议室",
        "agenda": ["五里铺村占道经营反复投诉，城管、市场监管未按时报到"],
        **changes,
    }


async def test_convened_on_overdue_whistles_decided_escalated_done_and_in_the_ledger(
    escalation: Escalation,
    producer: AIOKafkaProducer,
    migrated: Settings,
    token: TokenFactory,
    ledger: httpx.AsyncClient,
    dispatch: tuple[httpx.AsyncClient, Runtime],
) -> None:
    bootstrap = migrated.kafka_bootstrap or ""
    case_id, whistle_id = await overdue_whistle(escalation, producer, ["CGJ"])
    leader = token("township_leader", "township:T03")
    listed = await listed_overdue(escalation, leader, whistle_id)
    assert listed["status"] == "receipt_overdue" and listed["department_code"] == "CGJ"

    # Convened on the overdue whistle, SCJGJ summoned besides the whistle's CGJ.
    convened = await escalation.http.post(
        "/v1/meetings",
        json=convening(whistle_ids=[str(whistle_id)], departments=["SCJGJ"]),
        headers=auth(leader),
    )
    assert convened.status_code == 201, convened.text
    meeting = convened.json()
    meeting_id = meeting["meeting_id"]
    assert meeting["departments"] == ["SCJGJ", "CGJ"]
    assert meeting["case_ids"] == [str(case_id)] and meeting["whistle_ids"] == [str(whistle_id)]
    assert meeting["held"] is False and meeting["decisions"] == []

    # Each department summoned hears of it on its own topic, keyed by the meeting.
    for department in ("CGJ", "SCJGJ"):
        (record,) = await find_on_topic(
            bootstrap,
            department_topic(department),
            about_meeting(meeting_id, "whistle.meeting.summoned"),
        )
        notice = json.loads(record.value)
        assert record.key == meeting_id.encode()
        assert notice["data"]["department_code"] == department
        assert datetime.fromisoformat(notice["data"]["held_at"]) == local(2026, 11, 24, 14, 30)
    cgj = token("county_department", "dept:CGJ")
    seen = await escalation.http.get("/v1/meetings", headers=auth(cgj))
    assert meeting_id in [m["meeting_id"] for m in seen.json()["meetings"]]
    gaj = token("county_department", "dept:GAJ")
    unseen = await escalation.http.get(f"/v1/meetings/{meeting_id}", headers=auth(gaj))
    assert unseen.status_code == 404 and unseen.headers["content-type"] == PROBLEM_JSON

    # No decision before the meeting has sat.
    url = f"/v1/meetings/{meeting_id}/decisions"
    due = local(2026, 11, 30, 16, 0)
    decision = {"owner_kind": "department", "owner_code": "CGJ", "due_at": due.isoformat()}
    decision["task"] = "会同市场监管所清理五里铺村占道摊点，设置临时疏导区"
    early = await escalation.http.post(url, json=decision, headers=auth(leader))
    assert early.status_code == 409 and early.json()["rule"] == "not-held"

    escalation.clock.now = local(2026, 11, 24, 16, 0)
    held = await escalation.http.post(
        f"/v1/meetings/{meeting_id}/held",
        json={"attended": ["CGJ"], "minutes": "会议议定：城管局牵头，11月30日前完成清理。"},
        headers=auth(leader),
    )
    assert held.status_code == 200, held.text
    assert (held.json()["attended"], held.json()["absent"]) == (["CGJ"], ["SCJGJ"])
    again = await escalation.http.post(
        f"/v1/meetings/{meeting_id}/held",
        json={"attended": [], "minutes": "重复"},
        headers=auth(leader),
    )
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM_JSON

    # A decision's owner: a department summoned, or a unit of the township.
    stranger = await escalation.http.post(
        url, json={**decision, "owner_code": "GAJ"}, headers=auth(leader)
    )
    assert stranger.status_code == 422 and stranger.json()["rule"] == "owner-not-summoned"
    assert "未被通知" in stranger.json()["detail"]
    elsewhere = await escalation.http.post(
        url, json={**decision, "owner_kind": "unit", "owner_code": "T01-TEAM"}, headers=auth(leader)
    )
    assert elsewhere.status_code == 422 and elsewhere.json()["rule"] == "owner-not-township-unit"

    recorded = await escalation.http.post(url, json=decision, headers=auth(leader))
    assert recorded.status_code == 201, recorded.text
    body = recorded.json()
    decision_id = body["decision_id"]
    assert body["case_id"] == str(case_id) and body["policy_id"] == "P-GENERAL"
    # Warned at 75 % of the time the meeting gave (natural time: 6 days 0 h from 16:00).
    assert datetime.fromisoformat(body["warn_at"]) == local(2026, 11, 29, 4, 0)
    ours = await escalation.http.post(
        url,
        json={
            "owner_kind": "unit",
            "owner_code": "T03-TEAM",
            "task": "综合执法队每日巡查五里铺村",
            "due_at": local(2026, 12, 10, 17, 0).isoformat(),
        },
        headers=auth(leader),
    )
    assert ours.status_code == 201, ours.text
    unit_decision = ours.json()["decision_id"]
    # The owner department gets a copy of its decision on its own topic.
    (copy,) = await find_on_topic(
        bootstrap,
        department_topic("CGJ"),
        about_meeting(meeting_id, "whistle.meeting.decision_recorded"),
    )
    assert json.loads(copy.value)["copyof"]

    # The decision climbs the ladder: warning, overdue, chase a working day after, supervision
    # three working days after that, with the leadership notice — and a copy of the chase and
    # supervision for CGJ.
    ladder = {
        "warning": local(2026, 11, 29, 4, 0),
        "overdue": due,
        "chase": local(2026, 12, 1, 16, 0),
        "supervise": local(2026, 12, 4, 16, 0),
    }

    async def fired() -> list[str]:
        return [
            LADDER[e["type"]]
            for e in await escalation.events()
            if e["type"] in LADDER
            and e["topic"] == DEADLINES
            and e["data"].get("decision_id") == decision_id
        ]

    expected: list[str] = []
    for step, at in ladder.items():
        escalation.clock.now = at
        expected.append(step)

        async def caught_up() -> bool:
            return await fired() == expected

        await eventually(caught_up, what=f"the decision's {step}")
    events = [e for e in await escalation.events() if e["data"].get("decision_id") == decision_id]
    steps = [e for e in events if e["type"] in LADDER and e["topic"] == DEADLINES]
    for event, (step, at) in zip(steps, ladder.items(), strict=True):
        assert datetime.fromisoformat(event["data"]["scheduled_for"]) == at, step
        assert event["data"]["kind"] == "meeting_decision"
        assert event["data"]["department_code"] == "CGJ"
    (leadership,) = [e for e in events if e["topic"] == LEADERSHIP]
    assert leadership["data"]["supervision_event_id"] == steps[-1]["id"]
    copies = [e["type"] for e in events if e["topic"] == department_topic("CGJ")]
    assert copies == [
        "whistle.meeting.decision_recorded",
        "whistle.case.chased",
        "whistle.case.supervised",
    ]
    status = await escalation.http.get(f"/v1/meetings/{meeting_id}", headers=auth(leader))
    views = {d["decision_id"]: d for d in status.json()["decisions"]}
    assert views[decision_id]["status"] == "overdue"

    # Only the owner reports it done: not another department, not a unit.
    done_url = f"/v1/meeting-decisions/{decision_id}/done"
    result = {"result": "占道摊点已清理，临时疏导区已设置"}
    scjgj = token("county_department", "dept:SCJGJ")
    refused = await escalation.http.post(done_url, json=result, headers=auth(scjgj))
    assert refused.status_code == 403 and refused.json()["rule"] == "not-owner"
    assert refused.headers["content-type"] == PROBLEM_JSON
    unit = token("unit_member", "unit:T03-TEAM")
    by_unit = await escalation.http.post(done_url, json=result, headers=auth(unit))
    assert by_unit.status_code == 403 and by_unit.headers["content-type"] == PROBLEM_JSON
    missing = await escalation.http.post(
        f"/v1/meeting-decisions/{uuid4()}/done", json=result, headers=auth(cgj)
    )
    assert missing.status_code == 404

    escalation.clock.now = local(2026, 12, 5, 10, 0)
    done = await escalation.http.post(done_url, json=result, headers=auth(cgj))
    assert done.status_code == 201, done.text
    assert (done.json()["on_time"], done.json()["via"]) == (False, "http")
    twice = await escalation.http.post(done_url, json=result, headers=auth(cgj))
    assert twice.status_code == 409
    (stopped,) = [
        e["data"]
        for e in await escalation.events()
        if e["type"] == "whistle.deadline.stopped" and e["data"].get("decision_id") == decision_id
    ]
    assert (stopped["kind"], stopped["on_time"], stopped["stopped_by"]) == (
        "meeting_decision",
        False,
        "whistle.meeting.decision_done",
    )

    # The township's own unit reports its decision through dispatch, with its unit token;
    # another unit may not, and a department's decision is not dispatch's to report.
    dispatch_http, _ = dispatch

    async def kept() -> list[dict[str, Any]] | None:
        response = await dispatch_http.get("/v1/meeting-decisions", headers=auth(unit))
        assert response.status_code == 200, response.text
        rows = [d for d in response.json() if d["decision_id"] == unit_decision]
        return rows or None

    (row,) = await eventually(kept, what="the unit's decision kept by dispatch")
    assert (row["unit_id"], row["case_id"], row["done_at"]) == ("T03-TEAM", str(case_id), None)
    other_unit = token("unit_member", "unit:T03-CGJ")
    unit_url = f"/v1/meeting-decisions/{unit_decision}/done"
    wrong_unit = await dispatch_http.post(
        unit_url, json={"result": "已巡查"}, headers=auth(other_unit)
    )
    assert wrong_unit.status_code == 403 and wrong_unit.json()["rule"] == "not-owner"
    not_dispatchs = await dispatch_http.post(
        f"/v1/meeting-decisions/{decision_id}/done", json=result, headers=auth(unit)
    )
    assert not_dispatchs.status_code == 404
    as_dispatcher = await dispatch_http.post(
        unit_url, json=result, headers=auth(token("dispatcher", "township:T03"))
    )
    assert as_dispatcher.status_code == 403
    unit_done = await dispatch_http.post(
        unit_url, json={"result": "已安排每日巡查"}, headers=auth(unit)
    )
    assert unit_done.status_code == 201, unit_done.text
    again_unit = await dispatch_http.post(unit_url, json={"result": "再报"}, headers=auth(unit))
    assert again_unit.status_code == 409

    async def unit_recorded() -> dict[str, Any] | None:
        response = await dispatch_http.get("/v1/meeting-decisions", headers=auth(unit))
        (mine,) = [d for d in response.json() if d["decision_id"] == unit_decision]
        return mine if mine["done_at"] else None

    recorded_done = await eventually(unit_recorded, what="escalation recording the unit's report")
    assert recorded_done["on_time"] is True
    (unit_stop,) = [
        e["data"]
        for e in await escalation.events()
        if e["type"] == "whistle.meeting.decision_done"
        and e["data"]["decision_id"] == unit_decision
    ]
    assert (unit_stop["via"], unit_stop["owner_code"]) == ("dispatch", "T03-TEAM")
    mine = await escalation.http.get("/v1/meetings", headers=auth(unit))
    assert [m["meeting_id"] for m in mine.json()["meetings"]] == [meeting_id]

    # Every step is in the case's ledger trail, the meeting's events with the case's own.
    auditor = token("auditor")
    wanted = {
        "whistle.meeting.convened",
        "whistle.meeting.summoned",
        "whistle.meeting.held",
        "whistle.meeting.decision_recorded",
        "whistle.case.chased",
        "whistle.case.supervised",
        "whistle.meeting.decision_done",
    }

    async def trail() -> list[dict[str, Any]] | None:
        response = await ledger.get(f"/v1/cases/{case_id}/trail", headers=auth(auditor))
        assert response.status_code == 200, response.text
        entries = response.json()["entries"]
        types = {e["type"] for e in entries}
        done_count = sum(e["type"] == "whistle.meeting.decision_done" for e in entries)
        return entries if wanted <= types and done_count == 2 else None

    entries = await eventually(trail, what="the meeting in the case's trail")
    chased = [
        e["event"]["data"]
        for e in entries
        if e["type"] == "whistle.case.chased"
        and e["topic"] == DEADLINES
        and e["event"]["data"]["kind"] == "meeting_decision"
    ]
    assert [c["decision_id"] for c in chased] == [decision_id]
    assert any(e["topic"] == MEETINGS for e in entries)


async def test_who_may_convene_and_on_what(
    escalation: Escalation, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    case_id, whistle_id = await overdue_whistle(escalation, producer, ["SCJGJ"])
    leader = token("township_leader", "township:T03")
    await listed_overdue(escalation, leader, whistle_id)
    body = convening(case_ids=[str(case_id)], departments=["SCJGJ"])

    # Only a township leader convenes: not the dispatcher, a department, the county.
    for role, scope in (
        ("dispatcher", "township:T03"),
        ("county_department", "dept:SCJGJ"),
        ("county_supervisor", None),
        ("unit_member", "unit:T03-TEAM"),
    ):
        refused = await escalation.http.post(
            "/v1/meetings", json=body, headers=auth(token(role, scope) if scope else token(role))
        )
        assert refused.status_code == 403, (role, refused.text)
        assert refused.headers["content-type"] == PROBLEM_JSON
    # The dispatcher reads the township's overdue whistles and meetings.
    dispatcher = token("dispatcher", "township:T03")
    await listed_overdue(escalation, dispatcher, whistle_id)

    # Another township's leader: the case reads as missing; so does an unknown case.
    other = token("township_leader", "township:T01")
    foreign = await escalation.http.post("/v1/meetings", json=body, headers=auth(other))
    assert foreign.status_code == 404 and foreign.json()["rule"] == "no-case"
    assert "案件" in foreign.json()["detail"]
    unknown = await escalation.http.post(
        "/v1/meetings", json=convening(case_ids=[str(uuid4())]), headers=auth(leader)
    )
    assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM_JSON
    other_whistles = await escalation.http.get(
        "/v1/whistles", params={"township": "T03"}, headers=auth(other)
    )
    assert other_whistles.status_code == 403
    # Nothing to settle, an unknown department, a whistle not overdue: 422.
    empty = await escalation.http.post("/v1/meetings", json=convening(), headers=auth(leader))
    assert empty.status_code == 422 and empty.json()["rule"] == "nothing-to-settle"
    bogus = await escalation.http.post(
        "/v1/meetings",
        json=convening(case_ids=[str(case_id)], departments=["XXJ"]),
        headers=auth(leader),
    )
    assert bogus.status_code == 422 and bogus.json()["rule"] == "unknown-department"
    fresh = whistle(case_id, ["GAJ"])
    await blow(producer, fresh, local(2026, 11, 23, 9, 0))

    async def fresh_listed() -> bool:
        response = await escalation.http.get(
            "/v1/whistles", params={"township": "T03"}, headers=auth(leader)
        )
        return str(fresh.whistle_id) in response.text

    await eventually(fresh_listed, what="the fresh whistle")
    on_time = await escalation.http.post(
        "/v1/meetings", json=convening(whistle_ids=[str(fresh.whistle_id)]), headers=auth(leader)
    )
    assert on_time.status_code == 422 and on_time.json()["rule"] == "whistle-not-overdue"

    # Convened on the case itself: the case's whistle departments are those it names.
    convened = await escalation.http.post("/v1/meetings", json=body, headers=auth(leader))
    assert convened.status_code == 201, convened.text
    assert convened.json()["case_ids"] == [str(case_id)]
    listing = await escalation.http.get("/v1/meetings", headers=auth(dispatcher))
    assert convened.json()["meeting_id"] in listing.text
    elsewhere = await escalation.http.get("/v1/meetings", headers=auth(other))
    assert convened.json()["meeting_id"] not in elsewhere.text


async def test_kafka_reports_are_the_owners_own_and_a_closed_case_lapses_its_decisions(
    escalation: Escalation,
    producer: AIOKafkaProducer,
    migrated: Settings,
    token: TokenFactory,
) -> None:
    bootstrap = migrated.kafka_bootstrap or ""
    case_id, whistle_id = await overdue_whistle(escalation, producer, ["CGJ", "SCJGJ"])
    leader = token("township_leader", "township:T03")
    await listed_overdue(escalation, leader, whistle_id)
    convened = await escalation.http.post(
        "/v1/meetings", json=convening(whistle_ids=[str(whistle_id)]), headers=auth(leader)
    )
    assert convened.status_code == 201, convened.text
    meeting_id = convened.json()["meeting_id"]
    await escalation.http.post(
        f"/v1/meetings/{meeting_id}/held",
        json={"attended": ["CGJ", "SCJGJ"], "minutes": "议定两项。"},
        headers=auth(leader),
    )
    decisions = {}
    for department in ("CGJ", "SCJGJ"):
        response = await escalation.http.post(
            f"/v1/meetings/{meeting_id}/decisions",
            json={
                "owner_kind": "department",
                "owner_code": department,
                "task": f"{department} 牵头整治",
                "due_at": local(2026, 11, 27, 16, 0).isoformat(),
            },
            headers=auth(leader),
        )
        assert response.status_code == 201, response.text
        decisions[department] = UUID(response.json()["decision_id"])

    async def submit(department: str, decision: str, token_for: str) -> str:
        report = MeetingDecisionReportSubmitted(
            meeting_id=UUID(meeting_id),
            decision_id=decisions[decision],
            department_code=department,
            result="已完成",
            officer="值班员",
        )
        event = new_event(
            f"whistle/dept/{department.lower()}",
            meeting_id,
            report,
            local(2026, 11, 24, 10, 0),
        )
        await producer.send_and_wait(
            MEETINGS,
            value=event.to_bytes(),
            key=meeting_id.encode(),
            headers=[
                ("content-type", CONTENT_TYPE.encode()),
                (
                    "authorization",
                    f"Bearer {token('county_department', f'dept:{token_for}')}".encode(),
                ),
            ],
        )
        return event.id

    # SCJGJ reporting CGJ's decision, and CGJ's token naming SCJGJ: both dead-lettered.
    not_owner = await submit("SCJGJ", "CGJ", "SCJGJ")
    not_its_token = await submit("SCJGJ", "SCJGJ", "CGJ")
    await submit("CGJ", "CGJ", "CGJ")
    (recorded,) = await find_on_topic(
        bootstrap, MEETINGS, about_meeting(meeting_id, "whistle.meeting.decision_done")
    )
    done = json.loads(recorded.value)["data"]
    assert (done["owner_code"], done["via"], done["actor"]) == ("CGJ", "kafka", "值班员")
    dead = await find_on_topic(
        bootstrap,
        dlq_topic(MEETINGS),
        lambda r: json.loads(r.value)["id"] in (not_owner, not_its_token),
        count=2,
    )
    reasons = {json.loads(r.value)["id"]: dict(r.headers)["dlq-reason"].decode() for r in dead}
    assert "not-owner" in reasons[not_owner]
    assert "does not act for dept:SCJGJ" in reasons[not_its_token]

    # The case closes: SCJGJ's decision still running lapses, nothing climbs after.
    closed = CaseClosed(
        case_id=case_id,
        tip_id=uuid4(),
        actor="S0003",
        actor_role="dispatcher",
        version=9,
        township_code="T03",
        unit_id="T03-TEAM",
    )
    await produce(producer, CASES, closed, local(2026, 11, 25, 9, 0), "whistle/dispatch")

    async def lapsed() -> dict[str, Any] | None:
        return next(
            (
                e["data"]
                for e in await escalation.events()
                if e["type"] == "whistle.deadline.stopped"
                and e["data"].get("decision_id") == str(decisions["SCJGJ"])
            ),
            None,
        )

    stopped = await eventually(lapsed, what="SCJGJ's decision lapsing")
    assert stopped["lapsed"] is True and stopped["stopped_by"] == "whistle.case.closed"
