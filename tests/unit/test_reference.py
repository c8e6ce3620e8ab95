"""The shipped county reference data (deploy/config) and how broken copies of it are refused."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Callable
from datetime import date
from functools import cache
from pathlib import Path

import pytest
import yaml

from reference.county import (
    CODE_PATTERN,
    SECONDED_DOMAINS,
    SERVICE_BODY_KINDS,
    Authority,
    MatterKind,
    ReferenceData,
    ReferenceDataError,
    UnitKind,
    load_reference,
)

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"


@cache
def _shipped() -> ReferenceData:
    return load_reference(CONFIG)


def _broken_copy(tmp_path: Path, name: str, edit: Callable[[dict], None]) -> Path:
    """Copy the shipped config to tmp_path and apply ``edit`` to the parsed ``name`` file."""
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    path = target / name
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target


def _refusal(config_dir: Path) -> list[str]:
    with pytest.raises(ReferenceDataError) as info:
        load_reference(config_dir)
    assert info.value.reasons, "a refusal must say why"
    return info.value.reasons


# ---------------------------------------------------------------- the shipped data


def test_shipped_config_loads() -> None:
    ref = _shipped()
    assert ref.county.timezone == "Asia/Shanghai"
    assert ref.departments and ref.units and ref.items


def test_every_code_has_the_shape_the_apis_accept_in_a_filter() -> None:
    ref = _shipped()
    codes = [
        *ref.townships,
        *ref.villages,
        *ref.grids,
        *ref.departments,
        *ref.units,
        *(staff.id for unit in ref.units.values() for staff in unit.staff),
        *ref.items,
    ]
    assert codes
    assert [code for code in codes if not re.fullmatch(CODE_PATTERN, code)] == []


def test_county_has_at_least_14_townships_each_with_villages_and_mapped_grids() -> None:
    ref = _shipped()
    assert len(ref.townships) >= 14
    kinds = Counter(t.kind for t in ref.townships.values())
    assert kinds["街道"] >= 1 and kinds["镇"] >= 1 and kinds["乡"] >= 1
    for township in ref.townships.values():
        assert 3 <= len(township.villages) <= 6, township.code
        for village in township.villages:
            assert 1 <= len(village.grids) <= 3, village.code
            for grid in village.grids:
                assert grid.polygon, f"grid {grid.id} has no polygon"
                ring = grid.polygon[0]
                assert ring[0] == ring[-1], f"grid {grid.id}: ring not closed"
                for lon, lat in ring:
                    assert 113.0 <= lon <= 113.7 and 38.5 <= lat <= 39.0, grid.id


def test_every_township_has_the_7_9_n_shape() -> None:
    ref = _shipped()
    for code in ref.townships:
        units = ref.units_of_township(code)
        teams = [u for u in units if u.kind is UnitKind.TOWNSHIP_TEAM]
        assert len(teams) == 1, code
        assert len(teams[0].staff) >= 7, code
        roles = Counter(s.role for s in teams[0].staff)
        assert roles["captain"] == 1 and roles["deputy"] == 2, code

        squads = [u for u in units if u.kind is UnitKind.SECONDED_SQUAD]
        assert len(squads) == 9, code
        assert {u.domain for u in squads} == SECONDED_DOMAINS, code

        coordinated = [u for u in units if u.kind is UnitKind.COORDINATED_UNIT]
        assert len(coordinated) >= 1, code


def test_seconded_officers_answer_for_one_or_two_villages_of_their_own_township() -> None:
    ref = _shipped()
    for unit in ref.units.values():
        if unit.kind is not UnitKind.SECONDED_SQUAD:
            continue
        assert unit.department is not None
        assert ref.departments[unit.department].domain == unit.domain, unit.id
        own = {v.code for v in ref.townships[unit.township or ""].villages}
        for officer in unit.staff:
            assert 1 <= len(officer.villages) <= 2, officer.id
            assert set(officer.villages) <= own, officer.id


def test_most_enforcement_staff_hold_a_valid_certificate() -> None:
    ref = _shipped()
    enforcers = [
        s
        for u in ref.units.values()
        if u.kind in (UnitKind.TOWNSHIP_TEAM, UnitKind.SECONDED_SQUAD)
        for s in u.staff
    ]
    valid = [s for s in enforcers if s.certificate and s.certificate.valid_on(date(2026, 11, 1))]
    assert len(valid) >= 0.9 * len(enforcers)


def test_catalogue_covers_every_team_domain_and_every_item_has_keywords() -> None:
    ref = _shipped()
    items = ref.catalogue.items
    assert len(items) >= 40
    per_domain = Counter(i.domain for i in items)
    for domain in SECONDED_DOMAINS:
        assert per_domain[domain] >= 4, domain
    for item in items:
        assert item.keywords, item.code
        if not item.is_service:
            assert item.lead_department in ref.departments, item.code


def test_deadline_policy_follows_the_default_urgency() -> None:
    for item in _shipped().catalogue.items:
        assert item.deadline_policy == f"P-{item.default_urgency.value.upper()}", item.code


def test_townships_claim_every_core_item_and_nothing_beyond_their_powers() -> None:
    ref = _shipped()
    core = {i.code for i in ref.catalogue.items if i.tier == "core"}
    not_theirs = {
        i.code
        for i in ref.catalogue.items
        if i.authority in (Authority.COUNTY_ONLY, Authority.OUT_OF_LIST) or i.is_service
    }
    assert set(ref.claims) == set(ref.townships)
    for township, claimed in ref.claims.items():
        assert core <= claimed, township
        assert not claimed & not_theirs, township


def test_version_names_the_catalogue_version() -> None:
    ref = _shipped()
    assert ref.catalogue.version in ref.version
    assert ref.version != ref.catalogue.version  # plus a digest of the files


def test_version_changes_when_a_file_changes(tmp_path: Path) -> None:
    def rename_county(doc: dict) -> None:
        doc["name"] = doc["name"] + "（测试）"

    changed = load_reference(_broken_copy(tmp_path, "county.yaml", rename_county))
    assert changed.version != _shipped().version


# ---------------------------------------------------------------- broken copies are refused


def _unit_in_unknown_township(doc: dict) -> None:
    doc["units"].append(
        {
            "id": "T99-GAJ",
            "name": "不存在乡派出所",
            "kind": "coordinated_unit",
            "township": "T99",
            "department": "GAJ",
            "domain": "police",
            "staff": [{"id": "S9999", "name": "测试员", "role": "liaison"}],
        }
    )


def _duplicate_first_grid(doc: dict) -> None:
    first = doc["townships"][0]["villages"][0]["grids"][0]
    doc["townships"][1]["villages"][0]["grids"][0]["id"] = first["id"]


def test_a_unit_in_an_unknown_township_is_refused(tmp_path: Path) -> None:
    reasons = _refusal(_broken_copy(tmp_path, "units.yaml", _unit_in_unknown_township))
    assert any("T99-GAJ" in r and "unknown township" in r and "T99" in r for r in reasons)


def test_a_core_item_missing_from_a_townships_claims_is_refused(tmp_path: Path) -> None:
    ref = _shipped()
    core = sorted(i.code for i in ref.catalogue.items if i.tier == "core")
    dropped = core[0]
    township = sorted(ref.townships)[4]

    def drop_core_item(doc: dict) -> None:
        for claim in doc["claims"]:
            if claim["township"] == township:
                claim["items"].remove(dropped)

    reasons = _refusal(_broken_copy(tmp_path, "claims.yaml", drop_core_item))
    assert any(township in r and dropped in r and "core" in r for r in reasons), reasons


def test_a_duplicate_grid_id_is_refused(tmp_path: Path) -> None:
    reasons = _refusal(_broken_copy(tmp_path, "county.yaml", _duplicate_first_grid))
    grid = _shipped().county.townships[0].villages[0].grids[0].id
    assert any("duplicate grid id" in r and grid in r for r in reasons), reasons


def _hide_noise_somewhere(doc: dict) -> None:
    noise = next(i for i in doc["items"] if i["code"] == "CG-007")
    noise["public_location"] = "hidden"


def test_an_unknown_public_location_is_refused(tmp_path: Path) -> None:
    reasons = _refusal(_broken_copy(tmp_path, "catalogue.yaml", _hide_noise_somewhere))
    assert any("public_location" in r and "withheld" in r for r in reasons), reasons


def _break_grid_polygons(doc: dict) -> None:
    grids = doc["townships"][0]["villages"][0]["grids"]
    # A bow-tie: its edges cross.
    grids[0]["polygon"] = [
        [[113.3, 38.7], [113.32, 38.733], [113.32, 38.7], [113.3, 38.733], [113.3, 38.7]]
    ]
    # Not closed.
    grids[1]["polygon"] = [[[113.3, 38.7], [113.32, 38.7], [113.32, 38.73], [113.3, 38.73]]]


def test_an_invalid_grid_polygon_is_refused(tmp_path: Path) -> None:
    reasons = _refusal(_broken_copy(tmp_path, "county.yaml", _break_grid_polygons))
    assert any(r.startswith("grid T01V01G01: invalid polygon") for r in reasons), reasons
    assert any(r.startswith("grid T01V01G02: invalid polygon") for r in reasons), reasons


def test_a_malformed_yaml_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    (target / "units.yaml").write_text("units:\n  - id: T01-TEAM\n   name: [unclosed\n")
    reasons = _refusal(target)
    assert any(r.startswith("units.yaml") and "not valid YAML" in r for r in reasons), reasons


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    target = _broken_copy(tmp_path, "county.yaml", _duplicate_first_grid)
    units = target / "units.yaml"
    doc = yaml.safe_load(units.read_text(encoding="utf-8"))
    _unit_in_unknown_township(doc)
    units.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    reasons = _refusal(target)
    assert any("duplicate grid id" in r for r in reasons), reasons
    assert any("unknown township" in r for r in reasons), reasons


def test_a_key_given_twice_in_one_entry_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    catalogue = target / "catalogue.yaml"
    text = catalogue.read_text(encoding="utf-8")
    # The second `code:` would silently win in plain YAML and rename the item.
    catalogue.write_text(text.replace("code: SC-001\n", "code: SC-001\n  code: SC-999\n", 1))
    reasons = _refusal(target)
    assert any("catalogue.yaml" in r and "appears twice" in r for r in reasons), reasons


def test_a_squad_seconded_by_an_n_unit_or_of_another_domain_is_refused(tmp_path: Path) -> None:
    def edit(doc: dict) -> None:
        squad = next(u for u in doc["units"] if u["id"] == "T01-SCJGJ")
        squad["department"] = "GAJ"  # the police is an N parent, not one of the 9 teams
        other = next(u for u in doc["units"] if u["id"] == "T02-SCJGJ")
        other["domain"] = "transport"

    reasons = _refusal(_broken_copy(tmp_path, "units.yaml", edit))
    assert any("T01-SCJGJ" in r and "coordinated department" in r for r in reasons), reasons
    assert any("T02-SCJGJ" in r and "differs from its department" in r for r in reasons), reasons


def test_an_unknown_township_is_one_reason_not_one_per_village(tmp_path: Path) -> None:
    def edit(doc: dict) -> None:
        next(u for u in doc["units"] if u["id"] == "T01-SCJGJ")["township"] = "T99"

    reasons = _refusal(_broken_copy(tmp_path, "units.yaml", edit))
    assert [r for r in reasons if "T01-SCJGJ" in r] == ["unit T01-SCJGJ: unknown township 'T99'"]


# ---------------------------------------------------------------- the public-service part


def test_the_catalogue_holds_common_service_requests_apart_from_enforcement() -> None:
    ref = _shipped()
    services = [i for i in ref.catalogue.items if i.kind is MatterKind.SERVICE]
    assert 10 <= len(services) <= 15
    names = "".join(i.name for i in services)
    for wanted in ("路灯", "井盖", "道路", "停电", "停水", "停气", "垃圾", "物业"):
        assert wanted in names, wanted
    service_codes = [i.open311_service_code for i in services]
    enforcement_codes = {i.open311_service_code for i in ref.catalogue.items if not i.is_service}
    assert len(service_codes) == len(set(service_codes))  # one Open311 service per request
    assert not set(service_codes) & enforcement_codes  # the two parts never share a service
    for item in services:
        # No enforcement: no legal basis, authority type, action or certificate-bearing body.
        assert (item.legal_basis, item.authority, item.action_type) == (None, None, None)
        assert item.open311_service_code and item.deadline_policy and item.keywords
        for township in ref.townships:
            unit = ref.responsible_unit(item, township)
            assert unit is not None and unit.kind in (
                *SERVICE_BODY_KINDS,
                UnitKind.COUNTY_DEPARTMENT,
            )
            assert unit.township in (None, township)
    assert ref.responsible_unit(ref.items["GF-001"], "T03").id == "T03-CJB"  # 城关镇城建办
    assert ref.responsible_unit(ref.items["GF-005"], "T03").id == "T03-GDS"  # 城关镇供电所
    assert ref.responsible_unit(ref.items["GF-007"], "T03").id == "ZLS-COUNTY"  # 自来水公司
    assert ref.responsible_unit(ref.items["GF-013"], "T03").id == "JTYSJ-COUNTY"  # county dept


def test_every_township_has_its_service_stations_and_power_office() -> None:
    ref = _shipped()
    for township in ref.townships:
        for body in ("CJB", "HWS", "GDS"):
            assert ref.units[f"{township}-{body}"].kind in SERVICE_BODY_KINDS


def _add_item(entry: dict) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        doc["items"].append(entry)

    return edit


SERVICE_ENTRY = {
    "code": "GF-099",
    "kind": "service",
    "name": "路灯不亮",
    "major_category": "市政设施",
    "minor_category": "照明",
    "responsible_body": "CJB",
    "deadline_policy": "P-GENERAL",
    "keywords": [{"word": "路灯"}],
}


def test_a_service_item_with_a_legal_basis_or_authority_is_refused(tmp_path: Path) -> None:
    entry = {**SERVICE_ENTRY, "legal_basis": "《某条例》", "authority": "devolved"}
    reasons = _refusal(_broken_copy(tmp_path, "catalogue.yaml", _add_item(entry)))
    assert any("service item" in r and "legal_basis" in r and "authority" in r for r in reasons)


def test_a_service_item_without_a_body_that_exists_everywhere_is_refused(tmp_path: Path) -> None:
    missing = {**SERVICE_ENTRY, "responsible_body": "XYZ"}
    reasons = _refusal(_broken_copy(tmp_path, "catalogue.yaml", _add_item(missing)))
    assert any("GF-099: no responsible body 'XYZ'" in r for r in reasons)
    no_body = {k: v for k, v in SERVICE_ENTRY.items() if k != "responsible_body"}
    reasons = _refusal(_broken_copy(tmp_path / "b", "catalogue.yaml", _add_item(no_body)))
    assert any("names its responsible_body" in r for r in reasons)


def test_a_township_enforcement_team_is_no_responsible_body(tmp_path: Path) -> None:
    # <township>-TEAM exists in every township, but it enforces: a service item never reaches it.
    entry = {**SERVICE_ENTRY, "responsible_body": "TEAM"}
    reasons = _refusal(_broken_copy(tmp_path, "catalogue.yaml", _add_item(entry)))
    assert any("no responsible body 'TEAM'" in r for r in reasons)


def test_an_enforcement_item_needs_its_legal_fields_and_takes_no_body(tmp_path: Path) -> None:
    def edit(doc: dict) -> None:
        first = doc["items"][0]
        del first["legal_basis"]
        first["responsible_body"] = "CJB"

    reasons = _refusal(_broken_copy(tmp_path, "catalogue.yaml", edit))
    assert any("enforcement item needs legal_basis" in r for r in reasons)


def test_a_township_cannot_claim_a_service_item(tmp_path: Path) -> None:
    def edit(doc: dict) -> None:
        doc["claims"][0]["items"].append("GF-001")

    reasons = _refusal(_broken_copy(tmp_path, "claims.yaml", edit))
    assert any("'GF-001' is not a township's to claim" in r for r in reasons)
