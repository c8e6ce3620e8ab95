"""The services' HTTP surface, in process, on the real database and broker."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from services.dispatch.models import Case
from services.intake.models import Tip
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from tests.conftest import TokenFactory

PROBLEM = "application/problem+json"


async def _count(runtime: Runtime, model: type, *where: object) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_an_accepted_tip_and_its_event_are_stored_before_the_answer(
    intake: tuple[httpx.AsyncClient, Runtime],
) -> None:
    client, runtime = intake
    response = await client.post(
        "/v1/tips",
        json={
            "text": "桥下有人非法采砂",
            "address": "城关镇",
            "contact": {"name": "李四", "phone": "13512345678"},
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["status_text"] == "已受理"
    tip_id = UUID(body["tip_id"])
    async with runtime.sessions() as session:
        tip = await session.get(Tip, tip_id)
        event = await session.scalar(select(OutboxMessage).where(OutboxMessage.key == str(tip_id)))
    assert tip is not None and event is not None
    assert tip.masked_phone == "135****5678"
    assert tip.contact_sealed is not None and b"13512345678" not in tip.contact_sealed
    assert runtime.state["vault"].open(tip.contact_sealed) == {
        "name": "李四",
        "phone": "13512345678",
    }
    # Of the contact, the event carries the keyed hash alone (issue #20).
    assert event.event["data"]["contact"] == {"masked_phone": None, "phone_hash": tip.phone_hash}


async def test_numbers_and_addresses_typed_into_the_words_stay_out_of_the_event(
    intake: tuple[httpx.AsyncClient, Runtime],
) -> None:
    """Intake keeps what the citizen wrote; the event, which every consumer and the ledger
    read, keeps the last four digits of a number and no e-mail address (issue #20)."""
    client, runtime = intake
    words = "河边倒垃圾，请回电 139-8765-4321 或发邮件 zhao.tiezhu@example.com"
    response = await client.post("/v1/tips", json={"text": words, "address": "城关镇"})
    assert response.status_code == 201, response.text
    tip_id = UUID(response.json()["tip_id"])
    async with runtime.sessions() as session:
        tip = await session.get(Tip, tip_id)
        event = await session.scalar(select(OutboxMessage).where(OutboxMessage.key == str(tip_id)))
    assert tip is not None and event is not None and tip.text == words
    assert event.event["data"]["text"] == "河边倒垃圾，请回电 ****4321 或发邮件 ***@***"


async def test_an_anonymous_tip_keeps_no_contact(intake: tuple[httpx.AsyncClient, Runtime]) -> None:
    client, runtime = intake
    response = await client.post(
        "/v1/tips",
        json={
            "text": "有人乱倒垃圾",
            "grid_id": "T01V01G01",
            "anonymous": True,
            "contact": {"phone": "13512345678"},
        },
    )
    async with runtime.sessions() as session:
        tip = await session.get(Tip, UUID(response.json()["tip_id"]))
    assert tip is not None
    assert (tip.contact_sealed, tip.masked_phone, tip.phone_hash) == (None, None, None)


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"text": "", "grid_id": "T01V01G01"}, "body.text"),
        ({"text": "   ", "grid_id": "T01V01G01"}, "body.text"),
        ({"text": "有人占道"}, "body"),
        ({"text": "x" * 4001, "grid_id": "T01V01G01"}, "body.text"),
        ({"text": "有人占道", "location": {"lat": 91, "lon": 113.2}}, "body.location.lat"),
        (
            {"text": "有人占道", "grid_id": "T01V01G01", "contact": {"phone": "call me"}},
            "body.contact.phone",
        ),
        ({"text": "有人占道", "grid_id": "T01V01G01", "priority": "high"}, "body.priority"),
    ],
)
async def test_a_bad_tip_gets_a_problem_document_and_nothing_is_saved(
    intake: tuple[httpx.AsyncClient, Runtime], body: dict[str, object], location: str
) -> None:
    client, runtime = intake
    before = (await _count(runtime, Tip), await _count(runtime, OutboxMessage))
    response = await client.post("/v1/tips", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] == "Invalid request"
    assert location in [e["location"] for e in problem["errors"]]
    assert (await _count(runtime, Tip), await _count(runtime, OutboxMessage)) == before


async def test_a_tracking_number_without_its_code_reveals_nothing(
    intake: tuple[httpx.AsyncClient, Runtime],
) -> None:
    client, _ = intake
    tip = (await client.post("/v1/tips", json={"text": "噪音扰民", "grid_id": "T01V01G01"})).json()
    right = await client.get(
        f"/v1/tips/{tip['tracking_no']}", headers={"Access-Code": tip["access_code"]}
    )
    assert right.status_code == 200 and right.json()["status"] == "received"
    wrong_code = await client.get(
        f"/v1/tips/{tip['tracking_no']}", headers={"Access-Code": "000000"}
    )
    unknown = await client.get(
        "/v1/tips/QX20000101-000000", headers={"Access-Code": tip["access_code"]}
    )
    assert wrong_code.status_code == unknown.status_code == 404
    assert wrong_code.headers["content-type"] == PROBLEM
    strip = lambda r: {k: v for k, v in r.json().items() if k != "instance"}  # noqa: E731
    assert strip(wrong_code) == strip(unknown)


async def test_operations_endpoints(intake: tuple[httpx.AsyncClient, Runtime]) -> None:
    client, _ = intake
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    await client.post("/v1/tips", json={"text": "有人占道经营", "grid_id": "T01V01G01"})
    metrics = (await client.get("/metrics")).text
    assert (
        'whistle_http_requests_total{method="POST",route="/v1/tips",service="intake",status="201"}'
        in metrics
    )
    missing = await client.get("/v1/nowhere")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM


@pytest.fixture(scope="module")
async def t02_case(dispatch: tuple[httpx.AsyncClient, Runtime]) -> UUID:
    _, runtime = dispatch
    now = datetime.now(UTC)
    case = Case(
        county="140999",
        id=UUID(int=0x1A2B),
        tip_id=UUID(int=0x3C4D),
        status="assigned",
        matter_code="CG-001",
        township_code="T02",
        urgency="general",
        unit_id="T02-CGJ",
        catalogue_version="test",
        created_at=now,
        updated_at=now,
    )
    async with runtime.transaction() as session:
        session.add(case)
    return case.id


@pytest.mark.parametrize(
    ("role", "scopes", "status"),
    [
        ("auditor", (), 200),
        ("county_supervisor", (), 200),
        ("dispatcher", ("township:T02",), 200),
        ("dispatcher", ("township:T01",), 404),  # another township's case does not exist for them
        ("unit_member", ("unit:T02-CGJ",), 200),
        ("unit_member", ("unit:T02-SCJGJ",), 404),
        ("grid_worker", ("grid:T02V01G01",), 403),
    ],
)
async def test_who_may_read_a_case(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    t02_case: UUID,
    token: TokenFactory,
    role: str,
    scopes: tuple[str, ...],
    status: int,
) -> None:
    client, _ = dispatch
    response = await client.get(
        f"/v1/cases/{t02_case}", headers={"authorization": f"Bearer {token(role, *scopes)}"}
    )
    assert response.status_code == status
    if status == 200:
        assert response.json()["unit_id"] == "T02-CGJ"
    else:
        assert response.headers["content-type"] == PROBLEM


async def test_a_missing_or_forged_token_is_refused_with_401(
    dispatch: tuple[httpx.AsyncClient, Runtime], t02_case: UUID, token: TokenFactory
) -> None:
    client, _ = dispatch
    no_token = await client.get(f"/v1/cases/{t02_case}")
    assert no_token.status_code == 401
    assert no_token.headers["www-authenticate"] == "Bearer"
    assert no_token.headers["content-type"] == PROBLEM
    forged = token("auditor")[:-4] + "AAAA"
    response = await client.get(
        f"/v1/cases/{t02_case}", headers={"authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401
