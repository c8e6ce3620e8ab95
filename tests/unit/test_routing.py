"""Routing: who must act on a case, from the item's authority, the township's claims and staff."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from reference.county import (
    SECONDED_DOMAINS,
    Authority,
    Catalogue,
    Certificate,
    County,
    Department,
    Grid,
    KeywordRule,
    MatterItem,
    ReferenceData,
    Staff,
    Township,
    TownshipClaims,
    Unit,
    UnitKind,
    Village,
    load_reference,
)
from services.dispatch.routing import UNLOCATED, Assignment, NeedsTriage, route, waiting_queue
from services.dispatch.triage import Classification, Location, Triaged, classify

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"
TODAY = date(2026, 11, 21)


@pytest.fixture(scope="module")
def sample() -> ReferenceData:
    return load_reference(CONFIG)


# ---------------------------------------------------------------- a small hand-built county


def _cert(valid_until: date, valid_from: date = date(2020, 1, 1)) -> Certificate:
    return Certificate(
        number=f"晋执字{valid_until:%Y%m%d}", valid_from=valid_from, valid_until=valid_until
    )


VALID = _cert(date(2029, 12, 31))
EXPIRED = _cert(TODAY - timedelta(days=1))


def _staff(sid: str, certificate: Certificate | None = VALID, villages=()) -> Staff:
    return Staff(
        id=sid,
        name=f"人员{sid}",
        role="officer",
        certificate=certificate,
        villages=list(villages),
    )


def _item(
    code: str,
    authority: str,
    domain: str = "market",
    lead: str = "SCJGJ",
    supporting: tuple[str, ...] = (),
    action: str = "penalty",
) -> MatterItem:
    return MatterItem(
        code=code,
        name=f"事项{code}",
        major_category="测试",
        minor_category="测试",
        domain=domain,
        action_type=action,
        legal_basis="测试依据",
        authority=authority,
        tier="optional",
        lead_department=lead,
        supporting_departments=list(supporting),
        deadline_policy="P-GENERAL",
        keywords=[KeywordRule(word=f"关键词{code}")],
    )


ITEMS = {
    "DEV": _item("DEV", "devolved"),
    "INS": _item("INS", "devolved", action="inspection"),  # not enforcement proper
    "ENT": _item("ENT", "entrusted"),
    "STA": _item("STA", "statutory", domain="urban", lead="CGJ"),
    "ASS": _item("ASS", "assist"),
    "CTY": _item("CTY", "county_only"),
    "OUT": _item("OUT", "out_of_list"),
    "UNC": _item("UNC", "devolved"),  # not claimed by T01
    "URB": _item("URB", "devolved", domain="urban", lead="CGJ"),
    "NOC": _item("NOC", "county_only", domain="health", lead="WSJKJ"),  # no county unit
    # 联合执法: supported by the other seconded squad, or a department with no unit in T01.
    "JNT": _item("JNT", "devolved", supporting=("CGJ",)),
    "JNC": _item("JNC", "county_only", supporting=("CGJ",)),
    "JNW": _item("JNW", "devolved", supporting=("WSJKJ", "SCJGJ")),
}


def _county() -> County:
    villages = [
        Village(
            code=f"T01V0{n}",
            name=f"第{n}村",
            kind="村",
            grids=[Grid(id=f"T01V0{n}G01", name=f"第{n}村第一网格")],
        )
        for n in (1, 2, 3)
    ]
    return County(
        code="149999",
        name="测试县",
        townships=[Township(code="T01", name="测试镇", kind="镇", villages=villages)],
    )


def _build(
    *,
    squad_staff: list[Staff] | None = None,
    team_staff: list[Staff] | None = None,
    county_staff: list[Staff] | None = None,
    team_domain: str | None = None,
) -> ReferenceData:
    team = Unit(
        id="T01-TEAM",
        name="测试镇综合行政执法队",
        kind=UnitKind.TOWNSHIP_TEAM,
        township="T01",
        domain=team_domain,
        staff=team_staff or [_staff(f"TM{n}") for n in range(1, 8)],
    )
    squad = Unit(
        id="T01-SCJGJ",
        name="测试镇市场监管派驻组",
        kind=UnitKind.SECONDED_SQUAD,
        township="T01",
        department="SCJGJ",
        domain="market",
        staff=squad_staff or [_staff("SQ1", villages=["T01V01"])],
    )
    urban = Unit(
        id="T01-CGJ",
        name="测试镇城市管理派驻组",
        kind=UnitKind.SECONDED_SQUAD,
        township="T01",
        department="CGJ",
        domain="urban",
        staff=[_staff("CG1")],
    )
    county_units = [
        Unit(
            id=f"{dept}-COUNTY",
            name=f"{dept}县级队伍",
            kind=UnitKind.COUNTY_DEPARTMENT,
            department=dept,
            domain=domain,
            staff=county_staff or [_staff(f"{dept}1")],
        )
        for dept, domain in (("SCJGJ", "market"), ("CGJ", "urban"))
    ]
    return ReferenceData(
        county=_county(),
        departments=[
            Department(code="SCJGJ", name="县市场监督管理局", domain="market", kind="team"),
            Department(code="CGJ", name="县城市管理局", domain="urban", kind="team"),
            Department(code="WSJKJ", name="县卫生健康局", domain="health", kind="team"),
        ],
        units=[team, squad, urban, *county_units],
        catalogue=Catalogue(version="test", items=list(ITEMS.values())),
        claims=[
            TownshipClaims(township="T01", items=["DEV", "INS", "ENT", "STA", "URB", "JNT", "JNW"])
        ],
        version="test",
    )


def _assigned(outcome: Assignment | NeedsTriage) -> Assignment:
    assert isinstance(outcome, Assignment), outcome
    return outcome


def _route(ref: ReferenceData, code: str, village: str | None = "T01V01", load=None, today=TODAY):
    return route(ITEMS[code], "T01", village, ref, load or {}, today)


# ------------------------------------------------------- who decides: routing or a dispatcher

PLACED = Location("T01", "T01V01", None, ("地址中含 甲镇",))
NOWHERE = Location(None, None, None, ("未提供网格、坐标或地址，无法确定乡镇",))


def _triaged(confidence: float, location: Location = PLACED, item: str | None = "STA") -> Triaged:
    return Triaged(Classification(ITEMS[item] if item else None, confidence, ()), location)


def test_a_located_confident_tip_is_routed() -> None:
    assert waiting_queue(_triaged(0.5), 0.5) is None


def test_a_tip_located_nowhere_waits_for_the_county_whatever_its_matter() -> None:
    assert waiting_queue(_triaged(1.0, NOWHERE), 0.5) == NeedsTriage(
        "county", UNLOCATED, "无法确定所属乡镇，转县级分拨"
    )


@pytest.mark.parametrize(("confidence", "item"), [(0.49, "STA"), (1.0, None)])
def test_an_unsure_or_unknown_matter_waits_in_its_township(
    confidence: float, item: str | None
) -> None:
    waiting = waiting_queue(_triaged(confidence, item=item), 0.5)
    assert waiting is not None
    assert (waiting.queue, waiting.rule) == ("township:T01", "low_confidence")
    assert "低于 0.50" in waiting.reason


# ---------------------------------------------------------------- authority → unit


def test_out_of_list_needs_admission_and_is_never_assigned() -> None:
    outcome = _route(_build(), "OUT")
    assert isinstance(outcome, NeedsTriage)
    assert outcome.rule == "out_of_list"
    assert outcome.queue == "admission"
    assert "准入" in outcome.reason


def test_county_only_goes_to_the_lead_departments_county_unit() -> None:
    result = _assigned(_route(_build(), "CTY"))
    assert result.unit.id == "SCJGJ-COUNTY"
    assert result.unit.kind is UnitKind.COUNTY_DEPARTMENT
    assert result.rule == "county_only"
    assert result.staff is not None and result.staff.id == "SCJGJ1"


def test_county_only_even_if_a_township_somehow_claimed_it() -> None:
    ref = _build()
    ref.claims["T01"] = ref.claims["T01"] | {"CTY", "ASS"}
    assert _assigned(_route(ref, "CTY")).rule == "county_only"
    assert _assigned(_route(ref, "ASS")).rule == "assist"


def test_assist_goes_to_the_county_department() -> None:
    result = _assigned(_route(_build(), "ASS"))
    assert result.unit.id == "SCJGJ-COUNTY"
    assert result.rule == "assist"


def test_unclaimed_item_goes_to_the_county_department() -> None:
    result = _assigned(_route(_build(), "UNC"))
    assert result.unit.id == "SCJGJ-COUNTY"
    assert result.rule == "unclaimed"


def test_missing_county_unit_needs_county_triage() -> None:
    outcome = _route(_build(), "NOC")
    assert isinstance(outcome, NeedsTriage)
    assert outcome.queue == "county"


@pytest.mark.parametrize(("code", "rule"), [("DEV", "devolved"), ("ENT", "entrusted")])
def test_claimed_devolved_or_entrusted_goes_to_the_seconded_squad(code: str, rule: str) -> None:
    result = _assigned(_route(_build(), code))
    assert result.unit.id == "T01-SCJGJ"
    assert result.rule == rule


def test_statutory_goes_to_the_township_team() -> None:
    result = _assigned(_route(_build(), "STA"))
    assert result.unit.id == "T01-TEAM"
    assert result.rule == "statutory"


def test_township_team_tagged_with_a_domain_does_not_take_the_squads_items() -> None:
    # Validation allows a township team to carry a domain (many grew out of 城管中队); a devolved
    # urban item must still go to the seconded urban squad, not to the team listed first.
    result = _assigned(_route(_build(team_domain="urban"), "URB"))
    assert result.unit.id == "T01-CGJ"
    assert result.unit.kind is UnitKind.SECONDED_SQUAD


# ---------------------------------------------------------------- certified staff


def test_expired_or_missing_certificate_is_never_picked() -> None:
    squad = [
        _staff("A1", certificate=EXPIRED, villages=["T01V01"]),  # would win on village and id
        _staff("A2", certificate=None, villages=["T01V01"]),
        _staff("B9", villages=["T01V02"]),
    ]
    result = _assigned(_route(_build(squad_staff=squad), "DEV", load={"B9": 50}))
    assert result.staff is not None and result.staff.id == "B9"


def test_certificate_is_valid_through_its_last_day_but_not_before_its_first() -> None:
    squad = [
        _staff("A1", certificate=_cert(TODAY)),
        _staff("A2", certificate=_cert(date(2030, 1, 1), valid_from=TODAY + timedelta(days=1))),
    ]
    ref = _build(squad_staff=squad)
    assert _assigned(_route(ref, "DEV", load={"A1": 9})).staff.id == "A1"
    tomorrow = _assigned(_route(ref, "DEV", today=TODAY + timedelta(days=1)))
    assert tomorrow.staff is not None and tomorrow.staff.id == "A2"


def test_expiry_is_judged_against_today_not_the_wall_clock() -> None:
    squad = [_staff("A1", certificate=_cert(date(2020, 6, 30)))]
    ref = _build(squad_staff=squad)
    assert _assigned(_route(ref, "DEV", today=date(2020, 6, 1))).staff.id == "A1"
    assert _assigned(_route(ref, "INS", today=date(2020, 7, 1))).staff is None
    expired = _route(ref, "DEV", today=date(2020, 7, 1))
    assert isinstance(expired, NeedsTriage) and expired.rule == "no_certificate"


def test_village_officer_preferred_over_a_less_loaded_colleague() -> None:
    squad = [_staff("A1", villages=["T01V01"]), _staff("B1", villages=["T01V02", "T01V03"])]
    ref = _build(squad_staff=squad)
    result = _assigned(_route(ref, "DEV", village="T01V03", load={"A1": 0, "B1": 7}))
    assert result.staff is not None and result.staff.id == "B1"


def test_least_open_load_when_no_one_covers_the_village() -> None:
    squad = [_staff("A1", villages=["T01V01"]), _staff("B1"), _staff("C1")]
    ref = _build(squad_staff=squad)
    result = _assigned(_route(ref, "DEV", village="T01V02", load={"A1": 3, "B1": 2, "C1": 1}))
    assert result.staff is not None and result.staff.id == "C1"
    # No village known at all: load decides.
    result = _assigned(_route(ref, "DEV", village=None, load={"A1": 0, "B1": 2, "C1": 1}))
    assert result.staff is not None and result.staff.id == "A1"


def test_among_village_officers_least_load_then_id() -> None:
    squad = [
        _staff("C1", villages=["T01V01"]),
        _staff("B1", villages=["T01V01"]),
        _staff("A1", villages=["T01V01"]),
        _staff("A0"),
    ]
    ref = _build(squad_staff=squad)
    result = _assigned(_route(ref, "DEV", load={"C1": 1, "B1": 2, "A1": 2, "A0": 0}))
    assert result.staff.id == "C1"
    result = _assigned(_route(ref, "DEV", load={"C1": 2, "B1": 2, "A1": 2, "A0": 0}))
    assert result.staff.id == "A1"


def test_staff_without_recorded_load_counts_as_idle() -> None:
    squad = [_staff("A1"), _staff("B1")]
    result = _assigned(_route(_build(squad_staff=squad), "DEV", load={"A1": 1}))
    assert result.staff.id == "B1"


def test_unit_without_certified_staff_is_assigned_an_inspection_without_a_person() -> None:
    squad = [_staff("A1", certificate=EXPIRED), _staff("A2", certificate=None)]
    result = _assigned(_route(_build(squad_staff=squad), "INS"))
    assert result.unit.id == "T01-SCJGJ"
    assert result.staff is None
    assert any("执法证" in line for line in result.explanation)


def test_unit_without_certified_staff_is_never_routed_a_penalty_which_waits_in_triage() -> None:
    squad = [_staff("A1", certificate=EXPIRED), _staff("A2", certificate=None)]
    outcome = _route(_build(squad_staff=squad), "DEV")
    assert isinstance(outcome, NeedsTriage)
    assert (outcome.queue, outcome.rule) == ("township:T01", "no_certificate")
    # The explanation says which unit routing would have picked and why it may not.
    assert outcome.reason == (
        "赋权事项，由测试镇市场监管派驻组办理；测试镇市场监管派驻组当前无持有效执法证人员，"
        "不得指派行政处罚事项（事项DEV），待调度员人工分拨"
    )


def test_assignment_names_the_chosen_person_in_the_explanation() -> None:
    result = _assigned(_route(_build(), "DEV"))
    assert result.staff is not None
    assert any(result.staff.id in line for line in result.explanation)


def test_routing_is_deterministic_and_ignores_staff_listing_order() -> None:
    staff = [_staff("C1"), _staff("A1"), _staff("B1"), _staff("D1", villages=["T01V02"])]
    load = {"C1": 1, "A1": 1, "B1": 1, "D1": 4}
    forward = _build(squad_staff=staff)
    backward = _build(squad_staff=list(reversed(staff)))
    first = _route(forward, "DEV", village="T01V03", load=load)
    assert all(_route(forward, "DEV", village="T01V03", load=load) == first for _ in range(5))
    assert _assigned(_route(backward, "DEV", village="T01V03", load=load)).staff.id == "A1"
    assert _assigned(first).staff.id == "A1"


# ---------------------------------------------------------------- the shipped sample county


def test_sample_out_of_list_item(sample: ReferenceData) -> None:
    outcome = route(sample.items["LD-005"], "T01", "T01V01", sample, {}, TODAY)
    assert isinstance(outcome, NeedsTriage)
    assert outcome.rule == "out_of_list"


def test_sample_county_only_and_assist(sample: ReferenceData) -> None:
    lift = _assigned(route(sample.items["SC-006"], "T01", None, sample, {}, TODAY))
    assert (lift.unit.id, lift.rule) == ("SCJGJ-COUNTY", "county_only")
    gas = _assigned(route(sample.items["YJ-002"], "T02", None, sample, {}, TODAY))
    assert (gas.unit.id, gas.rule) == ("YJGLJ-COUNTY", "assist")


def test_sample_unclaimed_optional_item(sample: ReferenceData) -> None:
    assert "SC-005" not in sample.claims["T04"]
    result = _assigned(route(sample.items["SC-005"], "T04", None, sample, {}, TODAY))
    assert (result.unit.id, result.rule) == ("SCJGJ-COUNTY", "unclaimed")


def test_sample_statutory_goes_to_township_team(sample: ReferenceData) -> None:
    result = _assigned(route(sample.items["ZR-002"], "T03", "T03V02", sample, {}, TODAY))
    assert (result.unit.id, result.rule) == ("T03-TEAM", "statutory")


def test_sample_village_officer_is_preferred(sample: ReferenceData) -> None:
    # T01's market squad: S0010 answers for T01V02/T01V03, S0011 for T01V04/T01V05.
    load = {"S0010": 0, "S0011": 5}
    result = _assigned(route(sample.items["SC-001"], "T01", "T01V04", sample, load, TODAY))
    assert result.staff is not None and result.staff.id == "S0011"
    result = _assigned(route(sample.items["SC-001"], "T01", "T01V02", sample, load, TODAY))
    assert result.staff is not None and result.staff.id == "S0010"


def test_sample_squad_whose_only_officer_has_expired(sample: ReferenceData) -> None:
    # T01's agriculture squad has one officer, S0023, whose certificate ran out on 2025-03-07.
    item = sample.items["NY-006"]
    before = _assigned(route(item, "T01", "T01V02", sample, {}, date(2025, 3, 7)))
    assert before.staff is not None and before.staff.id == "S0023"
    # 电鱼 is a penalty: with nobody certified the squad is not given it; a dispatcher decides.
    after = route(item, "T01", "T01V02", sample, {}, TODAY)
    assert isinstance(after, NeedsTriage)
    assert (after.queue, after.rule) == ("township:T01", "no_certificate")
    assert "T01" not in after.reason and "农业农村派驻组当前无持有效执法证人员" in after.reason


def test_sample_every_route_follows_the_rules(sample: ReferenceData) -> None:
    for township in sample.townships:
        claimed = sample.claims[township]
        for item in sample.catalogue.items:
            outcome = route(item, township, None, sample, {}, TODAY)
            if item.is_service:  # its responsible body, by anyone there: no certificate needed
                result = _assigned(outcome)
                assert result.unit == sample.responsible_unit(item, township)
                assert result.rule == "service" and result.staff in result.unit.staff
                continue
            if item.authority is Authority.OUT_OF_LIST:
                assert isinstance(outcome, NeedsTriage)
                continue
            if isinstance(outcome, NeedsTriage):
                # Only the certificate rule keeps a routable matter from its unit.
                assert (outcome.rule, item.action_type) == ("no_certificate", "penalty")
                continue
            result = _assigned(outcome)
            if result.staff is not None:
                assert result.staff in result.unit.staff
                assert result.staff.certificate is not None
                assert result.staff.certificate.valid_on(TODAY)
            if item.authority in (Authority.COUNTY_ONLY, Authority.ASSIST) or (
                item.code not in claimed
            ):
                assert result.unit.id == f"{item.lead_department}-COUNTY"
            elif item.authority is Authority.STATUTORY:
                assert result.unit.kind is UnitKind.TOWNSHIP_TEAM
                assert result.unit.township == township
            elif item.domain in SECONDED_DOMAINS:
                assert result.unit.kind is UnitKind.SECONDED_SQUAD, (township, item.code)
                assert result.unit.township == township
                assert result.unit.domain is item.domain


# ---------------------------------------------------------------- every authority type


@pytest.mark.parametrize(
    ("code", "unit", "rule"),
    [
        ("STA", "T01-TEAM", "statutory"),
        ("DEV", "T01-SCJGJ", "devolved"),
        ("ENT", "T01-SCJGJ", "entrusted"),
        ("ASS", "SCJGJ-COUNTY", "assist"),
        ("CTY", "SCJGJ-COUNTY", "county_only"),
        ("UNC", "SCJGJ-COUNTY", "unclaimed"),
        ("OUT", None, "out_of_list"),
        ("NOC", None, "no_county_unit"),
    ],
)
def test_every_authority_type_has_its_unit_and_rule(code: str, unit: str | None, rule: str) -> None:
    outcome = _route(_build(), code)
    assert outcome.rule == rule
    if unit is None:
        assert isinstance(outcome, NeedsTriage)
    else:
        assert _assigned(outcome).unit.id == unit
        assert _assigned(outcome).supporting == ()


# ---------------------------------------------------------------- joint operations (联合执法)


@pytest.mark.parametrize(
    ("code", "lead", "supporting"),
    [
        ("JNT", "T01-SCJGJ", ("T01-CGJ",)),  # the township's own squad of the supporting dept
        ("JNC", "SCJGJ-COUNTY", ("CGJ-COUNTY",)),  # a county lead works with county teams
        ("JNW", "T01-SCJGJ", ()),  # no WSJKJ unit anywhere; the lead's own dept is not listed
    ],
)
def test_joint_operation_lists_the_supporting_units(
    code: str, lead: str, supporting: tuple[str, ...]
) -> None:
    result = _assigned(_route(_build(), code))
    assert result.unit.id == lead
    assert tuple(u.id for u in result.supporting) == supporting
    assert any("联合执法" in line for line in result.explanation) == bool(supporting)


def test_joint_operation_staff_is_picked_in_the_lead_unit() -> None:
    result = _assigned(_route(_build(), "JNT", load={"SQ1": 3}))
    assert result.staff is not None and result.staff.id == "SQ1"


def test_sample_joint_operation_uses_the_townships_squads_and_police_station(
    sample: ReferenceData,
) -> None:
    # CG-001 占道经营: urban management leads, market regulation and the police support.
    result = _assigned(route(sample.items["CG-001"], "T03", "T03V02", sample, {}, TODAY))
    assert result.unit.id == "T03-CGJ"
    assert [u.id for u in result.supporting] == ["T03-SCJGJ", "T03-GAJ"]
    # YJ-005 危化品 is county-only: the county team leads, the county police and ecology support.
    chem = _assigned(route(sample.items["YJ-005"], "T03", None, sample, {}, TODAY))
    assert chem.unit.id == "YJGLJ-COUNTY"
    assert [u.id for u in chem.supporting] == ["GAJ-COUNTY", "SHJJ-COUNTY"]


def test_sample_item_without_supporting_departments_is_not_joint(sample: ReferenceData) -> None:
    result = _assigned(route(sample.items["SC-001"], "T01", "T01V02", sample, {}, TODAY))
    assert result.supporting == ()


def test_sample_out_of_list_goes_to_the_admission_queue(sample: ReferenceData) -> None:
    for code in ("LD-005", "GA-003"):
        outcome = route(sample.items[code], "T05", None, sample, {}, TODAY)
        assert isinstance(outcome, NeedsTriage)
        assert (outcome.queue, outcome.rule) == ("admission", "out_of_list")


# ---------------------------------------------------------------- public-service requests


@pytest.mark.parametrize(
    ("text", "matter", "unit"),
    [
        ("路灯坏了", "GF-001", "T03-CJB"),  # the issue's own words: no longer 未命中关键词
        ("小区门口井盖没了", "GF-002", "T03-CJB"),
        ("我们这片停电了", "GF-005", "T03-GDS"),
        ("楼下水管破了 家里没水了", "GF-007", "ZLS-COUNTY"),
    ],
)
def test_a_service_request_reaches_its_responsible_body(
    sample: ReferenceData, text: str, matter: str, unit: str
) -> None:
    classification = classify(text, None, sample)
    assert classification.item is not None, classification.explanation
    assert classification.item.code == matter, classification.explanation
    result = _assigned(route(classification.item, "T03", "T03V02", sample, {}, TODAY))
    assert result.unit.id == unit and result.rule == "service"
    assert result.explanation[0].startswith("公共服务诉求（非执法事项），由责任单位")
    assert result.staff is not None and result.staff.certificate is None  # none needed
