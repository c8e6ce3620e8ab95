"""Near-duplicate tips through the real dispatch: tips published on intake.tips.v1, cases in
PostgreSQL, events on dispatch.cases.v1; a dispatcher splits a merged tip back out over HTTP.

Every test works in grids of 陈家庄乡 (T12), 槐荫镇 (T09) and, across T12's northern line, T04
that no other test uses, with the
flyposting item (CG-008) named by the channel's category hint, so triage is certain and no
other test's case can absorb these tips. Dispatch runs here with the merge settings spelled
out, whatever the session's defaults.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from uuid6 import uuid7

from contracts.envelope import new_event
from contracts.events import GeoPoint, TipReceived
from contracts.topics import CASES, TIPS
from reference.geometry import EARTH_RADIUS_M
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.models import Case, CaseTip
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.conftest import _in_process
from tests.support.infra import Infra, eventually, find_on_topic

PROBLEM = "application/problem+json"
MATTER, HINT = "CG-008", "flyposting"


@pytest.fixture(scope="module")
async def dispatch(migrated: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    merging = migrated.model_copy(update={"merge_distance_m": 200.0, "merge_window_hours": 72.0})
    async for pair in _in_process(create_dispatch(merging)):
        yield pair


def north(lat: float, lon: float, metres: float) -> tuple[float, float]:
    return lat + math.degrees(metres / EARTH_RADIUS_M), lon


async def send_tip(producer: AIOKafkaProducer, lat: float, lon: float) -> UUID:
    tip_id = uuid7()
    tip = TipReceived(
        tip_id=tip_id,
        tracking_no=f"QX{tip_id.hex[-8:]}",
        channel="web",
        text="电线杆上贴满了小广告",
        location=GeoPoint(lat=lat, lon=lon),
        category_hint=HINT,
        received_at=datetime.now(UTC),
    )
    event = new_event("whistle/intake", str(tip_id), tip, datetime.now(UTC))
    await producer.send_and_wait(TIPS, event.to_bytes(), key=str(tip_id).encode())
    return tip_id


async def where_tip_went(runtime: Runtime, tip_id: UUID) -> tuple[str, UUID]:
    """("opened", its case) or ("merged", the case it joined), once dispatch handled it."""

    async def probe() -> tuple[str, UUID] | None:
        async with runtime.sessions() as session:
            case = await session.scalar(select(Case).where(Case.tip_id == tip_id))  # type: ignore[arg-type]
            if case is not None:
                return "opened", case.id
            link = await session.get(CaseTip, tip_id)
            return ("merged", link.case_id) if link is not None else None

    return await eventually(probe, what=f"dispatch to handle tip {tip_id}")


async def outbox_types(runtime: Runtime, case_id: UUID) -> list[str]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage.event)
            .where(OutboxMessage.key == str(case_id))
            .order_by(OutboxMessage.id)  # type: ignore[arg-type]
        )
        return [event["type"] for event in rows.all()]


async def test_a_tip_100_m_from_an_open_case_of_its_matter_joins_it(
    dispatch: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer, infra: Infra
) -> None:
    _, runtime = dispatch
    lat, lon = 38.65, 113.53  # T12V02G02
    first = await send_tip(producer, lat, lon)
    assert (await where_tip_went(runtime, first))[0] == "opened"
    second = await send_tip(producer, *north(lat, lon, 100))
    how, case_id = await where_tip_went(runtime, second)
    assert (how, case_id) == ("merged", (await where_tip_went(runtime, first))[1])

    merged = await find_on_topic(
        infra.bootstrap,
        CASES,
        lambda e: e["type"] == "whistle.case.merged" and e["data"]["tip_id"] == str(second),
    )
    assert merged["subject"] == str(case_id)
    assert merged["data"]["rule"] == "within_distance"
    assert merged["data"]["distance_m"] == 100.0
    assert merged["data"]["window_hours"] == 72
    assert merged["data"]["matter_code"] == MATTER
    # No second case, no second assignment, no new deadlines: one opening, one assignment.
    types = await outbox_types(runtime, case_id)
    assert types.count("whistle.case.opened") == 1
    assert types.count("whistle.case.assigned") + types.count("whistle.case.triage_required") == 1
    assert types[-1] == "whistle.case.merged"
    async with runtime.sessions() as session:
        assert await session.scalar(select(Case).where(Case.tip_id == second)) is None  # type: ignore[arg-type]


async def test_a_tip_far_away_in_the_same_grid_joins_too(
    dispatch: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer
) -> None:
    _, runtime = dispatch
    lat, lon = 38.61, 113.55  # T12V03G01 runs from 38.60 to 38.65
    first = await send_tip(producer, lat, lon)
    _, case_id = await where_tip_went(runtime, first)
    second = await send_tip(producer, *north(lat, lon, 2000))
    assert await where_tip_went(runtime, second) == ("merged", case_id)
    async with runtime.sessions() as session:
        link = await session.get(CaseTip, second)
    assert link is not None and link.rule == "same_grid" and link.distance_m == 2000.0


async def test_tips_300_m_apart_in_different_grids_are_two_cases(
    dispatch: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer
) -> None:
    _, runtime = dispatch
    lat, lon = 38.632, 113.51  # T12V01G01, 148 m south of T12V01G02
    first = await send_tip(producer, lat, lon)
    second = await send_tip(producer, *north(lat, lon, 300))
    one, two = await where_tip_went(runtime, first), await where_tip_went(runtime, second)
    assert one[0] == two[0] == "opened" and one[1] != two[1]
    async with runtime.sessions() as session:
        grids = {(await session.get(Case, c)).grid_id for _, c in (one, two)}  # type: ignore[union-attr]
    assert grids == {"T12V01G01", "T12V01G02"}


async def test_tips_100_m_apart_across_a_township_line_are_two_cases(
    dispatch: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer
) -> None:
    """Latitude 38.70 at longitude 113.59 is the line between 陈家庄乡 (T12V05G02, south) and
    东冶镇 (T04V05G01, north); 38.766667 at 113.53 the line between two grids of 东冶镇
    (T04V02G02, T04V02G03). The same 100 m merges within the township and not across its
    line: the other township would read the tip."""
    _, runtime = dispatch
    reference = runtime.state["reference"]
    south = north(38.70, 113.59, -50)
    across = await send_tip(producer, *south)
    beyond = await send_tip(producer, *north(*south, 100))
    one, two = await where_tip_went(runtime, across), await where_tip_went(runtime, beyond)
    assert one[0] == two[0] == "opened" and one[1] != two[1]
    async with runtime.sessions() as session:
        cases = [await session.get(Case, c) for _, c in (one, two)]
    assert [(c.township_code, c.grid_id) for c in cases if c] == [
        ("T12", "T12V05G02"),
        ("T04", "T04V05G01"),
    ]

    inside = north(38.766667, 113.53, -50)
    first = await send_tip(producer, *inside)
    _, case_id = await where_tip_went(runtime, first)
    second = await send_tip(producer, *north(*inside, 100))
    assert await where_tip_went(runtime, second) == ("merged", case_id)
    async with runtime.sessions() as session:
        link = await session.get(CaseTip, second)
        case = await session.get(Case, case_id)
    assert link is not None and link.rule == "within_distance" and link.distance_m == 100.0
    assert case is not None and (case.township_code, case.grid_id) == ("T04", "T04V02G02")
    assert reference.grid_locator.locate(*north(*inside, 100)).grid_id == "T04V02G03"


async def test_only_a_case_opened_within_the_window_absorbs_a_tip(
    dispatch: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer
) -> None:
    _, runtime = dispatch
    now = datetime.now(UTC)
    old_point, recent_point = (38.61, 113.57), (38.64, 113.57)  # T12V04G01, T12V04G02

    def open_case(point: tuple[float, float], grid: str, age: timedelta) -> Case:
        return Case(
            county="140999",
            id=uuid7(),
            tip_id=uuid7(),
            status="in_progress",
            matter_code=MATTER,
            township_code="T12",
            village_code="T12V04",
            grid_id=grid,
            lat=point[0],
            lon=point[1],
            urgency="general",
            unit_id="T12-CGJ",
            catalogue_version="test",
            created_at=now - age,
            updated_at=now - age,
        )

    old = open_case(old_point, "T12V04G01", timedelta(hours=73))
    recent = open_case(recent_point, "T12V04G02", timedelta(hours=71))
    async with runtime.transaction() as session:
        session.add_all([old, recent])

    late = await send_tip(producer, *north(*old_point, 50))
    assert (await where_tip_went(runtime, late))[0] == "opened"
    in_time = await send_tip(producer, *north(*recent_point, 50))
    assert await where_tip_went(runtime, in_time) == ("merged", recent.id)


# Each pair in a grid of its own (槐荫镇, T09), so that no pair joins another's case.
PAIR_POINTS = iter([(38.81, 113.41), (38.82, 113.43), (38.82, 113.45), (38.81, 113.47)])


@pytest.fixture
async def merged_pair(
    dispatch: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer
) -> tuple[UUID, UUID, UUID]:
    """(case, its own tip, the tip merged into it), in a grid of 槐荫镇 (T09)."""
    _, runtime = dispatch
    lat, lon = next(PAIR_POINTS)
    first = await send_tip(producer, lat, lon)
    _, case_id = await where_tip_went(runtime, first)
    second = await send_tip(producer, *north(lat, lon, 60))
    assert await where_tip_went(runtime, second) == ("merged", case_id)
    return case_id, first, second


async def test_a_dispatcher_splits_a_merged_tip_into_a_case_of_its_own(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    merged_pair: tuple[UUID, UUID, UUID],
    token: TokenFactory,
    infra: Infra,
) -> None:
    client, runtime = dispatch
    case_id, first, second = merged_pair
    auth = {"authorization": f"Bearer {token('dispatcher', 'township:T09')}"}
    seen = await client.get(f"/v1/cases/{case_id}", headers=auth)
    tips = (await client.get(f"/v1/cases/{case_id}/tips", headers=auth)).json()
    assert [(t["tip_id"], t["joined_by"]) for t in tips] == [
        (str(first), "opening"),
        (str(second), "merge"),
    ]

    body = {"tip_id": str(second), "reason": "不是同一处：一处在路口，一处在学校门口"}
    answer = await client.post(
        f"/v1/cases/{case_id}/split",
        json=body,
        headers={**auth, "If-Match": seen.headers["etag"]},
    )
    assert answer.status_code == 200, answer.text
    split_case_id = UUID(answer.json()["split_case_id"])
    assert answer.json()["case"]["version"] == seen.json()["version"] + 1
    assert answer.headers["etag"] == f'"{seen.json()["version"] + 1}"'

    event = await find_on_topic(
        infra.bootstrap,
        CASES,
        lambda e: e["type"] == "whistle.case.split" and e["subject"] == str(case_id),
    )
    assert event["data"]["split_tip_id"] == str(second)
    assert event["data"]["split_case_id"] == str(split_case_id)
    assert event["data"]["reason"] == body["reason"]
    assert event["data"]["actor_role"] == "dispatcher"
    opened = await find_on_topic(
        infra.bootstrap,
        CASES,
        lambda e: e["type"] == "whistle.case.opened" and e["subject"] == str(split_case_id),
    )
    assert opened["data"]["tip_id"] == str(second)
    assert opened["data"]["matter_code"] == MATTER

    # The tip has a case of its own now, triaged and routed afresh, not merged back.
    new_case = (await client.get(f"/v1/cases/{split_case_id}", headers=auth)).json()
    assert new_case["tip_id"] == str(second) and new_case["status"] == "assigned"
    assert await where_tip_went(runtime, second) == ("opened", split_case_id)
    assert (await outbox_types(runtime, split_case_id))[:2] == [
        "whistle.case.opened",
        "whistle.case.assigned",
    ]
    tips = (await client.get(f"/v1/cases/{case_id}/tips", headers=auth)).json()
    assert tips[1]["split_case_id"] == str(split_case_id) and tips[1]["left_at"]

    # Splitting it again: the tip no longer belongs to the case.
    current = await client.get(f"/v1/cases/{case_id}", headers=auth)
    again = await client.post(
        f"/v1/cases/{case_id}/split",
        json=body,
        headers={**auth, "If-Match": current.headers["etag"]},
    )
    assert again.status_code == 422 and again.headers["content-type"] == PROBLEM


async def test_the_original_tip_cannot_be_split_off(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    merged_pair: tuple[UUID, UUID, UUID],
    token: TokenFactory,
) -> None:
    client, runtime = dispatch
    case_id, first, _ = merged_pair
    auth = {"authorization": f"Bearer {token('dispatcher', 'township:T09')}"}
    etag = (await client.get(f"/v1/cases/{case_id}", headers=auth)).headers["etag"]
    answer = await client.post(
        f"/v1/cases/{case_id}/split",
        json={"tip_id": str(first), "reason": "试试"},
        headers={**auth, "If-Match": etag},
    )
    assert answer.status_code == 409 and answer.headers["content-type"] == PROBLEM
    assert "whistle.case.split" not in await outbox_types(runtime, case_id)


async def test_splitting_needs_the_townships_dispatcher_and_the_current_version(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    merged_pair: tuple[UUID, UUID, UUID],
    token: TokenFactory,
) -> None:
    client, runtime = dispatch
    case_id, _, second = merged_pair
    url, body = f"/v1/cases/{case_id}/split", {"tip_id": str(second), "reason": "不是同一处"}
    mine = {"authorization": f"Bearer {token('dispatcher', 'township:T09')}"}
    etag = (await client.get(f"/v1/cases/{case_id}", headers=mine)).headers["etag"]

    missing = await client.post(url, json=body, headers=mine)
    assert missing.status_code == 428
    stale = await client.post(url, json=body, headers={**mine, "If-Match": '"99"'})
    assert stale.status_code == 412
    other = {"authorization": f"Bearer {token('dispatcher', 'township:T03')}", "If-Match": etag}
    assert (await client.post(url, json=body, headers=other)).status_code == 404
    unit = await client.get(f"/v1/cases/{case_id}", headers=mine)
    unit_id = unit.json()["unit_id"]
    as_unit = {"authorization": f"Bearer {token('unit_member', f'unit:{unit_id}')}"}
    refused = await client.post(url, json=body, headers={**as_unit, "If-Match": etag})
    assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
    blank = await client.post(url, json={**body, "reason": ""}, headers={**mine, "If-Match": etag})
    assert blank.status_code == 422
    assert "whistle.case.split" not in await outbox_types(runtime, case_id)
    async with runtime.sessions() as session:
        link = await session.get(CaseTip, second)
    assert link is not None and link.left_at is None
