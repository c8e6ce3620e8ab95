"""Intake's channels for people at work — 12345 operators and grid workers — and safe retries."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import func, select

from services.intake import channels
from services.intake.models import Tip, TipTimelineEntry
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.support.files import png

PROBLEM = "application/problem+json"


async def _stored(runtime: Runtime, tip_id: str) -> tuple[Tip, list[dict]]:
    async with runtime.sessions() as session:
        tip = await session.get(Tip, UUID(tip_id))
        events = (
            await session.scalars(select(OutboxMessage.event).where(OutboxMessage.key == tip_id))
        ).all()
    assert tip is not None
    return tip, list(events)


async def _tips_with_key(runtime: Runtime, channel: str, key: str) -> int:
    async with runtime.sessions() as session:
        query = select(func.count()).where(Tip.channel == channel, Tip.dedupe_key == key)
        return int(await session.scalar(query) or 0)


async def test_a_retried_web_submission_gets_its_original_answer_and_makes_one_tip(
    intake: tuple[httpx.AsyncClient, Runtime],
) -> None:
    client, runtime = intake
    key = str(uuid4())
    body = {"text": "路灯下有人乱倒垃圾", "grid_id": "T02V01G01"}
    first = await client.post("/v1/tips", json=body, headers={"Idempotency-Key": key})
    again = await client.post("/v1/tips", json=body, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()  # tracking number and access code included
    _, events = await _stored(runtime, first.json()["tip_id"])
    assert len(events) == 1


async def test_concurrent_retries_with_one_key_make_one_tip(
    intake: tuple[httpx.AsyncClient, Runtime],
) -> None:
    client, runtime = intake
    key = str(uuid4())
    body = {"text": "广场舞音响太吵", "grid_id": "T02V01G01"}
    answers = await asyncio.gather(
        *(client.post("/v1/tips", json=body, headers={"Idempotency-Key": key}) for _ in range(6))
    )
    assert sorted(a.status_code for a in answers).count(201) == 1
    assert {a.json()["tracking_no"] for a in answers} == {answers[0].json()["tracking_no"]}
    assert await _tips_with_key(runtime, "web", f"127.0.0.1:{key}") == 1


async def _count(runtime: Runtime, *where: object, of: type = Tip) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(of).where(*where)) or 0)


async def test_a_taken_tracking_number_is_passed_over_and_none_free_saves_nothing(
    intake: tuple[httpx.AsyncClient, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, runtime = intake
    body = {"text": "河边有人倾倒建筑垃圾", "grid_id": "T02V01G01"}
    first = await client.post("/v1/tips", json=body)
    taken = first.json()["tracking_no"]
    fresh = taken[:-6] + ("000001" if taken[-6:] != "000001" else "000002")
    numbers = iter([taken, taken, fresh])
    monkeypatch.setattr(channels, "new_tracking_no", lambda *_: next(numbers))
    second = await client.post("/v1/tips", json=body)
    assert second.status_code == 201 and second.json()["tracking_no"] == fresh
    assert await _count(runtime, Tip.tracking_no == taken) == 1
    second_id = UUID(second.json()["tip_id"])
    assert await _count(runtime, TipTimelineEntry.tip_id == second_id, of=TipTimelineEntry) == 1

    tips, events = await _count(runtime), await _count(runtime, of=OutboxMessage)
    monkeypatch.setattr(channels, "new_tracking_no", lambda *_: taken)
    refused = await client.post("/v1/tips", json=body)
    assert refused.status_code == 503 and refused.headers["content-type"] == PROBLEM
    assert "受理编号" in refused.json()["detail"]
    assert (await _count(runtime), await _count(runtime, of=OutboxMessage)) == (tips, events)


async def test_a_hotline_ticket_needs_an_operator(
    intake: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, _ = intake
    body = {
        "call_id": "C-1",
        "caller_number": "13812340000",
        "summary": "有人占道经营",
        "grid_id": "T02V01G01",
    }
    assert (await client.post("/v1/hotline/tickets", json=body)).status_code == 401
    as_grid_worker = {"authorization": f"Bearer {token('grid_worker', 'grid:T02V01G01')}"}
    refused = await client.post("/v1/hotline/tickets", json=body, headers=as_grid_worker)
    assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM


async def test_a_hotline_ticket_is_a_tip_and_the_call_id_makes_the_retry_harmless(
    intake: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = intake
    operator = {"authorization": f"Bearer {token('hotline_operator')}"}
    call_id = f"CALL-{uuid4().hex[:8]}"
    body = {
        "call_id": call_id,
        "caller_number": "139 1234 5678",
        "caller_name": "王女士",
        "summary": "小区燃气泄漏，闻到很重的煤气味",
        "urgency": "emergency",
        "category": "gas-leak",
        "address": "城关镇迎宾社区",
    }
    first = await client.post("/v1/hotline/tickets", json=body, headers=operator)
    again = await client.post("/v1/hotline/tickets", json=body, headers=operator)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    tip, events = await _stored(runtime, first.json()["tip_id"])
    assert (tip.channel, tip.external_ref, tip.masked_phone) == ("hotline", call_id, "139****5678")
    (event,) = events
    data = event["data"]
    assert data["channel"] == "hotline" and data["external_ref"] == call_id
    assert data["urgency_hint"] == "emergency" and data["category_hint"] == "gas-leak"
    assert "13912345678" not in str(event) and "139 1234 5678" not in str(event)
    assert data["contact"]["masked_phone"] is None and data["contact"]["phone_hash"]


async def test_a_ticket_carrying_a_nul_is_refused_with_a_problem_and_nothing_is_stored(
    intake: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    # Found by fuzzing (tests/integration/test_fuzzing.py): PostgreSQL refused the text, 500.
    client, runtime = intake
    operator = {"authorization": f"Bearer {token('hotline_operator')}"}
    call_id = f"CALL-{uuid4().hex[:8]}"
    body = {
        "call_id": call_id,
        "caller_number": "13912345678",
        "summary": "路灯不亮\u0000",
        "address": "城关镇",
    }
    answer = await client.post("/v1/hotline/tickets", json=body, headers=operator)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert "U+0000" in answer.json()["detail"]
    assert await _tips_with_key(runtime, "hotline", call_id) == 0


async def test_a_caller_who_asks_for_anonymity_leaves_no_number(
    intake: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = intake
    operator = {"authorization": f"Bearer {token('hotline_operator')}"}
    body = {
        "call_id": f"CALL-{uuid4().hex[:8]}",
        "caller_number": "13912345678",
        "caller_wants_anonymity": True,
        "summary": "有人非法采砂",
        "address": "城关镇",
    }
    answer = await client.post("/v1/hotline/tickets", json=body, headers=operator)
    tip, (event,) = await _stored(runtime, answer.json()["tip_id"])
    assert (tip.contact_sealed, tip.masked_phone, tip.phone_hash) == (None, None, None)
    assert "contact" not in event["data"] or event["data"]["contact"] is None


async def test_a_grid_worker_reports_only_for_their_own_grids(
    intake: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, _ = intake
    worker = {"authorization": f"Bearer {token('grid_worker', 'grid:T02V01G01')}"}
    body = {"grid_id": "T02V02G01", "text": "有人乱搭乱建"}
    refused = await client.post("/v1/grid/reports", json=body, headers=worker)
    assert refused.status_code == 403
    assert "T02V02G01" in refused.json()["detail"]


async def test_a_report_resolved_on_the_spot_still_becomes_a_recorded_tip(
    intake: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = intake
    worker = {"authorization": f"Bearer {token('grid_worker', 'grid:T02V01G01')}"}
    uploaded = await client.post(
        "/v1/attachments", files={"file": ("corn.png", png(7), "image/png")}
    )
    assert uploaded.status_code in (200, 201), uploaded.text
    photo = uploaded.json()["id"]
    unknown = await client.post(
        "/v1/grid/reports",
        json={"grid_id": "T02V01G01", "text": "占道", "attachments": ["cd" * 32]},
        headers=worker,
    )
    assert unknown.status_code == 422 and unknown.json()["unknown"] == ["cd" * 32]
    body = {
        "grid_id": "T02V01G01",
        "location": {"lat": 38.75, "lon": 113.25},
        "text": "村道上有人晒玉米占道",
        "attachments": [photo],
        "resolved_on_spot": True,
        "resolution_note": "已劝导当事人将玉米移至晒场",
    }
    answer = await client.post(
        "/v1/grid/reports", json=body, headers={**worker, "Idempotency-Key": "r-1"}
    )
    assert answer.status_code == 201
    tip, (event,) = await _stored(runtime, answer.json()["tip_id"])
    assert tip.resolved_on_spot and tip.attachments == [photo]
    data = event["data"]
    assert data["channel"] == "grid" and data["resolved_on_spot"] is True
    assert data["resolution_note"] == "已劝导当事人将玉米移至晒场"
    assert data["attachments"] == [photo]


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"grid_id": "T02V01G01", "text": "占道", "resolved_on_spot": True}, "body"),
        (
            {"grid_id": "T02V01G01", "text": "占道", "attachments": ["not-a-hash"]},
            "body.attachments.0",
        ),
        ({"text": "占道"}, "body.grid_id"),
    ],
)
async def test_a_bad_grid_report_is_refused_with_a_problem(
    intake: tuple[httpx.AsyncClient, Runtime],
    token: TokenFactory,
    body: dict[str, object],
    location: str,
) -> None:
    client, _ = intake
    worker = {"authorization": f"Bearer {token('grid_worker', 'grid:T02V01G01')}"}
    answer = await client.post("/v1/grid/reports", json=body, headers=worker)
    assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM
    assert location in [e["location"] for e in answer.json()["errors"]]
