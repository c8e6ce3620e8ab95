"""GeoReport v2 rules: services from the catalogue, attributes, filters, statuses, documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from defusedxml import ElementTree

from reference.county import MatterItem, load_reference
from services.intake.models import Tip
from services.intake.open311_format import render, w3c
from services.intake.open311_rules import (
    MAX_RANGE,
    NO_PLACE,
    Attribute,
    InvalidRequest,
    Service,
    category_hint,
    parse_attributes,
    parse_query,
    published_address,
    redact_contacts,
    request_document,
    services_from_catalogue,
    tip_text,
)

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"
TZ = "Asia/Shanghai"
NOW = datetime(2026, 11, 20, 9, 0, 5, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def items() -> list[MatterItem]:
    return list(load_reference(CONFIG).catalogue.items)


@pytest.fixture(scope="module")
def services(items: list[MatterItem]) -> dict[str, Service]:
    return services_from_catalogue(items)


def test_items_sharing_a_code_make_one_service_named_from_the_catalogue(
    items: list[MatterItem],
) -> None:
    noise, fumes = (
        next(i for i in items if i.open311_service_code == c) for c in ("noise", "restaurant-fumes")
    )
    shared = [noise, fumes.model_copy(update={"open311_service_code": "noise"})]
    (service,) = services_from_catalogue(shared).values()
    assert service.code == "noise"
    assert [m.key for m in service.matters] == [noise.code, fumes.code]
    # 噪声污染 and 大气污染: no common category, so the first matter's name stands for both.
    assert noise.minor_category != fumes.minor_category
    assert service.name == f"{noise.name}等"
    assert noise.name in service.description and fumes.name in service.description
    assert service.hints() == {"noise", noise.code, fumes.code}


def test_items_of_one_minor_category_are_named_by_it(items: list[MatterItem]) -> None:
    first, second = items[0], items[1]
    same = [
        first,
        second.model_copy(
            update={
                "open311_service_code": first.open311_service_code,
                "minor_category": first.minor_category,
            }
        ),
    ]
    (service,) = services_from_catalogue(same).values()
    assert service.name == first.minor_category


def test_items_without_a_code_stay_internal(
    items: list[MatterItem], services: dict[str, Service]
) -> None:
    coded = {i.open311_service_code for i in items if i.open311_service_code}
    assert set(services) == coded
    assert len(services) < len(items)


def _answers(service: Service, **fields: str | list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in fields.items():
        values = value if isinstance(value, list) else [value]
        suffix = "[]" if isinstance(value, list) else ""
        pairs.extend((f"attribute[{name}]{suffix}", v) for v in values)
    return pairs


def test_answers_of_every_datatype_are_checked_and_kept_in_definition_order(
    services: dict[str, Service],
) -> None:
    noise = services["noise"]
    pairs = [
        ("api_key", "k"),
        *_answers(
            noise,
            details="晚上十点以后\n还在放",
            occurrence=["night", "evening", "night"],
            people_affected="12.5",
            observed_at="2026-11-19T14:00:00Z",
            location_detail="3号楼东侧",
            matter=noise.matters[0].key,
        ),
    ]
    answers = parse_attributes(pairs, noise, TZ)
    assert [a.attribute.code for a in answers] == [
        "matter",
        "observed_at",
        "people_affected",
        "location_detail",
        "occurrence",
        "details",
    ]
    shown = {a.attribute.code: a.shown(TZ) for a in answers}
    assert shown["occurrence"] == "夜间、傍晚"
    assert shown["observed_at"] == "2026-11-19 22:00"
    assert shown["matter"] == noise.matters[0].name
    assert category_hint(noise, answers) == noise.matters[0].key
    assert category_hint(noise, []) == "noise"


def test_empty_answers_count_as_not_given(services: dict[str, Service]) -> None:
    assert parse_attributes([("attribute[details]", "  ")], services["noise"], TZ) == []


@pytest.mark.parametrize(
    ("pairs", "mentions"),
    [
        ([("attribute[colour]", "red")], "colour"),
        ([("attribute", "x")], "attribute[code]"),
        ([("attribute[matter]", "XX-999")], "matter"),
        ([("attribute[matter]", "CG-007"), ("attribute[matter]", "CG-007")], "one value"),
        ([("attribute[occurrence][]", "noon")], "occurrence"),
        ([("attribute[people_affected]", "nan")], "number"),
        ([("attribute[people_affected]", "inf")], "number"),
        ([("attribute[observed_at]", "2026-13-01")], "datetime"),
        ([("attribute[location_detail]", "a\r\nb")], "single line"),
        ([("attribute[location_detail]", "长" * 201)], "200"),
        ([("attribute[details]", "长" * 2001)], "2000"),
    ],
)
def test_bad_answers_are_refused(
    services: dict[str, Service], pairs: list[tuple[str, str]], mentions: str
) -> None:
    with pytest.raises(InvalidRequest, match=mentions.replace("[", r"\[").replace("]", r"\]")):
        parse_attributes(pairs, services["noise"], TZ)


def test_a_required_attribute_must_be_answered(services: dict[str, Service]) -> None:
    noise = services["noise"]
    plate = Attribute("plate", "string", "车牌号？", "车牌", "如 晋A12345", required=True)
    strict = Service(**{**noise.__dict__, "attributes": (plate,)})
    with pytest.raises(InvalidRequest, match="required"):
        parse_attributes([], strict, TZ)
    (answer,) = parse_attributes([("attribute[plate]", "晋A12345")], strict, TZ)
    assert answer.shown(TZ) == "晋A12345"


def test_the_tip_text_is_the_description_then_the_answers(services: dict[str, Service]) -> None:
    noise = services["noise"]
    answers = parse_attributes([("attribute[occurrence][]", "night")], noise, TZ)
    text = tip_text("广场舞太吵", noise, answers, "https://example.com/a.jpg", TZ)
    assert text.splitlines() == [
        "广场舞太吵",
        "【发生时段】夜间",
        "【图片链接】https://example.com/a.jpg",
    ]
    assert tip_text(None, noise, [], None, TZ) == noise.name
    with pytest.raises(InvalidRequest, match="4000"):
        tip_text("长" * 3995, noise, answers, None, TZ)


def test_without_dates_a_query_covers_the_last_90_days(services: dict[str, Service]) -> None:
    query = parse_query({}, services, NOW, TZ)
    assert (query.start, query.end) == (NOW - MAX_RANGE, NOW)
    assert query.hints is None and query.statuses is None and query.ids is None


def test_one_date_gives_the_other_90_days_away(services: dict[str, Service]) -> None:
    start = parse_query({"start_date": "2026-11-01"}, services, NOW, TZ)
    assert start.start == datetime(2026, 11, 1, tzinfo=ZoneInfo(TZ))  # county's local day
    assert start.end == start.start + MAX_RANGE  # type: ignore[operator]
    end = parse_query({"end_date": "2026-11-01T00:00:00Z"}, services, NOW, TZ)
    assert end.start == datetime(2026, 11, 1, tzinfo=UTC) - MAX_RANGE


def test_a_plus_turned_space_in_a_query_string_is_read_as_plus(
    services: dict[str, Service],
) -> None:
    query = parse_query(
        {"start_date": "2026-11-01T00:00:00 08:00", "end_date": "2026-11-02T00:00:00+08:00"},
        services,
        NOW,
        TZ,
    )
    assert query.start == datetime(2026, 10, 31, 16, tzinfo=UTC)


def test_ids_override_every_other_filter(services: dict[str, Service]) -> None:
    query = parse_query(
        {"service_request_id": "QX1, QX2,QX1,", "start_date": "garbage", "status": "what"},
        services,
        NOW,
        TZ,
    )
    assert query.ids == ("QX1", "QX2")


def test_status_and_service_filters_become_internal_statuses_and_hints(
    services: dict[str, Service],
) -> None:
    query = parse_query({"status": "closed", "service_code": "noise"}, services, NOW, TZ)
    assert query.statuses == {"resolved", "closed"}
    assert query.hints == services["noise"].hints()
    both = parse_query({"status": "open,closed"}, services, NOW, TZ)
    assert both.statuses == {"received", "triage", "assigned", "in_progress", "resolved", "closed"}


def test_a_range_may_span_90_days_and_no_more(services: dict[str, Service]) -> None:
    start = datetime(2026, 8, 1, tzinfo=UTC)
    exactly = {"start_date": start.isoformat(), "end_date": (start + MAX_RANGE).isoformat()}
    assert parse_query(exactly, services, NOW, TZ).end == start + MAX_RANGE
    longer = {**exactly, "end_date": (start + MAX_RANGE + timedelta(seconds=1)).isoformat()}
    with pytest.raises(InvalidRequest, match="90 days"):
        parse_query(longer, services, NOW, TZ)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("电话13812345678", "电话138****5678"),
        ("电话 138-1234-5678 谢谢", "电话 138****5678 谢谢"),
        ("+86 13812345678", "138****5678"),
        ("座机0351-7654321", "座机035****4321"),
        ("邮箱 wang.li@example.com.cn", "邮箱 ***@***"),
        ("订单号 202611211234567890", "订单号 202611211234567890"),
        ("3号楼12单元", "3号楼12单元"),
    ],
)
def test_contacts_typed_into_a_description_are_masked(text: str, shown: str) -> None:
    assert redact_contacts(text) == shown


def test_datetimes_are_utc_with_z_and_whole_seconds() -> None:
    local = datetime(2026, 11, 20, 17, 0, 5, 999999, tzinfo=ZoneInfo(TZ))
    assert w3c(local) == "2026-11-20T09:00:05Z"


def _tip(**fields: object) -> Tip:
    defaults: dict[str, object] = {
        "id": uuid4(),
        "tracking_no": "QX20261120-000001",
        "access_code_hash": "x",
        "channel": "open311",
        "text": "有人占道经营 13812345678",
        "category_hint": "CG-007",
        "received_at": NOW,
        "status": "resolved",
        "masked_phone": "138****5678",
        "phone_hash": "abc",
        "contact_sealed": b"sealed",
    }
    return Tip(**{**defaults, **fields})


def test_a_request_document_shows_status_and_place_but_no_contact(
    services: dict[str, Service],
) -> None:
    document = request_document(
        _tip(lat=38.75, lon=113.25), NOW + timedelta(hours=2), services, "已办结", "城关镇"
    )
    assert document["status"] == "closed" and document["status_notes"] == "已办结"
    assert document["service_code"] == "noise"  # the matter's service
    assert document["requested_datetime"] == "2026-11-20T09:00:05Z"
    assert document["updated_datetime"] == "2026-11-20T11:00:05Z"
    assert document["lat"] == 38.75 and document["long"] == 113.25
    assert "13812345678" not in json.dumps(document) and "abc" not in json.dumps(document)
    assert document["address"] == "城关镇"
    in_progress = request_document(_tip(status="in_progress"), NOW, services, "", NO_PLACE)
    assert in_progress["status"] == "open"


def test_the_published_address_is_the_citizens_else_the_grid_the_point_is_in() -> None:
    reference = load_reference(CONFIG)
    township, village, grid = next(iter(reference.grids.values()))
    assert published_address("城关镇迎宾社区", (township, village, grid)) == "城关镇迎宾社区"
    assert published_address(None, (township, village, grid)) == (
        f"{township.name}{village.name}{grid.name}"
    )
    assert published_address("", None) == NO_PLACE


def test_documents_render_as_spec_xml_and_spark_json() -> None:
    document = [{"service_request_id": "QX1", "status": "open", "lat": 38.5, "zipcode": None}]
    root = ElementTree.fromstring(render("xml", "service_requests", document))
    (request,) = root.findall("request")
    assert [c.tag for c in request] == ["service_request_id", "status", "lat"]
    assert request.findtext("lat") == "38.5"
    assert json.loads(render("json", "service_requests", document)) == [
        {"service_request_id": "QX1", "status": "open", "lat": 38.5}
    ]
    nested = {"service_code": "x", "attributes": [{"variable": True, "values": [{"key": "a"}]}]}
    root = ElementTree.fromstring(render("xml", "service_definition", nested))
    assert root.find("attributes/attribute/variable").text == "true"
    assert root.find("attributes/attribute/values/value/key").text == "a"


def test_citizens_text_is_escaped_not_markup() -> None:
    hostile = '</description><status>closed</status><!ENTITY x "y">&'
    root = ElementTree.fromstring(render("xml", "service_requests", [{"description": hostile}]))
    assert root.find("request/description").text == hostile
    assert root.find("request/status") is None
