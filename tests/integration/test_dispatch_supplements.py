"""A place supplied after the text (a WeChat location) through the real dispatch: the tip and
its supplement published on intake.tips.v1 as intake publishes them, the case in PostgreSQL,
its events on dispatch.cases.v1.

The coordinates (38.76, 113.225) lie in grid T03V02G02 of 城关镇五里铺村, where 占道经营
(CG-001) is the township's statutory matter, as in the end-to-end tip journey.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import httpx
from uuid6 import uuid7

from contracts.envelope import new_event
from contracts.events import GeoPoint, TipReceived, TipSupplemented
from contracts.topics import CASES, TIPS
from services.dispatch.models import Case
from services.runtime.inbox import InboxRecord
from services.runtime.outbox import stage
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.support.infra import eventually, find_on_topic
from tests.support.tips import case_events, case_of, send_tip

INTAKE = "whistle/intake"
WULIPU = GeoPoint(lat=38.76, lon=113.225)  # grid T03V02G02
RELOCATED = "群众补充位置后重新定位"


async def _wechat_text(runtime: Runtime, text: str) -> UUID:
    """A WeChat text message: intake accepts it as a tip with no place at all."""
    tip_id, now = uuid7(), datetime.now(UTC)
    tip = TipReceived(
        tip_id=tip_id,
        tracking_no=f"W{tip_id.hex[:10]}",
        channel="wechat",
        external_ref=f"msg-{tip_id.hex[:8]}",
        text=text,
        received_at=now,
    )
    async with runtime.transaction() as session:
        stage(session, TIPS, new_event(INTAKE, str(tip_id), tip, now))
    return tip_id


async def _supplement(
    runtime: Runtime,
    tip_id: UUID,
    *,
    location: GeoPoint | None = None,
    address: str | None = None,
    attachments: tuple[str, ...] = (),
) -> str:
    """The follower's later location or photo message; returns the event's id."""
    now = datetime.now(UTC)
    data = TipSupplemented(
        tip_id=tip_id,
        channel="wechat",
        external_ref=f"msg-{uuid7().hex[:8]}",
        attachments=list(attachments),
        location=location,
        address=address,
        supplemented_at=now,
    )
    event = new_event(INTAKE, str(tip_id), data, now)
    async with runtime.transaction() as session:
        stage(session, TIPS, event)
    return event.id


async def _handled(runtime: Runtime, event_id: str) -> None:
    """Dispatch has consumed the event (its inbox records it in the handler's transaction)."""

    async def probe() -> bool:
        async with runtime.sessions() as session:
            return await session.get(InboxRecord, (INTAKE, event_id)) is not None

    await eventually(probe, what=f"dispatch to consume {event_id}")


async def _case(runtime: Runtime, case_id: UUID) -> Case:
    async with runtime.sessions() as session:
        case = await session.get(Case, case_id)
    assert case is not None
    return case


async def _waiting_in_county(runtime: Runtime, text: str) -> Case:
    case = await case_of(runtime, await _wechat_text(runtime, text))
    assert (case.status, case.queue, case.routing["rule"]) == ("triage", "county", "no_location")
    return case


async def test_a_location_sent_later_places_the_case_and_routes_it(
    dispatch: tuple[httpx.AsyncClient, Runtime], migrated: Settings
) -> None:
    _, runtime = dispatch
    case = await _waiting_in_county(runtime, "村口有人占道摆摊，车都过不去了")

    await _supplement(runtime, case.tip_id, location=WULIPU, address="五里铺村村口")

    async def assigned() -> Case | None:
        now = await _case(runtime, case.id)
        return now if now.status == "assigned" else None

    placed = await eventually(assigned, what="the supplemented case to be assigned")
    assert (placed.township_code, placed.village_code, placed.grid_id) == (
        "T03",
        "T03V02",
        "T03V02G02",
    )
    assert (placed.lat, placed.lon) == (WULIPU.lat, WULIPU.lon)
    assert placed.queue is None and placed.unit_id and placed.matter_code == "CG-001"
    assert placed.version == case.version + 1
    explanation = placed.routing["explanation"]
    # The story so far, then the new place: not located, located after the supplement.
    unlocated = explanation.index("无法确定所属乡镇，转县级分拨")
    relocated = explanation.index(RELOCATED)
    assert unlocated < relocated
    assert "位于网格 T03V02G02" in explanation[relocated + 1]

    def is_the_assignment(event: dict) -> bool:
        return event["type"] == "whistle.case.assigned" and event["subject"] == str(case.id)

    event = await find_on_topic(migrated.kafka_bootstrap or "", CASES, is_the_assignment)
    data = event["data"]
    assert (data["township_code"], data["unit_id"], data["matter_code"]) == (
        "T03",
        placed.unit_id,
        "CG-001",
    )
    assert data["explanation"][0] == RELOCATED
    types = [e["type"] for e in await case_events(runtime, case.id)]
    assert types == [
        "whistle.case.opened",
        "whistle.case.triage_required",
        "whistle.case.assigned",
    ]


async def test_a_located_case_with_an_unsure_matter_goes_to_its_townships_queue(
    dispatch: tuple[httpx.AsyncClient, Runtime],
) -> None:
    _, runtime = dispatch
    case = await _waiting_in_county(runtime, "这边有点情况，麻烦来看一下")

    await _supplement(runtime, case.tip_id, location=WULIPU)

    async def queued() -> Case | None:
        now = await _case(runtime, case.id)
        return now if now.queue == "township:T03" else None

    placed = await eventually(queued, what="the case to move to 城关镇's triage queue")
    assert (placed.status, placed.routing["rule"], placed.unit_id) == (
        "triage",
        "low_confidence",
        None,
    )
    triage = (await case_events(runtime, case.id))[-1]
    assert triage["type"] == "whistle.case.triage_required"
    assert triage["data"]["queue"] == "township:T03"
    assert triage["data"]["reason"].startswith(RELOCATED)


async def test_a_supplement_changes_nothing_for_a_case_already_assigned(
    dispatch: tuple[httpx.AsyncClient, Runtime],
) -> None:
    _, runtime = dispatch
    tip_id = await send_tip(runtime, "商铺门口占道经营摆摊", "T03V02G01", hint="CG-001")
    before = await case_of(runtime, tip_id)
    assert before.status == "assigned"
    events_before = await case_events(runtime, before.id)

    # A place elsewhere in the county: dispatch must not move a case already placed.
    elsewhere = GeoPoint(lat=38.9, lon=113.5)
    await _handled(runtime, await _supplement(runtime, tip_id, location=elsewhere))

    after = await _case(runtime, before.id)
    assert (after.version, after.grid_id, after.unit_id, after.staff_id, after.lat) == (
        before.version,
        before.grid_id,
        before.unit_id,
        before.staff_id,
        before.lat,
    )
    assert await case_events(runtime, before.id) == events_before


async def test_photos_alone_or_a_place_that_locates_nothing_leave_the_case_waiting(
    dispatch: tuple[httpx.AsyncClient, Runtime],
) -> None:
    _, runtime = dispatch
    case = await _waiting_in_county(runtime, "村口有人占道摆摊")

    await _handled(runtime, await _supplement(runtime, case.tip_id, attachments=("a" * 64,)))
    far_away = GeoPoint(lat=31.23, lon=121.47)  # Shanghai: no grid within 500 m
    await _handled(runtime, await _supplement(runtime, case.tip_id, location=far_away))

    after = await _case(runtime, case.id)
    assert (after.status, after.queue, after.version, after.township_code) == (
        "triage",
        "county",
        case.version,
        None,
    )
    assert len(await case_events(runtime, case.id)) == 2


async def test_a_case_assigned_by_hand_is_not_relocated(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    case = await _waiting_in_county(runtime, "村口有人占道摆摊，车都过不去了")
    county = {"authorization": f"Bearer {token('county_supervisor', 'township:*')}"}
    answer = await client.post(
        f"/v1/cases/{case.id}/assign",
        json={"unit_id": "T05-TEAM", "matter_code": "CG-001"},
        headers={**county, "If-Match": f'"{case.version}"'},
    )
    assert answer.status_code == 200, answer.text
    by_hand = await _case(runtime, case.id)

    await _handled(runtime, await _supplement(runtime, case.tip_id, location=WULIPU))

    after = await _case(runtime, case.id)
    assert (after.status, after.unit_id, after.version, after.grid_id) == (
        "assigned",
        "T05-TEAM",
        by_hand.version,
        None,
    )
