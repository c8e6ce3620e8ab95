"""The event contracts: generated schemas are current, resolvable, and describe real events; the
topic registry says who consumes what, as the services subscribe."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn, cast
from uuid import UUID

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from contracts import generate
from contracts.envelope import CloudEvent, EventData, new_event
from contracts.events import (
    EVENT_MODELS,
    CaseAccepted,
    CaseAdmissionDecided,
    CaseAdmissionProposed,
    CaseAssigned,
    CaseAssistanceRequested,
    CaseChased,
    CaseClosed,
    CaseContacted,
    CaseLegalReviewDecided,
    CaseLegalReviewRequested,
    CaseMerged,
    CaseOpened,
    CaseProgressRecorded,
    CaseReferred,
    CaseRejected,
    CaseReopened,
    CaseResolved,
    CaseSplit,
    CaseStarted,
    CaseSupervised,
    CaseTriageRequired,
    ContactRef,
    Deadline,
    DeadlineOverdue,
    DeadlineRecomputed,
    DeadlinesSet,
    DeadlineStopped,
    DeadlineWarning,
    ExtensionDecided,
    ExtensionRequested,
    GeoPoint,
    InspectionFinding,
    InspectionTaskCompleted,
    InspectionTaskPlanned,
    LeadershipNotified,
    MeetingConvened,
    MeetingDecisionDone,
    MeetingDecisionRecorded,
    MeetingDecisionReported,
    MeetingDecisionReportSubmitted,
    MeetingHeld,
    MeetingSummoned,
    PersonalDataErased,
    ReferralSubmitted,
    StaffAssessed,
    TipFollowUpUnreachable,
    TipRated,
    TipReceived,
    TipSupplemented,
    WhistleBlown,
    WhistleNotified,
    WhistleReceiptSubmitted,
    WhistleReplied,
    WhistleReplySubmitted,
    WhistleReported,
)
from contracts.topics import (
    DEPARTMENT,
    DEPARTMENT_CONSUMERS,
    DEPARTMENT_MESSAGES,
    TOPICS,
    BrokerDepartment,
    all_topic_names,
    department_topic,
    dlq_topic,
    topic_for,
)
from reference.county import ReferenceData, load_counties, load_reference
from services.dispatch import consumers as dispatch_consumers
from services.escalation import consumers as escalation_consumers
from services.intake import consumers as intake_consumers
from services.ledger import consumers as ledger_consumers
from services.runtime.inbox import Subscription
from services.runtime.service import Runtime
from services.runtime.settings import SERVICES, Settings

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
TIP_ID = UUID("01956f3a-0000-7000-8000-000000000001")
CASE_ID = UUID("01956f3a-0000-7000-8000-000000000002")
WHISTLE_ID = UUID("01956f3a-0000-7000-8000-000000000006")
REQUEST_ID = UUID("01956f3a-0000-7000-8000-000000000007")

STEP: dict[str, Any] = {
    "case_id": CASE_ID,
    "tip_id": TIP_ID,
    "actor": "S0025",
    "actor_role": "unit_member",
    "version": 3,
    "township_code": "T03",
    "unit_id": "T03-CGJ",
}

LADDER: dict[str, Any] = {
    "case_id": CASE_ID,
    "kind": "resolution",
    "round": 1,
    "due_at": NOW,
    "scheduled_for": NOW + timedelta(days=1),
    "fired_at": NOW + timedelta(days=1, seconds=3),
    "late_by_seconds": 3,
    "policy_id": "P-GENERAL",
}


SAMPLES: dict[type[EventData], Callable[[], EventData]] = {
    TipReceived: lambda: TipReceived(
        tip_id=TIP_ID,
        tracking_no="WH20250301-0001",
        channel="hotline",
        text="小区门口垃圾堆放三天无人清运",
        location=GeoPoint(lat=30.1, lon=120.2),
        address="城关镇幸福路 8 号",
        contact=ContactRef(masked_phone="138****1234", phone_hash="ab12"),
        attachments=["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
        received_at=NOW,
    ),
    PersonalDataErased: lambda: PersonalDataErased(
        tip_id=TIP_ID,
        tracking_no="WH20250301-0001",
        reason="request",
        legal_basis="《个人信息保护法》第四十七条",
        erased_at=NOW,
        erased_by="S0001",
    ),
    CaseOpened: lambda: CaseOpened(
        case_id=CASE_ID,
        tip_id=TIP_ID,
        matter_code="HW-001",
        matter_name="生活垃圾清运",
        confidence=0.92,
        township_code="330100001",
        urgency="general",
        catalogue_version="2025.1",
        explanation=["关键词: 垃圾"],
    ),
    CaseTriageRequired: lambda: CaseTriageRequired(
        case_id=CASE_ID,
        tip_id=TIP_ID,
        queue="county",
        reason="no_location",
        catalogue_version="2025.1",
    ),
    CaseAssigned: lambda: CaseAssigned(
        case_id=CASE_ID,
        tip_id=TIP_ID,
        unit_id="cgj",
        unit_kind="department",
        township_code="330100001",
        staff_id="s-17",
        matter_code="HW-001",
        authority="county",
        urgency="general",
        deadline_policy="standard",
        catalogue_version="2025.1",
        rule="matter_owner",
        explanation=["事项归属城管局"],
    ),
    CaseAccepted: lambda: CaseAccepted(**STEP),
    CaseRejected: lambda: CaseRejected(
        **STEP, reason="不属于本单位职责", rejections=1, queue="township:T03"
    ),
    CaseStarted: lambda: CaseStarted(**STEP),
    CaseProgressRecorded: lambda: CaseProgressRecorded(
        **STEP, note="已到现场核实", evidence=["ab" * 32]
    ),
    CaseResolved: lambda: CaseResolved(
        **STEP,
        resolution="rectified",
        note="责令限期整改",
        rectification_due=date(2025, 3, 15),
        evidence=["cd" * 32],
    ),
    CaseClosed: lambda: CaseClosed(**STEP),
    CaseReopened: lambda: CaseReopened(**STEP, reason="群众不满意"),
    CaseContacted: lambda: CaseContacted(
        **STEP, contacted_at=NOW - timedelta(minutes=20), method="phone", note="电话告知已受理"
    ),
    TipFollowUpUnreachable: lambda: TipFollowUpUnreachable(
        tip_id=TIP_ID,
        case_id=CASE_ID,
        channel="hotline",
        call_id="CALL-20250301-0042",
        recorded_by="operator-7",
        attempted_at=NOW,
    ),
    DeadlineStopped: lambda: DeadlineStopped(
        case_id=CASE_ID,
        kind="first_response",
        round=1,
        due_at=NOW + timedelta(hours=2),
        stopped_at=NOW + timedelta(hours=3),
        on_time=False,
        late_by_seconds=3600,
        stopped_by="whistle.case.accepted",
    ),
    DeadlinesSet: lambda: DeadlinesSet(
        case_id=CASE_ID,
        policy_id="standard",
        urgency="general",
        deadlines=[
            Deadline(
                kind="first_response",
                due_at=NOW + timedelta(hours=2),
                warn_at=NOW + timedelta(hours=1),
            )
        ],
    ),
    DeadlineWarning: lambda: DeadlineWarning.model_validate(
        LADDER | {"scheduled_for": NOW, "fired_at": NOW, "late_by_seconds": 0}
    ),
    DeadlineOverdue: lambda: DeadlineOverdue.model_validate({**LADDER, "scheduled_for": NOW}),
    CaseChased: lambda: CaseChased.model_validate(LADDER),
    CaseSupervised: lambda: CaseSupervised.model_validate(LADDER),
    LeadershipNotified: lambda: LeadershipNotified.model_validate(
        {**LADDER, "supervision_event_id": "01956f3a-0000-7000-8000-000000000003"}
    ),
    TipSupplemented: lambda: TipSupplemented(
        tip_id=TIP_ID,
        channel="wechat",
        external_ref="23456789012345",
        location=GeoPoint(lat=30.1, lon=120.2),
        supplemented_at=NOW,
    ),
    TipRated: lambda: TipRated(
        tip_id=TIP_ID,
        case_id=CASE_ID,
        rating="dissatisfied",
        comment="垃圾又堆起来了",
        channel="web",
        rated_at=NOW,
    ),
    CaseMerged: lambda: CaseMerged(
        case_id=CASE_ID,
        tip_id=TIP_ID,
        matter_code="HW-001",
        rule="within_distance",
        distance_m=120.5,
        window_hours=72,
        catalogue_version="2025.1",
        explanation=["同一事项, 相距 121 米, 72 小时内"],
    ),
    CaseSplit: lambda: CaseSplit(
        **STEP,
        split_tip_id=UUID("01956f3a-0000-7000-8000-000000000004"),
        split_case_id=UUID("01956f3a-0000-7000-8000-000000000005"),
        reason="不是同一处垃圾",
    ),
    CaseAdmissionProposed: lambda: CaseAdmissionProposed(
        **{**STEP, "actor_role": "county_supervisor", "unit_id": None},
        proposal_id=UUID("01956f3a-0000-7000-8000-000000000006"),
        matter_code="LD-005",
        proposed_unit_id="T05-SFJ",
        approving_body="县人民政府",
        document_no="五政发〔2026〕12号",
        reason="劳动争议调处由司法所承担",
    ),
    CaseAdmissionDecided: lambda: CaseAdmissionDecided(
        **{**STEP, "actor_role": "county_government", "unit_id": None},
        proposal_id=UUID("01956f3a-0000-7000-8000-000000000006"),
        approved=True,
        matter_code="LD-005",
        approving_body="县人民政府",
        document_no="五政发〔2026〕12号",
        opinion="同意",
    ),
    CaseLegalReviewRequested: lambda: CaseLegalReviewRequested(
        **{
            **STEP,
            "acting_in_name_of": {"kind": "township", "code": "T03", "name": "城关镇"},
            "legal_basis": "《无证无照经营查处办法》第十三条",
            "document_type": "城关镇行政执法文书",
        },
        review_id=UUID("01956f3a-0000-7000-8000-000000000007"),
        note="无照经营，罚款并没收违法所得",
        penalty={"kinds": ["fine", "confiscation"], "fine_yuan": 20000},
        major_decisions=["罚款金额超过10000元", "没收违法所得、没收非法财物"],
    ),
    CaseAssistanceRequested: lambda: CaseAssistanceRequested(
        **{**STEP, "unit_id": "YJGLJ-ZD"},
        assistance_id=UUID("01956f3a-0000-7000-8000-000000000009"),
        department_code="YJGLJ",
        assisting_unit_id="T03-TEAM",
        task="协助疏散周边群众、设置警戒",
        urgency="emergency",
        deadline_policy="P-EMERGENCY",
    ),
    ReferralSubmitted: lambda: ReferralSubmitted(
        referral_id=UUID("01956f3a-0000-7000-8000-00000000000a"),
        department_code="CGJ",
        matter_code="CG-001",
        township_code="T03",
        grid_id="T03V02G01",
        facts="巡查发现村口占道摆摊，依法移送",
        officer="王科长",
    ),
    CaseReferred: lambda: CaseReferred(
        case_id=CASE_ID,
        tip_id=UUID("01956f3a-0000-7000-8000-000000000008"),
        referral_id=UUID("01956f3a-0000-7000-8000-000000000008"),
        department_code="CGJ",
        referred_by="cgj-officer-1",
        matter_code="CG-001",
        township_code="T03",
        grid_id="T03V02G01",
        village_code="T03V02",
        place="五里铺村村口",
        facts="巡查发现村口占道摆摊，属乡镇赋权事项，依法移送",
        urgency="general",
        deadline_policy="P-GENERAL",
        catalogue_version="2026.11",
        referred_at=NOW,
    ),
    CaseLegalReviewDecided: lambda: CaseLegalReviewDecided(
        **{**STEP, "actor_role": "legal_reviewer"},
        review_id=UUID("01956f3a-0000-7000-8000-000000000007"),
        approved=False,
        opinion="罚款数额依据不足，请补充违法所得计算",
        requested_by="S001",
        requested_at=NOW,
    ),
    WhistleBlown: lambda: WhistleBlown(
        **STEP,
        whistle_id=WHISTLE_ID,
        departments=["SCJGJ", "ZJJ"],
        reason_code="beyond_powers",
        reason="超出乡镇执法权限",
        rule="county_only_item",
        matter_code="HW-001",
        urgency="general",
    ),
    ExtensionRequested: lambda: ExtensionRequested(
        case_id=CASE_ID,
        request_id=REQUEST_ID,
        kind="resolution",
        round=1,
        due_at=NOW,
        requested_due_at=NOW + timedelta(days=5),
        reason="需等待检测报告",
        requested_by="S0025",
        requested_by_role="unit_member",
    ),
    ExtensionDecided: lambda: ExtensionDecided(
        case_id=CASE_ID,
        request_id=REQUEST_ID,
        kind="resolution",
        round=1,
        approved=True,
        old_due_at=NOW,
        new_due_at=NOW + timedelta(days=5),
        decided_by="S0001",
        decided_by_role="county_supervisor",
    ),
    DeadlineRecomputed: lambda: DeadlineRecomputed(
        case_id=CASE_ID,
        kind="resolution",
        round=1,
        old_due_at=NOW,
        due_at=NOW + timedelta(days=2),
        warn_at=NOW + timedelta(days=1),
        calendar_version="2027.1",
        provisional_reason="the business calendar has no year 2027",
    ),
    WhistleNotified: lambda: WhistleNotified(
        case_id=CASE_ID,
        whistle_id=WHISTLE_ID,
        department_code="SCJGJ",
        township_code="T03",
        matter_code="HW-001",
        reason_code="beyond_powers",
        reason="超出乡镇执法权限",
        urgency="general",
        receipt_due_at=NOW + timedelta(days=1),
        reply_due_at=NOW + timedelta(days=15),
        policy_id="P-GENERAL",
    ),
    WhistleReceiptSubmitted: lambda: WhistleReceiptSubmitted(
        case_id=CASE_ID, whistle_id=WHISTLE_ID, department_code="SCJGJ", receipt_no="SC-2025-17"
    ),
    WhistleReplySubmitted: lambda: WhistleReplySubmitted(
        case_id=CASE_ID, whistle_id=WHISTLE_ID, department_code="SCJGJ", result="已联合查处"
    ),
    WhistleReported: lambda: WhistleReported(
        case_id=CASE_ID,
        whistle_id=WHISTLE_ID,
        department_code="SCJGJ",
        receipt_no="SC-2025-17",
        reported_at=NOW + timedelta(hours=3),
        due_at=NOW + timedelta(days=1),
        on_time=True,
        latency_seconds=10800,
        via="http",
        actor="D-SCJGJ-01",
    ),
    WhistleReplied: lambda: WhistleReplied(
        case_id=CASE_ID,
        whistle_id=WHISTLE_ID,
        department_code="SCJGJ",
        result="已联合查处",
        replied_at=NOW + timedelta(days=2),
        due_at=NOW + timedelta(days=15),
        on_time=True,
        via="kafka",
    ),
    MeetingConvened: lambda: MeetingConvened(
        meeting_id=WHISTLE_ID,
        township_code="T03",
        held_at=NOW + timedelta(days=1),
        place="城关镇人民政府三楼会议室",
        departments=["SCJGJ", "CGJ"],
        agenda=["五里铺村占道经营反复投诉"],
        case_ids=[CASE_ID],
        whistle_ids=[WHISTLE_ID],
        convened_by="L-T03-01",
        convened_at=NOW,
    ),
    MeetingSummoned: lambda: MeetingSummoned(
        meeting_id=WHISTLE_ID,
        department_code="CGJ",
        township_code="T03",
        held_at=NOW + timedelta(days=1),
        place="城关镇人民政府三楼会议室",
        agenda=["五里铺村占道经营反复投诉"],
        case_ids=[CASE_ID],
    ),
    MeetingHeld: lambda: MeetingHeld(
        meeting_id=WHISTLE_ID,
        township_code="T03",
        attended=["CGJ"],
        absent=["SCJGJ"],
        minutes="会议议定：城管局牵头整治。",
        recorded_by="L-T03-01",
        recorded_at=NOW + timedelta(days=1),
    ),
    MeetingDecisionRecorded: lambda: MeetingDecisionRecorded(
        meeting_id=WHISTLE_ID,
        decision_id=TIP_ID,
        case_id=CASE_ID,
        township_code="T03",
        owner_kind="department",
        owner_code="CGJ",
        task="清理占道摊点",
        due_at=NOW + timedelta(days=7),
        warn_at=NOW + timedelta(days=5),
        policy_id="P-GENERAL",
        recorded_by="L-T03-01",
        recorded_at=NOW + timedelta(days=1),
    ),
    MeetingDecisionReportSubmitted: lambda: MeetingDecisionReportSubmitted(
        meeting_id=WHISTLE_ID, decision_id=TIP_ID, department_code="CGJ", result="已清理"
    ),
    MeetingDecisionReported: lambda: MeetingDecisionReported(
        meeting_id=WHISTLE_ID,
        decision_id=TIP_ID,
        case_id=CASE_ID,
        unit_id="T03-TEAM",
        result="已安排每日巡查",
        actor="S0025",
        reported_at=NOW + timedelta(days=6),
    ),
    MeetingDecisionDone: lambda: MeetingDecisionDone(
        meeting_id=WHISTLE_ID,
        decision_id=TIP_ID,
        case_id=CASE_ID,
        owner_kind="department",
        owner_code="CGJ",
        result="已清理",
        done_at=NOW + timedelta(days=6),
        due_at=NOW + timedelta(days=7),
        on_time=True,
        via="http",
    ),
    StaffAssessed: lambda: StaffAssessed(
        assessment_id=WHISTLE_ID,
        staff_id="S0077",
        unit_id="T03-SCJGJ",
        department_code="SCJGJ",
        township_code="T03",
        period="2026-12",
        grade="competent",
        opinion="工作认真负责。",
        seal="城关镇人民政府",
        assessed_by="L-T03-01",
        assessed_at=NOW,
    ),
    InspectionTaskPlanned: lambda: InspectionTaskPlanned(
        task_id=WHISTLE_ID,
        plan_id="JOINT-T03",
        kind="joint",
        name="城关镇综合查一次",
        township_code="T03",
        unit_id="T03-CGJ",
        grid_ids=[],
        due_on=NOW.date(),
        planned_at=NOW,
    ),
    InspectionTaskCompleted: lambda: InspectionTaskCompleted(
        task_id=WHISTLE_ID,
        plan_id="T03-P01",
        kind="patrol",
        township_code="T03",
        unit_id="T03-CGJ",
        due_on=NOW.date(),
        findings=[InspectionFinding(text="迎宾路有商户占道经营", grid_id="T03V01G01")],
        completed_by="S0100",
        completed_at=NOW,
    ),
}


def _event(model: type[EventData]) -> CloudEvent:
    data = SAMPLES[model]()
    return new_event(f"whistle/{model.__name__.lower()}", "subject-1", data, NOW)


def _wire(event: CloudEvent) -> dict[str, Any]:
    return json.loads(event.to_bytes())


@cache
def _validator(event_type: str) -> Draft202012Validator:
    path = ROOT / generate.schema_path(event_type)
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def _asyncapi() -> dict[str, Any]:
    return yaml.safe_load((ROOT / generate.ASYNCAPI_PATH).read_text(encoding="utf-8"))


def _ids(models: tuple[type[EventData], ...]) -> list[str]:
    return [m.event_type for m in models]


# (a) the checked-in files are what the generator produces


def test_samples_cover_every_event_model() -> None:
    assert set(SAMPLES) == set(EVENT_MODELS), "add a sample payload for each new event model"


def test_generated_contracts_are_up_to_date() -> None:
    rendered = generate.render()
    assert set(rendered) >= {
        generate.ASYNCAPI_PATH,
        generate.TOPICS_DOC_PATH,
        generate.schema_path("cloudevent"),
    }
    assert {generate.schema_path(m.event_type) for m in EVENT_MODELS} <= set(rendered)
    stale = generate.stale_files(ROOT)
    if stale:
        first = ROOT / stale[0]
        current = first.read_text(encoding="utf-8") if first.is_file() else ""
        diff = difflib.unified_diff(
            current.splitlines(),
            rendered.get(stale[0], "").splitlines(),
            f"{stale[0]} (checked in)",
            f"{stale[0]} (generated)",
            lineterm="",
        )
        pytest.fail(
            f"generated contracts are stale: {', '.join(stale)}.\n"
            "Run `make contracts` and commit the result.\n" + "\n".join(list(diff)[:40]),
            pytrace=False,
        )


def test_check_mode_reports_a_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert generate.main([], root=tmp_path) == 0
    assert generate.main(["--check"], root=tmp_path) == 0
    (tmp_path / generate.ASYNCAPI_PATH).write_text("asyncapi: 2.6.0\n", encoding="utf-8")
    (tmp_path / generate.schema_path("whistle.gone")).write_text("{}", encoding="utf-8")
    topics_doc = tmp_path / generate.TOPICS_DOC_PATH
    topics_doc.write_text(topics_doc.read_text(encoding="utf-8").replace("ledger", "nobody"))
    capsys.readouterr()
    assert generate.main(["--check"], root=tmp_path) == 1
    err = capsys.readouterr().err
    assert "make contracts" in err
    assert generate.ASYNCAPI_PATH in err
    assert generate.schema_path("whistle.gone") in err
    assert generate.TOPICS_DOC_PATH in err


def test_render_is_deterministic() -> None:
    assert generate.render() == generate.render()


# (b) the AsyncAPI document is self-contained and covers every topic


def _refs(node: Any, at: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield at, value
            else:
                yield from _refs(value, f"{at}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, f"{at}/{i}")


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} points outside the document"
    node: Any = doc
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def test_every_ref_in_asyncapi_resolves() -> None:
    doc = _asyncapi()
    refs = list(_refs(doc))
    assert refs
    for where, ref in refs:
        try:
            _resolve(doc, ref)
        except (KeyError, IndexError, ValueError) as exc:
            pytest.fail(f"{where}: $ref {ref!r} does not resolve ({exc!r})")


def test_asyncapi_shape() -> None:
    doc = _asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"] == {
        "title": "Whistle events",
        "version": generate.API_VERSION,
        "description": doc["info"]["description"],
    }
    assert doc["defaultContentType"] == "application/cloudevents+json"
    addresses = [c["address"] for c in doc["channels"].values()]
    assert addresses[: len(TOPICS)] == [t.name for t in TOPICS]
    dept = next(c for c in doc["channels"].values() if c["address"] == "escalation.dept.{code}.v1")
    assert set(dept["parameters"]) == {"code"}
    county = "escalation.dept.{county}.{code}.v1"  # another county's department (tenancy)
    theirs = next(c for c in doc["channels"].values() if c["address"] == county)
    assert set(theirs["parameters"]) == {"county", "code"}

    operations = doc["operations"]
    assert "intake.publishTipReceived" in operations
    for topic in TOPICS:
        for model in topic.messages:
            op = operations[f"{topic.producer}.publish{model.__name__}"]
            assert op["action"] == "send"
            assert _resolve(doc, op["channel"]["$ref"])["address"] == topic.name
    for model in DEPARTMENT_MESSAGES:
        op = operations[f"escalation.publishDepartment{model.__name__}"]
        assert _resolve(doc, op["channel"]["$ref"])["address"] == "escalation.dept.{code}.v1"
        op = operations[f"escalation.publishCountyDepartment{model.__name__}"]
        assert _resolve(doc, op["channel"]["$ref"])["address"] == county
    assert len(operations) == sum(len(t.messages) for t in TOPICS) + 2 * len(DEPARTMENT_MESSAGES)

    messages = doc["components"]["messages"]
    assert {m["name"] for m in messages.values()} == {m.event_type for m in EVENT_MODELS}
    assert "$defs" not in json.dumps(doc)


@pytest.mark.parametrize("model", EVENT_MODELS, ids=_ids(EVENT_MODELS))
def test_asyncapi_payload_schema_validates_real_events(model: type[EventData]) -> None:
    doc = _asyncapi()
    message = doc["components"]["messages"][model.__name__]
    schema = {"$ref": message["payload"]["$ref"], "components": doc["components"]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    validator.validate(_wire(_event(model)))
    wrong = _wire(_event(model)) | {"type": "whistle.not.this"}
    assert not validator.is_valid(wrong)


# (c) real events validate against their generated schema; broken ones do not


@pytest.mark.parametrize("model", EVENT_MODELS, ids=_ids(EVENT_MODELS))
def test_real_event_validates(model: type[EventData]) -> None:
    event = _event(model)
    _validator(model.event_type).validate(_wire(event))
    envelope = json.loads((ROOT / generate.schema_path("cloudevent")).read_text(encoding="utf-8"))
    Draft202012Validator(envelope).validate(_wire(event))


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda wire: wire["data"].pop(key)


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(wire: dict[str, Any]) -> None:
        node = wire
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "wrong type": _set(("type",), "whistle.something.else"),
    "naive time": _set(("time",), "2025-03-01T09:30:00"),
    "time not a date": _set(("time",), "yesterday"),
    "specversion 0.3": _set(("specversion",), "0.3"),
    "no specversion": lambda wire: wire.pop("specversion"),
    "no id": lambda wire: wire.pop("id"),
    "empty source": _set(("source",), ""),
    "unknown data field": _set(("data", "surprise"), 1),
    "data not an object": _set(("data",), "hello"),
}


@pytest.mark.parametrize("model", EVENT_MODELS, ids=_ids(EVENT_MODELS))
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutated_event_is_refused(model: type[EventData], mutation: str) -> None:
    wire = _wire(_event(model))
    MUTATIONS[mutation](wire)
    assert not _validator(model.event_type).is_valid(wire)


@pytest.mark.parametrize("model", EVENT_MODELS, ids=_ids(EVENT_MODELS))
def test_event_missing_its_key_field_is_refused(model: type[EventData]) -> None:
    key = "tip_id" if model in (TipReceived, TipSupplemented, PersonalDataErased) else "case_id"
    key = (
        "staff_id"
        if model is StaffAssessed
        else "task_id"
        if model in (InspectionTaskPlanned, InspectionTaskCompleted)
        else "referral_id"
        if model is ReferralSubmitted
        else "meeting_id"  # a joint meeting's events are keyed by the meeting (联席会议)
        if model.event_type.startswith("whistle.meeting.")
        else key
    )
    wire = _wire(_event(model))
    del wire["data"][key]
    errors = list(_validator(model.event_type).iter_errors(wire))
    assert any(key in e.message for e in errors), errors


def test_malformed_uuid_is_refused() -> None:
    wire = _wire(_event(CaseOpened))
    wire["data"]["case_id"] = "not-a-uuid"
    assert not _validator(CaseOpened.event_type).is_valid(wire)


def test_event_of_another_type_is_refused() -> None:
    wire = _wire(_event(CaseAssigned))
    assert not _validator(CaseOpened.event_type).is_valid(wire)


def test_required_nullable_fields_survive_the_wire() -> None:
    data = SAMPLES[CaseOpened]().model_copy(update={"matter_code": None, "township_code": None})
    event = new_event("whistle/dispatch", str(CASE_ID), data, NOW)
    _validator(CaseOpened.event_type).validate(_wire(event))
    assert event.payload(CaseOpened) == data


# (d) the envelope and the topic registry


def _envelope(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": "e-1",
        "source": "whistle/test",
        "type": TipReceived.event_type,
        "time": NOW,
        "data": {},
    }
    return fields | overrides


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValidationError, match="UTC offset"):
        CloudEvent(**_envelope(time=datetime(2025, 3, 1, 9, 30)))
    wire = json.dumps(_envelope(time="2025-03-01T09:30:00"))
    with pytest.raises(ValidationError, match="UTC offset"):
        CloudEvent.model_validate_json(wire)


def test_time_serialises_in_utc_with_z() -> None:
    beijing = timezone(timedelta(hours=8))
    event = CloudEvent(**_envelope(time=datetime(2025, 3, 1, 17, 30, 15, tzinfo=beijing)))
    assert event.time == NOW.replace(second=15)
    assert _wire(event)["time"] == "2025-03-01T09:30:15Z"
    assert json.loads(event.model_dump_json())["time"].endswith("Z")


def test_bytes_round_trip_keeps_the_idempotency_key() -> None:
    event = _event(TipReceived)
    back = CloudEvent.model_validate_json(event.to_bytes())
    assert (back.source, back.id) == (event.source, event.id)
    assert back == event
    assert back.payload(TipReceived) == SAMPLES[TipReceived]()


def test_to_bytes_leaves_out_unset_attributes() -> None:
    event = CloudEvent(**_envelope())
    assert "subject" not in _wire(event)


@pytest.mark.parametrize("model", EVENT_MODELS, ids=_ids(EVENT_MODELS))
def test_topic_for_maps_each_event_to_the_topic_listing_it(model: type[EventData]) -> None:
    listing = [t.name for t in TOPICS if model in t.messages]
    if not listing:
        assert model in DEPARTMENT_MESSAGES, "list each event model on a topic"
        with pytest.raises(KeyError):
            topic_for(model.event_type)
        return
    assert listing == [topic_for(model.event_type)]


def test_topic_for_unknown_type_raises() -> None:
    with pytest.raises(KeyError):
        topic_for("whistle.unknown.event")


def test_all_topic_names_include_departments_and_dead_letters() -> None:
    names = all_topic_names([BrokerDepartment("SCJGJ"), BrokerDepartment("SCJGJ", "140998")])
    assert "escalation.dept.scjgj.v1" in names
    assert "escalation.dept.140998.scjgj.v1" in names
    live = [n for n in names if not n.endswith(".dlq")]
    assert set(live) >= {t.name for t in TOPICS}
    for name in live:
        assert dlq_topic(name) in names
    assert len(names) == len(set(names)) == 2 * len(live)


# (e) who consumes what: the registry's consumers are what each service's consumers.py subscribes


@cache
def _reference() -> ReferenceData:
    return load_reference(ROOT / "deploy/config")


def _not_called() -> NoReturn:
    raise AssertionError("building a subscription reads no policy or calendar")


def _runtime() -> Runtime:
    """Enough of a service's runtime to build its subscription: no handler runs here."""
    settings = Settings(config_dir=ROOT / "deploy/config")
    return cast(
        Runtime,
        SimpleNamespace(
            settings=settings, clock=lambda: NOW, state={}, verifier=None, counties=None
        ),
    )


def _subscription(service: str) -> Subscription:
    if service == "escalation":
        return escalation_consumers.subscription(
            _runtime(), policies=_not_called, calendar=_not_called
        )
    if service == "ledger":
        return ledger_consumers.subscription(_runtime(), [d.topic for d in _departments()])
    return {"intake": intake_consumers, "dispatch": dispatch_consumers}[service].subscription(
        _runtime()
    )


def _departments() -> list[BrokerDepartment]:
    return load_counties(ROOT / "deploy/config").departments()


def _consumed_by(service: str) -> set[str]:
    """The topics the registry says ``service`` consumes, departments' as every county's
    reference data names them (another county's under its code)."""
    topics = {t.name for t in TOPICS if service in t.consumers}
    if service in DEPARTMENT_CONSUMERS:
        codes = _reference().department_codes()
        topics |= {department_topic(code) for code in codes}
        topics |= {department_topic(code, "140998") for code in codes}  # 桃林县's, same codes
    return topics


def test_every_consumer_in_the_registry_is_a_service_or_a_department() -> None:
    named = {c for t in TOPICS for c in t.consumers} | set(DEPARTMENT_CONSUMERS)
    assert named <= {*SERVICES, DEPARTMENT}
    for topic in TOPICS:
        assert topic.consumers, f"{topic.name}: say who consumes it"
        assert "ledger" in topic.consumers, f"{topic.name}: the ledger records every topic"
    assert "ledger" in DEPARTMENT_CONSUMERS


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_subscribes_to_the_topics_the_registry_says(service: str) -> None:
    subscription = _subscription(service)
    assert set(subscription.topics) == _consumed_by(service)
    assert len(subscription.topics) == len(set(subscription.topics))


def test_escalation_handles_the_cases_and_the_departments_submissions() -> None:
    subscription = _subscription("escalation")
    handled = set(subscription.handlers) | set(subscription.submissions)
    assert set(subscription.submissions) == {
        WhistleReceiptSubmitted.event_type,
        WhistleReplySubmitted.event_type,
        MeetingDecisionReportSubmitted.event_type,
    }
    assert handled == {
        CaseReferred.event_type,
        CaseAssistanceRequested.event_type,
        CaseProgressRecorded.event_type,
        CaseAssigned.event_type,
        CaseAccepted.event_type,
        CaseResolved.event_type,
        CaseReopened.event_type,
        CaseLegalReviewRequested.event_type,
        CaseLegalReviewDecided.event_type,
        CaseClosed.event_type,
        WhistleBlown.event_type,
        WhistleReceiptSubmitted.event_type,
        WhistleReplySubmitted.event_type,
        MeetingDecisionReportSubmitted.event_type,
        MeetingDecisionReported.event_type,
    }
    carried = {m.event_type for t in TOPICS if "escalation" in t.consumers for m in t.messages}
    assert handled <= carried, "a handler for an event type no consumed topic carries"


def test_the_ledger_records_every_event_type_on_every_topic_and_department() -> None:
    subscription = _subscription("ledger")
    record = subscription.any_type
    assert record is not None and subscription.before_commit is not None
    assert set(subscription.handlers) == {m.event_type for m in EVENT_MODELS}
    assert all(handler is record for handler in subscription.handlers.values())
    # A type the registry does not know reaches the inbox's admission too, which parks it in
    # the topic's dead-letter topic rather than let it pass unseen (tests/unit/test_admission.py).
    assert subscription.handler_for("whistle.from.a.newer.producer") is record
    # Every department of the reference data has its topic in the list ...
    departments = _reference().department_codes()
    assert departments
    for code in departments:
        assert department_topic(code) in subscription.topics
    # ... and the pattern the consumer subscribes by matches all of them, a department added
    # by a reference reload while the ledger runs too, and never a dead-letter topic.
    assert subscription.pattern is not None
    pattern = re.compile(subscription.pattern)
    for name in subscription.topics:
        assert pattern.match(name), name
        assert not pattern.match(dlq_topic(name)), dlq_topic(name)
    assert pattern.match(department_topic("XINJU-2"))
    assert not pattern.match("escalation.unregistered.v1")
    assert not pattern.match("xdispatch.cases.v1")
