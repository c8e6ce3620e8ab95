"""GeoReport v2 rules: services from the catalogue, attributes, filters, statuses, documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
import shapely
from defusedxml import ElementTree

from reference.county import Grid, MatterItem, load_reference
from services.intake.models import Tip
from services.intake.open311_format import render, w3c
from services.intake.open311_rules import (
    MAX_RANGE,
    NO_PLACE,
    Attribute,
    InvalidRequest,
    Place,
    PublicPlace,
    Service,
    category_hint,
    grid_centre,
    parse_attributes,
    parse_query,
    public_place,
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
    assert start.end == start.start + MAX_RANGE
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
    stall = _tip(category_hint="CG-001", lat=38.75, lon=113.25, address="城关镇")
    document = request_document(stall, NOW + timedelta(hours=2), services, "已办结", None)
    assert document["status"] == "closed" and document["status_notes"] == "已办结"
    assert document["service_code"] == "street-vending"  # the matter's service
    assert document["requested_datetime"] == "2026-11-20T09:00:05Z"
    assert document["updated_datetime"] == "2026-11-20T11:00:05Z"
    assert document["lat"] == 38.75 and document["long"] == 113.25
    assert "13812345678" not in json.dumps(document) and "abc" not in json.dumps(document)
    assert document["address"] == "城关镇"
    in_progress = request_document(_tip(status="in_progress"), NOW, services, "", None)
    assert in_progress["status"] == "open"
    assert in_progress["address"] == NO_PLACE and "lat" not in render_json(in_progress)


def render_json(document: dict[str, object]) -> dict[str, object]:
    shown: dict[str, object] = json.loads(render("json", "request", document))
    return shown


def _place() -> Place:
    reference = load_reference(CONFIG)
    return reference.grids["T12V02G02"]


def test_the_published_point_is_rounded_to_about_100_m() -> None:
    place = _place()
    shown = public_place("城关镇迎宾社区3号楼", 38.654321, 113.535678, place, withheld=False)
    assert shown == PublicPlace("城关镇迎宾社区3号楼", 38.654, 113.536)
    # At most half of 0.001° off: 56 m north to south, 44 m east to west here.
    assert abs(shown.lat - 38.654321) <= 0.0005 and abs(shown.lon - 113.535678) <= 0.0005


def test_the_published_address_is_the_citizens_else_the_grid_the_point_is_in() -> None:
    township, village, grid = _place()
    named = f"{township.name}{village.name}{grid.name}"
    assert public_place("城关镇迎宾社区", None, None, _place(), False).address == "城关镇迎宾社区"
    assert public_place(None, 38.65, 113.53, _place(), False).address == named
    assert public_place("", None, None, None, False) == PublicPlace(NO_PLACE, None, None)


def test_a_withheld_place_is_the_grids_name_and_centre_never_the_citizens() -> None:
    township, village, grid = _place()
    shown = public_place("幸福小区5号楼302楼上", 38.654321, 113.535678, _place(), withheld=True)
    assert shown.address == f"{township.name}{village.name}{grid.name}"
    centre = grid_centre(grid)
    assert centre is not None
    assert (shown.lat, shown.lon) == (round(centre[0], 3), round(centre[1], 3))
    polygon = shapely.Polygon(grid.polygon[0])
    assert polygon.contains(shapely.Point(centre[1], centre[0]))
    # Whatever point the citizen gave in the grid, the same point is published.
    assert public_place(None, 38.66, 113.54, _place(), withheld=True) == shown
    assert public_place("某处", 38.66, 113.54, None, withheld=True) == PublicPlace(
        NO_PLACE, None, None
    )


def test_a_bent_grids_centre_is_inside_it() -> None:
    # An L: its centroid falls in the notch, outside the grid.
    ring = [(0.0, 0.0), (0.02, 0.0), (0.02, 0.002), (0.002, 0.002), (0.002, 0.02), (0.0, 0.02)]
    grid = Grid(id="T99V01G01", name="拐角网格", polygon=[[*ring, ring[0]]])
    lat, lon = grid_centre(grid) or (None, None)
    assert shapely.Polygon(ring).contains(shapely.Point(lon, lat))
    assert grid_centre(Grid(id="T99V01G02", name="未测绘网格")) is None


def test_matters_that_name_the_reporter_withhold_the_place(services: dict[str, Service]) -> None:
    text = "楼上每晚跳绳到十二点\n【位置补充】幸福小区5号楼302\n【发生时段】夜间"
    noise = _tip(
        category_hint="CG-007", text=text, address="幸福小区5号楼", lat=38.6543, lon=113.5357
    )
    document = request_document(noise, NOW, services, "", _place())
    assert "幸福小区" not in json.dumps(document, ensure_ascii=False)
    assert document["description"] == "楼上每晚跳绳到十二点\n【发生时段】夜间"
    # By the service's code too, and the service shared by another matter still withholds.
    by_service = request_document(
        _tip(category_hint="noise", address="幸福小区5号楼"),
        NOW,
        services,
        "",
        _place(),
    )
    assert by_service["address"] == document["address"]
    assert services["noise"].withheld == {"CG-007", "noise"}
    assert services["street-vending"].withheld == frozenset()
    stall = _tip(category_hint="CG-001", text=text, address="幸福小区5号楼")
    shown = request_document(stall, NOW, services, "", _place())
    assert shown["address"] == "幸福小区5号楼" and "【位置补充】" in str(shown["description"])


def test_each_matter_says_where_the_public_feed_puts_it(items: list[MatterItem]) -> None:
    withheld = {i.code for i in items if i.public_location == "withheld"}
    assert {
        "CG-007",
        "GA-002",
        "NY-003",
    } <= withheld  # noise, a neighbour's dog, a neighbour's house
    assert "CG-001" not in withheld


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
