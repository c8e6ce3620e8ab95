"""回访 and merged cases, as a citizen sees them: intake follows the case events dispatch
publishes on dispatch.cases.v1 (published here as dispatch would), and a rating leaves as a
``whistle.tip.rated`` event on intake.tips.v1."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select
from uuid6 import uuid7

from contracts.envelope import CloudEvent, EventData, new_event
from contracts.events import (
    CaseAssigned,
    CaseClosed,
    CaseMerged,
    CaseOpened,
    CaseReopened,
    CaseResolved,
    CaseSplit,
    CaseStarted,
)
from contracts.topics import CASES, TIPS
from services.intake.models import Tip, TipFeedback
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.support.infra import eventually

PROBLEM = "application/problem+json"
DISPATCH = "whistle/dispatch"
JOINED_NOTE = "您反映的问题已与其他群众反映的同一问题合并办理"


class Dispatch:
    """Publishes a case's events onto dispatch.cases.v1 the way dispatch does: keyed and
    subjected by the case id, in order, each step with the case's next version."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.versions: dict[UUID, int] = {}

    async def publish(self, case_id: UUID, payload: EventData) -> CloudEvent:
        event = new_event(DISPATCH, str(case_id), payload, datetime.now(UTC))
        await self.producer.send_and_wait(CASES, event.to_bytes(), key=str(case_id).encode())
        return event

    def _step(self, case_id: UUID, tip_id: UUID) -> dict[str, Any]:
        self.versions[case_id] = self.versions.get(case_id, 1) + 1
        return {
            "case_id": case_id,
            "tip_id": tip_id,
            "actor": "staff-T03-CGJ-01",
            "actor_role": "unit_member",
            "version": self.versions[case_id],
            "township_code": "T03",
            "unit_id": "T03-CGJ",
        }

    async def open(self, tip_id: UUID) -> UUID:
        case_id = uuid7()
        await self.publish(
            case_id,
            CaseOpened(
                case_id=case_id,
                tip_id=tip_id,
                matter_code="CG-001",
                confidence=0.9,
                township_code="T03",
                urgency="general",
                catalogue_version="test",
                explanation=["测试"],
            ),
        )
        await self.publish(
            case_id,
            CaseAssigned(
                case_id=case_id,
                tip_id=tip_id,
                unit_id="T03-CGJ",
                unit_kind="township_team",
                township_code="T03",
                staff_id=None,
                matter_code="CG-001",
                authority="township",
                urgency="general",
                deadline_policy="P-GENERAL",
                catalogue_version="test",
                rule="test",
                explanation=["测试"],
            ),
        )
        return case_id

    async def start(self, case_id: UUID, tip_id: UUID) -> None:
        await self.publish(case_id, CaseStarted(**self._step(case_id, tip_id)))

    async def resolve(self, case_id: UUID, tip_id: UUID) -> None:
        await self.publish(
            case_id,
            CaseResolved(**self._step(case_id, tip_id), resolution="rectified", note="已整改"),
        )

    async def reopen(self, case_id: UUID, tip_id: UUID) -> None:
        await self.publish(
            case_id, CaseReopened(**self._step(case_id, tip_id), reason="群众不满意")
        )

    async def close(self, case_id: UUID, tip_id: UUID, reason: str | None = None) -> None:
        await self.publish(case_id, CaseClosed(**self._step(case_id, tip_id), reason=reason))

    async def merge(self, case_id: UUID, tip_id: UUID) -> None:
        await self.publish(
            case_id,
            CaseMerged(
                case_id=case_id,
                tip_id=tip_id,
                matter_code="CG-001",
                rule="same_grid",
                window_hours=72,
                catalogue_version="test",
                explanation=["同一网格、同一事项"],
            ),
        )

    async def split(self, case_id: UUID, tip_id: UUID, split_tip: UUID) -> UUID:
        split_case = uuid7()
        await self.publish(
            case_id,
            CaseSplit(
                **self._step(case_id, tip_id),
                split_tip_id=split_tip,
                split_case_id=split_case,
                reason="不是同一问题",
            ),
        )
        return split_case


@pytest.fixture
def dispatch_events(producer: AIOKafkaProducer) -> Dispatch:
    return Dispatch(producer)


async def submit(client: httpx.AsyncClient, text: str = "村口有人占道摆摊") -> dict[str, Any]:
    answer = await client.post("/v1/tips", json={"text": text, "grid_id": "T03V02G01"})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def status_of(client: httpx.AsyncClient, tip: dict[str, Any]) -> dict[str, Any]:
    answer = await client.get(
        f"/v1/tips/{tip['tracking_no']}", headers={"Access-Code": tip["access_code"]}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def reaches(client: httpx.AsyncClient, tip: dict[str, Any], status: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        current = await status_of(client, tip)
        return current if current["status"] == status else None

    return await eventually(probe, what=f"tip {tip['tracking_no']} to be {status}")


async def rate(
    client: httpx.AsyncClient, tip: dict[str, Any], rating: str, **extra: Any
) -> httpx.Response:
    body = {"code": tip["access_code"], "rating": rating, **extra}
    return await client.post(f"/v1/tips/{tip['tracking_no']}/feedback", json=body)


async def published(bootstrap: str, topic: str, event_id: str, within: float = 20) -> Any:
    """The record of event ``event_id`` once it is on ``topic`` (read from the start)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    if json.loads(record.value)["id"] == event_id:
                        return record
    finally:
        await consumer.stop()
    raise AssertionError(f"event {event_id} never reached {topic}")


async def rated_events(runtime: Runtime, tip_id: str) -> list[dict[str, Any]]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage.event)
            .where(OutboxMessage.key == tip_id, OutboxMessage.topic == TIPS)
            .order_by(OutboxMessage.id)  # type: ignore[arg-type]
        )
    return [e for e in rows if e["type"] == "whistle.tip.rated"]


@pytest.fixture
async def resolved(
    intake: tuple[httpx.AsyncClient, Runtime], dispatch_events: Dispatch
) -> AsyncIterator[tuple[dict[str, Any], UUID]]:
    """A citizen's tip whose case was assigned, started and resolved."""
    client, _ = intake
    tip = await submit(client)
    tip_id = UUID(tip["tip_id"])
    case_id = await dispatch_events.open(tip_id)
    await dispatch_events.start(case_id, tip_id)
    await reaches(client, tip, "in_progress")
    await dispatch_events.resolve(case_id, tip_id)
    await reaches(client, tip, "resolved")
    yield tip, case_id


async def test_a_tip_cannot_be_rated_before_its_case_is_resolved(
    intake: tuple[httpx.AsyncClient, Runtime], dispatch_events: Dispatch
) -> None:
    client, runtime = intake
    tip = await submit(client)
    early = await rate(client, tip, "satisfied")
    assert early.status_code == 409 and early.headers["content-type"] == PROBLEM
    assert early.json()["detail"] == "案件尚未办结，办结后才能评价。"
    case_id = await dispatch_events.open(UUID(tip["tip_id"]))
    current = await reaches(client, tip, "assigned")
    assert current["may_rate"] is False and current["case_id"] == str(case_id)
    assert (await rate(client, tip, "satisfied")).status_code == 409
    assert await rated_events(runtime, tip["tip_id"]) == []


async def test_a_resolved_tip_is_rated_once_and_the_rating_is_published(
    intake: tuple[httpx.AsyncClient, Runtime],
    resolved: tuple[dict[str, Any], UUID],
    migrated: Settings,
) -> None:
    client, runtime = intake
    tip, case_id = resolved
    assert (await status_of(client, tip))["may_rate"] is True
    answer = await rate(client, tip, "basically_satisfied", comment="摊位已清走，但还会回来")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["rating"], body["rating_text"], body["resolution_round"]) == (
        "basically_satisfied",
        "基本满意",
        1,
    )
    assert body["reopening"] is False

    (event,) = await rated_events(runtime, tip["tip_id"])
    assert event["subject"] == tip["tip_id"] and event["source"] == "whistle/intake"
    assert event["data"]["case_id"] == str(case_id)
    assert event["data"]["rating"] == "basically_satisfied"
    assert event["data"]["comment"] == "摊位已清走，但还会回来"
    record = await published(migrated.require_kafka(), TIPS, event["id"])
    assert record.key == tip["tip_id"].encode()

    again = await rate(client, tip, "satisfied")
    assert again.status_code == 409 and again.json()["detail"] == "您已评价过本次办理结果。"
    current = await status_of(client, tip)
    assert current["may_rate"] is False
    assert current["feedback"]["rating_text"] == "基本满意"
    assert current["status_text"] == "已办结，您已评价"
    assert [e["status"] for e in current["timeline"]][-2:] == ["resolved", "rated"]
    assert len(await rated_events(runtime, tip["tip_id"])) == 1


async def test_a_wrong_code_reveals_nothing_and_rates_nothing(
    intake: tuple[httpx.AsyncClient, Runtime], resolved: tuple[dict[str, Any], UUID]
) -> None:
    client, runtime = intake
    tip, _ = resolved
    wrong = await rate(client, {**tip, "access_code": "000000"}, "dissatisfied")
    unknown = await rate(
        client, {**tip, "tracking_no": "QX20000101-000000", "access_code": "000000"}, "satisfied"
    )
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json()["detail"] == unknown.json()["detail"] == "未找到该编号，或查询码不正确。"
    async with runtime.sessions() as session:
        count = await session.scalar(
            select(func.count()).where(TipFeedback.tip_id == UUID(tip["tip_id"]))
        )
    assert count == 0 and await rated_events(runtime, tip["tip_id"]) == []


async def test_wrong_codes_lock_the_tracking_number_for_ratings_too(
    intake: tuple[httpx.AsyncClient, Runtime],
    resolved: tuple[dict[str, Any], UUID],
    migrated: Settings,
) -> None:
    client, _ = intake
    tip, _ = resolved
    for _ in range(migrated.rate_limit_wrong_codes_per_tracking_no_per_hour):
        wrong = await rate(client, {**tip, "access_code": "999999"}, "satisfied")
        assert wrong.status_code == 404
    locked = await rate(client, tip, "satisfied")
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0


async def test_a_dissatisfied_rating_and_the_reopening_give_a_new_round_to_rate(
    intake: tuple[httpx.AsyncClient, Runtime],
    resolved: tuple[dict[str, Any], UUID],
    dispatch_events: Dispatch,
) -> None:
    client, runtime = intake
    tip, case_id = resolved
    tip_id = UUID(tip["tip_id"])
    answer = await rate(client, tip, "dissatisfied", comment="根本没处理")
    assert answer.status_code == 201 and answer.json()["reopening"] is True
    assert "重新办理" in answer.json()["message"]

    await dispatch_events.reopen(case_id, tip_id)  # as dispatch does on that rating
    reopened = await reaches(client, tip, "in_progress")
    assert [e["status"] for e in reopened["timeline"]][-3:] == ["rated", "reopened", "in_progress"]
    assert reopened["may_rate"] is False
    assert reopened["feedback"]["rating"] == "dissatisfied"
    assert (await rate(client, tip, "satisfied")).status_code == 409

    await dispatch_events.resolve(case_id, tip_id)
    second = await reaches(client, tip, "resolved")
    assert second["may_rate"] is True and second["feedback"] is None
    answer = await rate(client, tip, "satisfied")
    assert answer.status_code == 201 and answer.json()["resolution_round"] == 2
    assert [e["data"]["rating"] for e in await rated_events(runtime, tip["tip_id"])] == [
        "dissatisfied",
        "satisfied",
    ]


async def test_a_merged_tip_shows_the_case_it_joined_and_follows_it(
    intake: tuple[httpx.AsyncClient, Runtime], dispatch_events: Dispatch
) -> None:
    client, runtime = intake
    first = await submit(client, "五里铺村村口有人占道摆摊")
    joined = await submit(client, "村口的摊贩把路堵了")
    first_id, joined_id = UUID(first["tip_id"]), UUID(joined["tip_id"])
    case_id = await dispatch_events.open(first_id)
    await dispatch_events.start(case_id, first_id)
    await reaches(client, first, "in_progress")

    await dispatch_events.merge(case_id, joined_id)
    merged = await reaches(client, joined, "in_progress")
    assert merged["joined_case"] is True and merged["joined_case_note"] == JOINED_NOTE
    assert merged["case_id"] == str(case_id)
    assert [e["status"] for e in merged["timeline"]] == ["received", "merged", "in_progress"]
    # Nothing of the other citizen's tip is shown: not its number, text or time.
    assert first["tracking_no"] not in str(merged) and "五里铺" not in str(merged)
    assert (await status_of(client, first))["joined_case"] is False

    # The case's later steps reach every tip in it; both citizens may rate the resolution.
    await dispatch_events.resolve(case_id, first_id)
    await reaches(client, joined, "resolved")
    answer = await rate(client, joined, "satisfied")
    assert answer.status_code == 201
    (event,) = await rated_events(runtime, joined["tip_id"])
    assert event["data"]["case_id"] == str(case_id)
    assert (await status_of(client, first))["may_rate"] is True

    # Split back out: the tip follows a case of its own from then on.
    split_case = await dispatch_events.split(case_id, first_id, joined_id)
    alone = await reaches(client, joined, "received")
    assert alone["joined_case"] is False and alone["case_id"] == str(split_case)
    assert alone["timeline"][-2]["status"] == "split"
    await dispatch_events.reopen(case_id, first_id)
    await reaches(client, first, "in_progress")
    assert (await status_of(client, joined))["status"] == "received"
    async with runtime.sessions() as session:
        tip = await session.get(Tip, joined_id)
    assert tip is not None and tip.case_id == split_case


async def test_a_declined_tip_says_so_without_the_countys_own_words(
    intake: tuple[httpx.AsyncClient, Runtime], dispatch_events: Dispatch
) -> None:
    client, _ = intake
    tip = await submit(client, "公司拖欠工资三个月了")
    tip_id = UUID(tip["tip_id"])
    case_id = await dispatch_events.open(tip_id)
    await reaches(client, tip, "assigned")
    await dispatch_events.close(case_id, tip_id, reason="劳动争议，转劳动监察大队 S0001 处理")

    closed = await reaches(client, tip, "closed")
    marks = [(e["status"], e["status_text"]) for e in closed["timeline"]][-2:]
    assert marks == [
        ("declined", "经县级准入审核，不属于乡镇事项清单，不予立案办理；如有疑问请拨打12345"),
        ("closed", "已结案"),
    ]
    assert "S0001" not in str(closed) and "劳动监察" not in str(closed)
    assert (await rate(client, tip, "satisfied")).status_code == 409  # nothing was resolved
