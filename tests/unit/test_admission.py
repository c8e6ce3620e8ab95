"""What may be taken from where (issue 13): the registry's rule (``contracts.topics.admissible``,
``Submitters``) and the inbox applying it for every service, the ledger's included, without a
broker: a refused event never reaches a handler."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import cast
from uuid import uuid4

import pytest
from aiokafka import ConsumerRecord
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.envelope import CloudEvent, EventData, new_event
from contracts.events import CaseResolved, WhistleReceiptSubmitted
from contracts.topics import (
    CASES,
    DEPARTMENTS,
    TOPICS,
    WHISTLES,
    BrokerDepartment,
    admissible,
    department_topic,
    producer_source,
)
from services.dispatch.cases import SOURCE as DISPATCH
from services.escalation import SOURCE as ESCALATION
from services.escalation import consumers as escalation_consumers
from services.escalation import dept_listen
from services.escalation.dept_listen import submission_headers
from services.intake import SOURCE as INTAKE
from services.ledger import consumers as ledger_consumers
from services.runtime.auth import TokenVerifier, issue_token
from services.runtime.inbox import Handler, InboxConsumer, Refused, Subscription
from services.runtime.service import Runtime

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def test_each_service_produces_under_the_source_the_registry_names() -> None:
    assert {name: producer_source(name) for name in ("intake", "dispatch", "escalation")} == {
        "intake": INTAKE,
        "dispatch": DISPATCH,
        "escalation": ESCALATION,
    }
    assert {t.producer for t in TOPICS} == {"intake", "dispatch", "escalation"}


@pytest.mark.parametrize(
    ("topic", "event_type", "source", "reason"),
    [
        (CASES, "whistle.case.resolved", "whistle/dispatch", None),
        (WHISTLES, "whistle.whistle.reported", "whistle/escalation", None),
        (WHISTLES, "whistle.whistle.receipt_submitted", "whistle/dept/cgj", None),
        (WHISTLES, "whistle.whistle.reply_submitted", "whistle/dept/scjgj", None),
        (department_topic("CGJ"), "whistle.whistle.notified", "whistle/escalation", None),
        (department_topic("NEW-1"), "whistle.case.chased", "whistle/escalation", None),
        # another county's department's own topic (tenancy): the same registry entry
        (department_topic("CGJ", "140998"), "whistle.case.chased", "whistle/escalation", None),
        (
            WHISTLES,
            "whistle.case.resolved",
            "whistle/dispatch",
            "whistle.case.resolved may not arrive on escalation.whistles.v1",
        ),
        (
            CASES,
            "whistle.case.resolved",
            "whistle/evil",
            "source whistle/evil is not the producer of dispatch.cases.v1 (whistle/dispatch)",
        ),
        (
            WHISTLES,
            "whistle.whistle.reported",
            "whistle/dept/cgj",
            "source whistle/dept/cgj is not the producer of escalation.whistles.v1 "
            "(whistle/escalation)",
        ),
        (
            WHISTLES,
            "whistle.whistle.receipt_submitted",
            "whistle/escalation",
            "source whistle/escalation is not one of the county departments (whistle/dept/{code})",
        ),
        (
            CASES,
            "whistle.whistle.receipt_submitted",
            "whistle/dept/cgj",
            "whistle.whistle.receipt_submitted may not arrive on dispatch.cases.v1",
        ),
        (
            department_topic("CGJ"),
            "whistle.case.resolved",
            "whistle/escalation",
            "whistle.case.resolved may not arrive on escalation.dept.cgj.v1",
        ),
        (
            CASES,
            "whistle.from.a.newer.producer",
            "whistle/dispatch",
            "whistle.from.a.newer.producer may not arrive on dispatch.cases.v1",
        ),
        (
            "dispatch.cases.v1.dlq",
            "whistle.case.resolved",
            "whistle/dispatch",
            "dispatch.cases.v1.dlq is not a topic of the registry",
        ),
    ],
)
def test_an_event_type_arrives_only_on_its_topics_from_their_producer(
    topic: str, event_type: str, source: str, reason: str | None
) -> None:
    assert admissible(topic, event_type, source) == reason


@pytest.mark.parametrize(
    ("roles", "scopes", "data", "source", "reason"),
    [
        ({"county_department"}, {"dept:CGJ"}, {"department_code": "CGJ"}, "whistle/dept/cgj", None),
        ({"county_department"}, {"dept:*"}, {"department_code": "CGJ"}, "whistle/dept/cgj", None),
        (
            {"county_department"},
            {"dept:CGJ"},
            {"department_code": "SCJGJ"},
            "whistle/dept/scjgj",
            "the token does not act for dept:SCJGJ",
        ),
        (
            {"county_supervisor"},
            {"dept:CGJ"},
            {"department_code": "CGJ"},
            "whistle/dept/cgj",
            "the token does not hold the role county_department",
        ),
        (
            {"county_department"},
            {"dept:CGJ"},
            {"department_code": "CGJ"},
            "whistle/dept/scjgj",
            "source whistle/dept/scjgj is not whistle/dept/cgj, the source of CGJ",
        ),
        (
            {"county_department"},
            {"dept:CGJ"},
            {},
            "whistle/dept/cgj",
            "the submission names no department_code",
        ),
    ],
)
def test_a_department_submits_only_for_the_departments_its_token_acts_for(
    roles: set[str], scopes: set[str], data: dict[str, str], source: str, reason: str | None
) -> None:
    assert DEPARTMENTS.refusal(data, source, roles, scopes) == reason


# --- the inbox, for the ledger and escalation ---------------------------------------------


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def _token(private: bytes, role: str, *scopes: str) -> str:
    return issue_token(
        private,
        subject=f"test-{role}",
        roles=[role],
        scopes=list(scopes),
        issuer="whistle",
        audience="whistle",
        now=datetime.now(UTC),
    )


@pytest.fixture
def runtime(keys: tuple[bytes, bytes]) -> Runtime:
    verifier = TokenVerifier(keys[1], issuer="whistle", audience="whistle")
    return cast(
        Runtime, SimpleNamespace(clock=lambda: NOW, state={}, verifier=verifier, counties=None)
    )


@pytest.fixture
async def consumers(runtime: Runtime) -> Iterator[dict[str, InboxConsumer]]:
    subscriptions = {
        "ledger": ledger_consumers.subscription(
            runtime, [department_topic("CGJ"), department_topic("SCJGJ")]
        ),
        "escalation": escalation_consumers.subscription(
            runtime,
            policies=lambda: None,
            calendar=lambda: None,  # type: ignore[arg-type,return-value]
        ),
    }
    yield {
        name: InboxConsumer(
            service=name,
            subscription=subscription,
            sessions=None,  # type: ignore[arg-type]
            bootstrap="127.0.0.1:1",
            dlq_producer=None,  # type: ignore[arg-type]
            clock=runtime.clock,
        )
        for name, subscription in subscriptions.items()
    }


def _record(topic: str, event: CloudEvent, token: str | None = None) -> ConsumerRecord:
    headers = [("authorization", f"Bearer {token}".encode())] if token else []
    return ConsumerRecord(topic, 0, 0, 0, 0, b"k", event.to_bytes(), None, 0, 0, headers)


def _event(source: str, data: EventData) -> CloudEvent:
    return new_event(source, "subject", data, NOW)


def _receipt(department: str) -> WhistleReceiptSubmitted:
    return WhistleReceiptSubmitted(
        case_id=uuid4(), whistle_id=uuid4(), department_code=department, receipt_no="R-1"
    )


def _resolved() -> CaseResolved:
    ids = {"case_id": str(uuid4()), "tip_id": str(uuid4()), "unit_id": "T03-TEAM"}
    step = {"actor": "S0003", "actor_role": "dispatcher", "version": 5, "township_code": "T03"}
    return CaseResolved.model_validate({**ids, **step, "resolution": "rectified", "note": "已处理"})


def _admit(consumer: InboxConsumer, record: ConsumerRecord) -> Handler | Refused | None:
    return consumer._admit(record, CloudEvent.model_validate_json(record.value))


def test_every_service_admits_by_the_registry_and_who_takes_submissions_verifies_them(
    consumers: dict[str, InboxConsumer], runtime: Runtime
) -> None:
    for consumer in consumers.values():
        subscription: Subscription = consumer._subscription
        assert subscription.admit is admissible
        assert subscription.verifier is runtime.verifier


def test_the_ledger_records_no_forged_history(
    consumers: dict[str, InboxConsumer], keys: tuple[bytes, bytes]
) -> None:
    ledger = consumers["ledger"]
    record = ledger._subscription.any_type
    forged = _record(WHISTLES, _event("whistle/dispatch", _resolved()))
    assert _admit(ledger, forged) == Refused(
        "whistle.case.resolved may not arrive on escalation.whistles.v1"
    )
    wrong_source = _record(CASES, _event("whistle/evil", _resolved()))
    assert isinstance(_admit(ledger, wrong_source), Refused)
    unknown = CloudEvent.model_validate(
        {**_event("whistle/dispatch", _resolved()).to_json(), "type": "whistle.case.newer"}
    )
    assert _admit(ledger, _record(CASES, unknown)) == Refused(
        "whistle.case.newer may not arrive on dispatch.cases.v1"
    )
    assert _admit(ledger, _record(CASES, _event("whistle/dispatch", _resolved()))) is record

    cgj = _token(keys[0], "county_department", "dept:CGJ")
    receipt = _event("whistle/dept/cgj", _receipt("CGJ"))
    assert _admit(ledger, _record(WHISTLES, receipt, cgj)) is record
    refused = _admit(ledger, _record(WHISTLES, receipt))
    assert isinstance(refused, Refused) and "needs their token" in refused.reason
    for_another = _event("whistle/dept/scjgj", _receipt("SCJGJ"))
    assert _admit(ledger, _record(WHISTLES, for_another, cgj)) == Refused(
        "the token does not act for dept:SCJGJ"
    )
    other_key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    forged_token = _token(other_key, "county_department", "dept:CGJ")
    refused = _admit(ledger, _record(WHISTLES, receipt, forged_token))
    assert isinstance(refused, Refused) and refused.reason.startswith("The token is not valid")


def test_escalation_hands_a_submission_on_with_its_verified_sender(
    consumers: dict[str, InboxConsumer], keys: tuple[bytes, bytes]
) -> None:
    escalation = consumers["escalation"]
    cgj = _token(keys[0], "county_department", "dept:CGJ")
    receipt = _event("whistle/dept/cgj", _receipt("CGJ"))
    assert callable(_admit(escalation, _record(WHISTLES, receipt, cgj)))
    assert isinstance(_admit(escalation, _record(WHISTLES, receipt)), Refused)
    forged = _record(WHISTLES, _event("whistle/dispatch", _resolved()))
    assert isinstance(_admit(escalation, forged), Refused)
    # What escalation has no handler for it ignores, forged or not: it changes nothing here
    # (the ledger, which handles everything, parks it).
    started = CloudEvent.model_validate(
        {**_event("whistle/evil", _resolved()).to_json(), "type": "whistle.case.started"}
    )
    assert _admit(escalation, _record(CASES, started)) is None


def test_dept_listen_reports_in_only_with_the_departments_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert submission_headers("abc") == [
        ("content-type", b"application/cloudevents+json"),
        ("authorization", b"Bearer abc"),
    ]
    refused = dept_listen.main(
        bootstrap="127.0.0.1:1",
        department=BrokerDepartment("CGJ"),
        group=None,
        ack_with="CGJ2026",
        max_messages=1,
        timezone="Asia/Shanghai",
        token=None,
    )
    assert refused == 2
    assert "WHISTLE_DEPT_TOKEN" in capsys.readouterr().err
