"""Open311 GeoReport v2 through real HTTP against intake on the real database and broker."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from defusedxml import ElementTree
from fastapi import FastAPI
from sqlalchemy import func, select

from contracts.envelope import new_event
from contracts.events import CaseResolved
from contracts.topics import CASES, TIPS
from reference.county import load_reference
from services.intake.app import create_app
from services.intake.models import Tip
from services.intake.open311_rules import grid_centre
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.support.infra import Infra, eventually, read_topic

KEY = "whistle-open311-dev-key"  # the documented development default
W3C_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
DATETIME_FIELDS = ("requested_datetime", "updated_datetime", "expected_datetime", "changeset")
SPEC_DATATYPES = {"string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"}

Intake = tuple[httpx.AsyncClient, Runtime]


def _xml(answer: httpx.Response) -> Any:
    assert answer.headers["content-type"].startswith("text/xml")
    assert answer.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ElementTree.fromstring(answer.content)


def _json(answer: httpx.Response) -> Any:
    assert answer.headers["content-type"].startswith("application/json")
    return answer.json()


def _spec_error(answer: httpx.Response, status: int, fmt: str) -> str:
    """The spec's error document; returns the description."""
    assert answer.status_code == status
    if fmt == "xml":
        root = _xml(answer)
        assert root.tag == "errors"
        (error,) = root.findall("error")
        assert error.findtext("code") == str(status)
        return str(error.findtext("description"))
    (error,) = _json(answer)
    assert error["code"] == status
    return str(error["description"])


def _form(service_code: str = "road-obstruction", **fields: str) -> dict[str, str]:
    return {
        "api_key": KEY,
        "service_code": service_code,
        "lat": "38.75",
        "long": "113.25",
        "description": f"公路上有人晒玉米，车辆没法通行 {uuid4().hex[:8]}",
        **fields,
    }


def _phone() -> str:
    return f"139{uuid4().int % 10**8:08d}"


async def _post(client: httpx.AsyncClient, data: dict[str, str], fmt: str = "json") -> str:
    answer = await client.post(f"/open311/v2/requests.{fmt}", data=data)
    assert answer.status_code == 201, answer.text
    if fmt == "xml":
        return str(_xml(answer).find("request").findtext("service_request_id"))
    (created,) = _json(answer)
    return str(created["service_request_id"])


async def test_a_request_given_only_a_point_is_listed_with_the_place_it_falls_in(
    intake: Intake, migrated: Settings
) -> None:
    """GeoReport clients expect an ``address`` on every request (open311-validator fails with
    ``KeyError: 'address'`` without one): a point alone is listed with its township, village and
    grid."""
    client, _ = intake
    tracking_no = await _post(client, _form())  # lat and long only
    reference = load_reference(migrated.config_dir)
    hit = reference.grid_locator.locate(38.75, 113.25)
    assert hit is not None
    township, village, grid = reference.grids[hit.grid_id]
    place = f"{township.name}{village.name}{grid.name}"

    (listed,) = _json(await client.get(f"/open311/v2/requests/{tracking_no}.json"))
    assert listed["address"] == place
    xml = _xml(await client.get(f"/open311/v2/requests.xml?service_request_id={tracking_no}"))
    assert xml.find("request").findtext("address") == place
    # And in the plain lists a validator walks, where every request must have one.
    every = _json(await client.get("/open311/v2/requests.json"))
    assert next(r for r in every if r["service_request_id"] == tracking_no)["address"] == place
    assert all(r["address"] for r in every)
    requests = _xml(await client.get("/open311/v2/requests.xml")).findall("request")
    assert all(r.findtext("address") for r in requests)
    (mine,) = [r for r in requests if r.findtext("service_request_id") == tracking_no]
    assert mine.findtext("address") == place


def _shown(fmt: str, answer: httpx.Response, tracking_no: str) -> dict[str, Any]:
    """The request ``tracking_no`` of a GET's answer, as a dict of its fields, whichever the
    format."""
    if fmt == "json":
        requests = [dict(r) for r in _json(answer)]
    else:
        requests = [{c.tag: c.text for c in r} for r in _xml(answer).findall("request")]
    (shown,) = [r for r in requests if r["service_request_id"] == tracking_no]
    return shown


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_a_published_point_is_rounded_to_about_100_m(intake: Intake, fmt: str) -> None:
    client, runtime = intake
    tracking_no = await _post(
        client,
        _form(
            "street-vending",
            lat="38.654321",
            long="113.535678",
            address_string="城关镇人民路88号门口",
        ),
    )
    for url in (f"/open311/v2/requests/{tracking_no}.{fmt}", f"/open311/v2/requests.{fmt}"):
        answer = await client.get(url)
        shown = _shown(fmt, answer, tracking_no)
        assert shown["address"] == "城关镇人民路88号门口"  # a stall's place names no reporter
        assert (float(shown["lat"]), float(shown["long"])) == (38.654, 113.536)
        assert "38.654321" not in answer.text and "113.535678" not in answer.text
    tip = await _tip(runtime, tracking_no)
    assert (tip.lat, tip.lon) == (38.654321, 113.535678)  # intake keeps what was given


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_a_matter_that_names_the_reporter_is_published_by_its_grid_alone(
    intake: Intake, migrated: Settings, fmt: str
) -> None:
    """Noise is reported from next door: the public sees the grid, its centre, and the
    citizen's words without the door number they added; the citizen, with the access code,
    sees their own place exactly."""
    client, _ = intake
    answer = await client.post(
        "/open311/v2/requests.json",
        data=_form(
            "noise",
            lat="38.654321",
            long="113.535678",
            address_string="幸福小区5号楼",
            description="楼上每晚跳绳到十二点",
            **{"attribute[location_detail]": "5号楼3单元302室"},
        ),
    )
    assert answer.status_code == 201, answer.text
    (created,) = _json(answer)
    tracking_no = created["service_request_id"]
    reference = load_reference(migrated.config_dir)
    hit = reference.grid_locator.locate(38.654321, 113.535678)
    assert hit is not None and hit.distance_m == 0
    township, village, grid = reference.grids[hit.grid_id]
    centre = grid_centre(grid)
    assert centre is not None

    for url in (f"/open311/v2/requests/{tracking_no}.{fmt}", f"/open311/v2/requests.{fmt}"):
        shown = _shown(fmt, await client.get(url), tracking_no)
        published = json.dumps(shown, ensure_ascii=False)
        for secret in ("幸福小区", "5号楼", "302", "38.6543", "113.5357"):
            assert secret not in published, (url, secret)
        assert shown["address"] == f"{township.name}{village.name}{grid.name}"
        assert (float(shown["lat"]), float(shown["long"])) == (
            round(centre[0], 3),
            round(centre[1], 3),
        )
        assert str(shown["description"]).startswith("楼上每晚跳绳到十二点")

    code = re.search(r"查询码 (\d{6})", created["service_notice"]).group(1)  # type: ignore[union-attr]
    own = await client.get(f"/v1/tips/{tracking_no}", headers={"Access-Code": code})
    assert own.status_code == 200
    assert own.json()["address"] == "幸福小区5号楼"
    assert own.json()["location"] == {"lat": 38.654321, "lon": 113.535678}
    without = await client.get(f"/v1/tips/{tracking_no}")
    assert without.status_code == 400 and "幸福小区" not in without.text


async def _tip(runtime: Runtime, tracking_no: str) -> Tip:
    async with runtime.sessions() as session:
        tip = await session.scalar(select(Tip).where(Tip.tracking_no == tracking_no))
    assert tip is not None
    return tip


async def _tips_with_text(runtime: Runtime, description: str) -> int:
    """Tips whose text begins with ``description`` (answers to attributes follow it)."""
    query = select(func.count()).where(Tip.text.startswith(description, autoescape=True))
    async with runtime.sessions() as session:
        return int(await session.scalar(query) or 0)


async def _published(bootstrap: str, topic: str, key: str) -> list[ConsumerRecord]:
    """Every record now on ``topic`` whose key is ``key``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata partitions_for_topic reads
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()
    records = await read_topic(bootstrap, topic, sum(ends[p] - starts[p] for p in partitions))
    return [r for r in records if r.key == key.encode()]


def _datetimes(document: Any) -> list[str]:
    """Every datetime field anywhere in a JSON document."""
    if isinstance(document, dict):
        own = [v for k, v in document.items() if k in DATETIME_FIELDS]
        return own + [d for v in document.values() for d in _datetimes(v)]
    if isinstance(document, list):
        return [d for v in document for d in _datetimes(v)]
    return []


# --- discovery and services -----------------------------------------------------------------


async def test_discovery_announces_the_endpoint_in_both_formats(intake: Intake) -> None:
    client, _ = intake
    root = _xml(await client.get("/open311/v2/discovery.xml"))
    assert root.tag == "discovery"
    assert W3C_UTC.match(str(root.findtext("changeset")))
    (endpoint,) = root.find("endpoints").findall("endpoint")
    assert endpoint.findtext("specification") == "http://wiki.open311.org/GeoReport_v2"
    assert str(endpoint.findtext("url")).endswith("/open311/v2")
    assert endpoint.findtext("type") == "production"
    formats = [f.text for f in endpoint.find("formats").findall("format")]
    assert formats == ["text/xml", "application/json"]

    document = _json(await client.get("/open311/v2/discovery.json"))
    assert document["endpoints"][0]["formats"] == formats
    assert document["changeset"] == root.findtext("changeset")


async def test_services_are_the_catalogues_distinct_service_codes(
    intake: Intake, migrated: Settings
) -> None:
    client, _ = intake
    items = load_reference(migrated.config_dir).catalogue.items
    codes = {i.open311_service_code for i in items if i.open311_service_code}

    root = _xml(await client.get("/open311/v2/services.xml"))
    assert root.tag == "services"
    services = root.findall("service")
    assert {s.findtext("service_code") for s in services} == codes
    assert len(services) == len(codes)
    for service in services:
        assert [child.tag for child in service] == [
            "service_code",
            "service_name",
            "description",
            "metadata",
            "type",
            "keywords",
            "group",
        ]
        assert service.findtext("metadata") == "true" and service.findtext("type") == "realtime"
    road = next(s for s in services if s.findtext("service_code") == "road-obstruction")
    assert road.findtext("service_name") == next(
        i.name for i in items if i.open311_service_code == "road-obstruction"
    )
    assert road.findtext("group") == "交通运输"

    listed = _json(await client.get("/open311/v2/services.json"))
    assert {s["service_code"] for s in listed} == codes
    assert all(s["metadata"] is True for s in listed)


async def test_a_service_definition_uses_the_spec_datatypes(intake: Intake) -> None:
    client, _ = intake
    root = _xml(await client.get("/open311/v2/services/noise.xml"))
    assert root.tag == "service_definition" and root.findtext("service_code") == "noise"
    attributes = root.find("attributes").findall("attribute")
    assert {a.findtext("datatype") for a in attributes} == SPEC_DATATYPES
    assert [a.findtext("order") for a in attributes] == [
        str(n) for n in range(1, len(attributes) + 1)
    ]
    for attribute in attributes:
        assert attribute.findtext("variable") == "true"
        assert attribute.findtext("required") in ("true", "false")
        assert attribute.findtext("code") and attribute.findtext("description")
        listed = attribute.findtext("datatype").endswith("valuelist")
        values = attribute.find("values")
        assert (values is not None) == listed
        if listed:
            assert all(v.findtext("key") and v.findtext("name") for v in values.findall("value"))

    definition = _json(await client.get("/open311/v2/services/noise.json"))
    assert definition["service_code"] == "noise"
    assert [a["code"] for a in definition["attributes"]] == [a.findtext("code") for a in attributes]
    matter = next(a for a in definition["attributes"] if a["code"] == "matter")
    assert matter["datatype"] == "singlevaluelist"
    assert matter["values"] == [
        {"key": "CG-007", "name": "社会生活噪声污染（高音喇叭、广场舞、夜间装修）"}
    ]


@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_an_unknown_service_code_is_404_in_the_spec_format(intake: Intake, fmt: str) -> None:
    client, _ = intake
    answer = await client.get(f"/open311/v2/services/no-such-service.{fmt}")
    assert "no-such-service" in _spec_error(answer, 404, fmt)


async def test_an_unknown_format_is_404(intake: Intake) -> None:
    client, _ = intake
    answer = await client.get("/open311/v2/services.html")
    assert "html" in _spec_error(answer, 404, "xml")


# --- posting requests -----------------------------------------------------------------------


async def test_a_posted_request_is_a_tip_on_the_tips_topic_without_the_phone_number(
    intake: Intake, infra: Infra
) -> None:
    client, runtime = intake
    phone = _phone()
    data = _form(
        phone=phone,
        first_name="秀英",
        last_name="王",
        email="wang@example.com",
        **{
            "attribute[observed_at]": "2026-11-20T07:30:00Z",
            "attribute[people_affected]": "30",
            "attribute[occurrence][]": "morning",
        },
    )
    # a multivaluelist is the same field repeated
    body = httpx.QueryParams(data).add("attribute[occurrence][]", "night")
    answer = await client.post(
        "/open311/v2/requests.xml",
        content=str(body),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 201, answer.text
    (request,) = _xml(answer).findall("request")
    tracking_no = str(request.findtext("service_request_id"))
    assert re.match(r"^QX\d{8}-\d{6}$", tracking_no)
    assert request.find("token") is None  # realtime: the id itself, never both
    notice = str(request.findtext("service_notice"))
    assert tracking_no in notice and "查询码" in notice

    tip = await _tip(runtime, tracking_no)
    assert (tip.channel, tip.category_hint, tip.masked_phone) == (
        "open311",
        "road-obstruction",
        f"{phone[:3]}****{phone[-4:]}",
    )
    assert tip.contact_sealed is not None and phone.encode() not in tip.contact_sealed
    assert "【发生时段】上午、夜间" in tip.text and "【受影响人数】30" in tip.text
    assert "【发现时间】2026-11-20 15:30" in tip.text  # in the county's time

    # The citizen can follow it on the citizen page with the code from the notice.
    code = re.search(r"查询码 (\d{6})", notice).group(1)  # type: ignore[union-attr]
    followed = await client.get(f"/v1/tips/{tracking_no}", headers={"Access-Code": code})
    assert followed.status_code == 200

    records = await eventually(
        lambda: _published(infra.bootstrap, TIPS, str(tip.id)), what="the tip on intake.tips.v1"
    )
    (record,) = records
    event = json.loads(record.value)
    assert event["type"] == "whistle.tip.received"
    assert event["data"]["channel"] == "open311"
    assert event["data"]["category_hint"] == "road-obstruction"
    assert event["data"]["tracking_no"] == tracking_no
    assert event["data"]["external_ref"].startswith("api-key:")
    assert KEY not in record.value.decode()
    assert phone not in record.value.decode() and "wang@example.com" not in record.value.decode()
    assert event["data"]["contact"] == {"masked_phone": None, "phone_hash": tip.phone_hash}


async def test_the_matter_attribute_makes_the_hint_the_matter_code(intake: Intake) -> None:
    client, runtime = intake
    tracking_no = await _post(client, _form("noise", **{"attribute[matter]": "CG-007"}))
    assert (await _tip(runtime, tracking_no)).category_hint == "CG-007"
    # …and the request still reads as the service it was posted to.
    (shown,) = _json(await client.get(f"/open311/v2/requests/{tracking_no}.json"))
    assert shown["service_code"] == "noise"


async def test_an_idempotency_key_makes_a_retried_post_harmless(intake: Intake) -> None:
    client, runtime = intake
    data, key = _form(), {"Idempotency-Key": str(uuid4())}
    first = await client.post("/open311/v2/requests.json", data=data, headers=key)
    again = await client.post("/open311/v2/requests.json", data=data, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert await _tips_with_text(runtime, data["description"]) == 1


@pytest.mark.parametrize("fmt", ["xml", "json"])
@pytest.mark.parametrize("api_key", [None, "", "not-a-key"])
async def test_a_post_without_a_valid_api_key_is_403_and_stores_nothing(
    intake: Intake, fmt: str, api_key: str | None
) -> None:
    client, runtime = intake
    data = _form()
    if api_key is None:
        del data["api_key"]
    else:
        data["api_key"] = api_key
    answer = await client.post(f"/open311/v2/requests.{fmt}", data=data)
    assert "api_key" in _spec_error(answer, 403, fmt)
    assert await _tips_with_text(runtime, data["description"]) == 0


@pytest.mark.parametrize(
    ("change", "status", "mentions"),
    [
        ({"service_code": "no-such-service"}, 404, "no-such-service"),
        ({"service_code": ""}, 400, "service_code"),
        ({"lat": "", "long": ""}, 400, "lat"),
        ({"lat": "95"}, 400, "lat"),
        ({"long": ""}, 400, "long"),
        ({"phone": "call me"}, 400, "phone"),
        ({"attribute[colour]": "red"}, 400, "attribute[colour]"),
        ({"attribute[people_affected]": "many"}, 400, "people_affected"),
        ({"attribute[observed_at]": "yesterday"}, 400, "observed_at"),
        ({"attribute[occurrence][]": "midnight"}, 400, "occurrence"),
        ({"attribute[location_detail]": "a\nb"}, 400, "location_detail"),
        ({"description": "长" * 4001}, 400, "description"),
    ],
)
async def test_a_bad_post_gets_a_specific_error_and_stores_nothing(
    intake: Intake, change: dict[str, str], status: int, mentions: str
) -> None:
    client, runtime = intake
    data = _form(**change)
    answer = await client.post("/open311/v2/requests.json", data=data)
    assert mentions in _spec_error(answer, status, "json")
    assert await _tips_with_text(runtime, data["description"]) == 0


async def test_a_post_must_be_form_encoded(intake: Intake) -> None:
    client, _ = intake
    answer = await client.post("/open311/v2/requests.xml", json=_form())
    assert "x-www-form-urlencoded" in _spec_error(answer, 400, "xml")


async def test_an_oversized_post_is_413_and_stores_nothing(intake: Intake) -> None:
    client, runtime = intake
    data = _form(**{"attribute[details]": "长" * 30_000})
    answer = await client.post("/open311/v2/requests.json", data=data)
    assert "65536" in _spec_error(answer, 413, "json")
    assert await _tips_with_text(runtime, data["description"]) == 0


async def test_an_address_alone_locates_a_request(intake: Intake) -> None:
    client, runtime = intake
    tracking_no = await _post(client, _form(lat="", long="", address_string="城关镇迎宾社区"))
    tip = await _tip(runtime, tracking_no)
    assert (tip.address, tip.lat) == ("城关镇迎宾社区", None)


# --- reading requests -----------------------------------------------------------------------


async def _resolve(producer: AIOKafkaProducer, tip: Tip) -> None:
    """Dispatch resolving the tip's case, as intake hears it on dispatch.cases.v1."""
    case_id = uuid4()
    resolved = CaseResolved(
        case_id=case_id,
        tip_id=tip.id,
        actor="S-0001",
        actor_role="unit_officer",
        version=4,
        township_code="T01",
        unit_id="T01-ZHZF",
        resolution="rectified",
        note="已责令当事人清理",
    )
    event = new_event("whistle/dispatch", str(case_id), resolved, datetime.now(UTC))
    await producer.send_and_wait(CASES, event.to_bytes(), key=str(case_id).encode())


async def test_requests_are_filtered_by_id_status_service_and_date(
    intake: Intake, producer: AIOKafkaProducer
) -> None:
    client, runtime = intake
    phone = _phone()
    stall = await _post(client, _form("street-vending", phone=phone))
    noise = await _post(client, _form("noise"), fmt="xml")
    await _resolve(producer, await _tip(runtime, stall))

    async def closed() -> dict[str, Any] | None:
        (shown,) = _json(await client.get(f"/open311/v2/requests/{stall}.json"))
        return shown if shown["status"] == "closed" else None

    shown = await eventually(closed, what="the resolved tip to read closed")
    assert shown["status_notes"] == "已办结，等待回访"
    assert shown["service_code"] == "street-vending" and shown["lat"] == 38.75
    assert W3C_UTC.match(shown["updated_datetime"])
    assert shown["updated_datetime"] >= shown["requested_datetime"]

    both = _json(await client.get(f"/open311/v2/requests.json?service_request_id={stall},{noise}"))
    assert {r["service_request_id"] for r in both} == {stall, noise}
    assert {r["status"] for r in both} == {"open", "closed"}

    def ids(listed: list[dict[str, Any]]) -> set[str]:
        return {r["service_request_id"] for r in listed}

    closed_now = _json(await client.get("/open311/v2/requests.json?status=closed"))
    assert stall in ids(closed_now) and noise not in ids(closed_now)
    open_now = _json(await client.get("/open311/v2/requests.json?status=open"))
    assert noise in ids(open_now) and stall not in ids(open_now)
    either = _json(await client.get("/open311/v2/requests.json?status=open,closed"))
    assert {stall, noise} <= ids(either)

    by_code = _json(await client.get("/open311/v2/requests.json?service_code=noise,elevator"))
    assert noise in ids(by_code) and stall not in ids(by_code)

    now = datetime.now(UTC)
    window = {
        "start_date": (now - timedelta(minutes=10)).isoformat(),
        "end_date": (now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    recent = _json(await client.get("/open311/v2/requests.json", params=window))
    assert {stall, noise} <= ids(recent)
    last_year = {
        "start_date": "2025-01-01T00:00:00+08:00",
        "end_date": "2025-02-01T00:00:00+08:00",
    }
    assert _json(await client.get("/open311/v2/requests.json", params=last_year)) == []

    root = _xml(await client.get("/open311/v2/requests.xml", params={"service_request_id": noise}))
    assert root.tag == "service_requests"
    (request,) = root.findall("request")
    assert request.findtext("status") == "open" and request.findtext("status_notes") == "已受理"
    assert request.findtext("service_name") and request.findtext("description")

    every_body = [
        r.text
        for r in [
            await client.get(f"/open311/v2/requests/{stall}.xml"),
            await client.get("/open311/v2/requests.xml"),
            await client.get("/open311/v2/requests.json"),
        ]
    ]
    masked = f"{phone[:3]}****{phone[-4:]}"
    assert all(phone not in body and masked not in body for body in every_body)
    for fmt_body in every_body[2:]:
        assert all(W3C_UTC.match(d) for d in _datetimes(json.loads(fmt_body)))


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z", "90 days"),
        ("start_date=2026-02-01T00:00:00Z&end_date=2026-01-01T00:00:00Z", "end_date"),
        ("start_date=last-tuesday", "start_date"),
        ("status=pending", "status"),
        ("service_code=no-such-service", "no-such-service"),
    ],
)
async def test_a_bad_filter_is_400_in_the_spec_format(
    intake: Intake, query: str, mentions: str
) -> None:
    client, _ = intake
    answer = await client.get(f"/open311/v2/requests.xml?{query}")
    assert mentions in _spec_error(answer, 400, "xml")


async def test_descriptions_are_published_without_the_numbers_typed_into_them(
    intake: Intake,
) -> None:
    client, _ = intake
    phone = _phone()
    tracking_no = await _post(client, _form(description=f"有人占道，联系我 {phone}，谢谢"))
    (shown,) = _json(await client.get(f"/open311/v2/requests/{tracking_no}.json"))
    assert phone not in shown["description"]
    assert f"{phone[:3]}****{phone[-4:]}" in shown["description"]


@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_an_unknown_request_is_404_in_the_spec_format(intake: Intake, fmt: str) -> None:
    client, _ = intake
    answer = await client.get(f"/open311/v2/requests/QX20260101-000000.{fmt}")
    assert "QX20260101-000000" in _spec_error(answer, 404, fmt)


async def test_tips_from_other_channels_are_not_published(intake: Intake) -> None:
    client, _ = intake
    web = await client.post("/v1/tips", json={"text": "路灯不亮", "grid_id": "T02V01G01"})
    tracking_no = web.json()["tracking_no"]
    _spec_error(await client.get(f"/open311/v2/requests/{tracking_no}.json"), 404, "json")
    listed = _json(await client.get(f"/open311/v2/requests.json?service_request_id={tracking_no}"))
    assert listed == []
    _spec_error(await client.get(f"/open311/v2/tokens/{web.json()['tip_id']}.xml"), 404, "xml")


async def test_a_tips_id_is_a_token_for_its_service_request_id(intake: Intake) -> None:
    client, runtime = intake
    tracking_no = await _post(client, _form())
    token = str((await _tip(runtime, tracking_no)).id)
    root = _xml(await client.get(f"/open311/v2/tokens/{token}.xml"))
    (request,) = root.findall("request")
    assert (request.findtext("service_request_id"), request.findtext("token")) == (
        tracking_no,
        token,
    )
    assert _json(await client.get(f"/open311/v2/tokens/{token}.json")) == [
        {"service_request_id": tracking_no, "token": token}
    ]
    for unknown in (str(UUID(int=7)), "not-a-token"):
        _spec_error(await client.get(f"/open311/v2/tokens/{unknown}.json"), 404, "json")


# --- rate limits ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def strict(migrated: Settings) -> AsyncIterator[FastAPI]:
    settings = migrated.model_copy(
        update={
            "rate_limit_tips_per_address_per_hour": 2,
            "rate_limit_tips_per_phone_per_day": 1,
            # Beside the module's other intake: a consumer group of its own.
            "kafka_group_prefix": "test-open311-strict",
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def _from(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_open311_posts_share_the_web_channels_rate_limits(strict: FastAPI) -> None:
    address = f"10.31.{uuid4().int % 250}.{uuid4().int % 250}"
    async with _from(strict, address) as client:
        codes = [
            (await client.post("/open311/v2/requests.xml", data=_form())).status_code
            for _ in range(2)
        ]
        refused = await client.post("/open311/v2/requests.xml", data=_form())
    assert codes == [201, 201]
    assert "请求过于频繁" in _spec_error(refused, 429, "xml")
    assert 0 < int(refused.headers["retry-after"]) <= 3600

    phone = _phone()
    async with _from(strict, f"10.32.{uuid4().int % 250}.1") as client:
        first = await client.post("/open311/v2/requests.json", data=_form(phone=phone))
    async with _from(strict, f"10.33.{uuid4().int % 250}.1") as client:
        second = await client.post("/open311/v2/requests.json", data=_form(phone=phone))
    assert first.status_code == 201
    _spec_error(second, 429, "json")
