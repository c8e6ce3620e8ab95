"""行政执法公示 (issue 15, item 4): the public record of closed enforcement cases — what it
shows, what it never shows, and when a case appears on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from uuid6 import uuid7

from services.dispatch.app import create_app as create_dispatch
from services.dispatch.models import Case, CaseTimelineEntry, TipText
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.integration.conftest import MovableClock, _in_process

# Later than any other test's cases, so that these are the newest on the record.
CLOSED_AT = datetime(2031, 3, 10, 2, 0, tzinfo=UTC)
CITIZEN_WORDS = "张三在五里铺村17号门口摆摊，电话13912345678"
UNIT_NOTE = "对当事人李四罚款200元"


@pytest.fixture
async def public(
    migrated: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime, MovableClock]]:
    clock = MovableClock(CLOSED_AT)
    async for client, runtime in _in_process(create_dispatch(migrated, clock)):
        yield client, runtime, clock


def _entry(case_id: UUID, kind: str, at: datetime, data: dict[str, Any]) -> CaseTimelineEntry:
    return CaseTimelineEntry(
        source="whistle.dispatch",
        event_id=str(uuid7()),
        case_id=case_id,
        type=f"whistle.case.{kind}",
        time=at,
        data=data,
    )


async def a_case(
    runtime: Runtime,
    status: str,
    steps: list[tuple[str, datetime, dict[str, Any]]],
    matter: str = "CG-001",
    unit: str = "T03-CGJ",
) -> UUID:
    """A case of 城关镇五里铺村 (T03V02), by default for 占道经营 (CG-001) held by the
    urban-management squad's officer 宋晓丽, with the citizen's own words stored beside it."""
    opened = CLOSED_AT - timedelta(days=3)
    case = Case(
        county="140999",
        id=uuid7(),
        tip_id=uuid7(),
        status=status,
        matter_code=matter,
        township_code="T03",
        village_code="T03V02",
        grid_id="T03V02G01",
        lat=38.7601,
        lon=113.2251,
        urgency="general",
        unit_id=unit,
        staff_id="S0089" if unit == "T03-CGJ" else None,
        catalogue_version="test",
        created_at=opened,
        updated_at=opened,
    )
    async with runtime.transaction() as session:
        session.add(case)
        session.add(
            TipText(
                tip_id=case.tip_id,
                text=CITIZEN_WORDS,
                address="五里铺村17号",
                channel="web",
                received_at=opened,
            )
        )
        for kind, at, data in steps:
            session.add(_entry(case.id, kind, at, data))
    return case.id


def closed_after_a_resolution(
    closed_at: datetime = CLOSED_AT,
) -> list[tuple[str, datetime, dict[str, Any]]]:
    return [
        ("assigned", closed_at - timedelta(days=2), {"unit_id": "T03-CGJ"}),
        ("resolved", closed_at - timedelta(days=1), {"resolution": "penalised", "note": UNIT_NOTE}),
        ("closed", closed_at, {}),
    ]


async def _published(client: httpx.AsyncClient, **query: str) -> dict[str, dict[str, Any]]:
    answer = await client.get("/v1/publicity", params=query)  # no token: it is public
    assert answer.status_code == 200, answer.text
    return {r["service_request_id"]: r for r in answer.json()["records"]}


async def test_a_closed_case_is_published_after_the_delay_with_its_matter_basis_result_and_officer(
    public: tuple[httpx.AsyncClient, Runtime, MovableClock],
) -> None:
    client, runtime, clock = public
    case_id = str(await a_case(runtime, "closed", closed_after_a_resolution()))

    clock.now = CLOSED_AT + timedelta(days=7) - timedelta(seconds=1)
    assert case_id not in await _published(client)  # the parties hear the result first

    clock.now = CLOSED_AT + timedelta(days=7)
    record = (await _published(client))[case_id]
    assert record["service_name"] == "占道经营、出店经营"
    assert record["service_code"] is not None
    assert record["legal_basis"].startswith("《")
    assert record["action_type"] == "行政处罚"
    assert record["result"] == "立案处罚"
    assert record["agency_responsible"] == "城关镇城市管理派驻组"
    assert record["officer"] == {"name": "宋晓丽", "certificate_number": "晋执字14099920240085"}
    assert (record["township"], record["village"]) == ("城关镇", "五里铺村")
    assert [s["step"] for s in record["process"]] == ["受理", "派单", "办结", "结案"]
    assert "行政复议" in record["remedy"] and "行政诉讼" in record["remedy"]


async def test_the_record_names_in_whose_name_the_decision_was_made_and_its_penalty(
    public: tuple[httpx.AsyncClient, Runtime, MovableClock],
) -> None:
    client, runtime, clock = public
    township = {"kind": "township", "code": "T03", "name": "城关镇", "entrusted": False}
    resolved = {
        "resolution": "penalised",
        "note": UNIT_NOTE,
        "acting_in_name_of": township,
        "penalty": {"kinds": ["warning", "fine"], "fine_yuan": 500},
    }
    steps = closed_after_a_resolution()
    steps[1] = ("resolved", steps[1][1], resolved)
    case_id = str(await a_case(runtime, "closed", steps))
    clock.now = CLOSED_AT + timedelta(days=7)
    record = (await _published(client))[case_id]
    assert (record["acting_in_name_of"], record["result"]) == (
        "城关镇",
        "立案处罚：警告、罚款500元",
    )


async def test_the_record_holds_nothing_of_the_citizen_nor_a_place_finer_than_the_village(
    public: tuple[httpx.AsyncClient, Runtime, MovableClock],
) -> None:
    client, runtime, clock = public
    await a_case(runtime, "closed", closed_after_a_resolution())
    clock.now = CLOSED_AT + timedelta(days=30)
    body = (await client.get("/v1/publicity")).text
    for private in ("张三", "13912345678", "17号", "李四", "T03V02G01", "38.76", "113.22"):
        assert private not in body, private


async def test_only_cases_closed_after_a_resolution_and_still_closed_are_published(
    public: tuple[httpx.AsyncClient, Runtime, MovableClock],
) -> None:
    client, runtime, clock = public
    declined = await a_case(runtime, "closed", [("closed", CLOSED_AT, {"reason": "准入未通过"})])
    resolved_not_closed = await a_case(
        runtime, "resolved", [("resolved", CLOSED_AT, {"resolution": "rectified", "note": "-"})]
    )
    reopened = await a_case(
        runtime,
        "in_progress",
        [*closed_after_a_resolution(), ("reopened", CLOSED_AT + timedelta(hours=1), {})],
    )
    clock.now = CLOSED_AT + timedelta(days=30)
    published = await _published(client, limit="200")
    for case_id in (declined, resolved_not_closed, reopened):
        assert str(case_id) not in published


async def test_older_records_are_read_page_by_page(
    public: tuple[httpx.AsyncClient, Runtime, MovableClock],
) -> None:
    client, runtime, clock = public
    # Closed after every other case of this module: the two newest on the record.
    older = await a_case(runtime, "closed", closed_after_a_resolution(CLOSED_AT + timedelta(1)))
    newer = await a_case(runtime, "closed", closed_after_a_resolution(CLOSED_AT + timedelta(2)))
    clock.now = CLOSED_AT + timedelta(days=30)
    first = await client.get("/v1/publicity", params={"limit": "1"})
    (newest,) = first.json()["records"]
    assert newest["service_request_id"] == str(newer)
    second = await _published(client, limit="1", before=newest["updated_datetime"])
    assert list(second) == [str(older)]


async def test_a_service_request_is_never_published_and_does_not_shorten_a_page(
    public: tuple[httpx.AsyncClient, Runtime, MovableClock],
) -> None:
    """A street light mended by 城关镇城建办 is no enforcement act: 行政执法公示 leaves it out,
    in the query, so a page of one still holds the enforcement case closed before it."""
    client, runtime, clock = public
    later = CLOSED_AT + timedelta(days=30)
    enforcement = str(await a_case(runtime, "closed", closed_after_a_resolution(later)))
    street_light = str(
        await a_case(
            runtime,
            "closed",
            closed_after_a_resolution(later + timedelta(hours=1)),
            matter="GF-001",
            unit="T03-CJB",
        )
    )
    clock.now = later + timedelta(days=8)
    page = await _published(client, limit="1")
    assert list(page) == [enforcement]
    assert street_light not in await _published(client, limit="200")
