"""Inspection plans (issue #15, item 6): which tasks fall due on which day — 综合查一次 on Tuesday
unless a township says otherwise, patrol routes on their weekdays — and how inspections.yaml is
refused when it names what does not exist."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

from reference.county import load_counties, load_reference
from reference.inspections import due_dates, tasks_due
from tests.unit.test_reference import CONFIG, _broken_copy, _refusal, _shipped

TUESDAY = date(2026, 12, 8)
WEDNESDAY = date(2026, 12, 9)
SUNDAY = date(2026, 12, 13)


def _plan(plan_id: str):  # type: ignore[no-untyped-def]
    return next(p for p in _shipped().inspection_plans if p.id == plan_id)


def test_a_township_not_listed_inspects_on_tuesday_with_its_team_and_seconded_squads() -> None:
    joint = _plan("JOINT-T05")
    assert due_dates(joint, date(2026, 12, 1), date(2027, 1, 1)) == [
        date(2026, 12, d) for d in (1, 8, 15, 22, 29)
    ]
    reference = _shipped()
    kinds = {reference.units[u].kind.value for u in joint.units}
    assert kinds == {"township_team", "seconded_squad"} and len(joint.units) == 10


def test_a_township_may_move_its_day_and_name_its_units() -> None:
    # 豆村镇 (T07) holds its market on Tuesday and inspects on Wednesday.
    assert due_dates(_plan("JOINT-T07"), date(2026, 12, 7), date(2026, 12, 14)) == [WEDNESDAY]
    assert _plan("JOINT-T03").units == (
        "T03-TEAM",
        "T03-SCJGJ",
        "T03-CGJ",
        "T03-YJGLJ",
        "T03-WSJKJ",
    )


def test_on_a_tuesday_every_unit_taking_part_and_every_patrol_of_the_day_gets_one_task() -> None:
    due = tasks_due(_shipped().inspection_plans, TUESDAY)
    t03 = sorted((t.plan_id, t.unit) for t in due if t.township == "T03")
    assert t03 == [
        ("JOINT-T03", "T03-CGJ"),
        ("JOINT-T03", "T03-SCJGJ"),
        ("JOINT-T03", "T03-TEAM"),
        ("JOINT-T03", "T03-WSJKJ"),
        ("JOINT-T03", "T03-YJGLJ"),
        ("T03-P02", "T03-TEAM"),  # 五里铺村's patrol walks every working day
    ]
    assert not any(t.township == "T07" for t in due)  # Wednesday's
    assert all(t.due_on == TUESDAY for t in due)
    patrol = next(t for t in due if t.plan_id == "T03-P02")
    assert patrol.grids == ("T03V02G01", "T03V02G02") and patrol.kind == "patrol"


def test_nothing_falls_due_on_a_sunday_of_the_sample_plans() -> None:
    assert tasks_due(_shipped().inspection_plans, SUNDAY) == []


def test_a_holiday_is_not_skipped_the_calendar_being_escalations() -> None:
    """The business calendar lives in escalation, which dispatch may not import: a plan falls
    on its weekday, holiday or not (the docs say so; the township marks it missed)."""
    new_years_eve_week = tasks_due(_shipped().inspection_plans, date(2026, 12, 29))
    assert any(t.plan_id == "JOINT-T03" for t in new_years_eve_week)
    assert any(
        t.plan_id == "JOINT-T01" for t in tasks_due(_shipped().inspection_plans, date(2026, 10, 6))
    )


def _bad_plans(doc: dict) -> None:
    doc["joint_inspection_days"].append({"township": "T99"})
    doc["joint_inspection_days"].append({"township": "T01", "units": ["T03-TEAM"]})
    doc["patrol_routes"].append(
        {
            "id": "T03-P09",
            "name": "x",
            "unit": "T03-CGJ",
            "grids": ["T01V01G01", "NOPE"],
            "weekdays": ["monday"],
        }
    )
    doc["patrol_routes"].append(
        {
            "id": "T03-P01",
            "name": "y",
            "unit": "T03-CGJ",
            "grids": ["T03V01G01"],
            "weekdays": ["someday"],
        }
    )


def test_plans_naming_what_does_not_exist_are_refused_with_every_reason(tmp_path: Path) -> None:
    reasons = _refusal(_broken_copy(tmp_path, "inspections.yaml", _bad_plans))
    # A weekday that is none is refused while parsing, before the cross-checks.
    assert any("someday" in r or "weekdays" in r for r in reasons), reasons


def test_plans_cross_checked_against_the_county(tmp_path: Path) -> None:
    def edit(doc: dict) -> None:
        _bad_plans(doc)
        doc["patrol_routes"].pop()

    reasons = _refusal(_broken_copy(tmp_path, "inspections.yaml", edit))
    assert any("unknown township 'T99'" in r for r in reasons), reasons
    assert any("T01: unit T03-TEAM is not the township's" in r for r in reasons), reasons
    assert any("grid T01V01G01 is not in T03-CGJ's township" in r for r in reasons), reasons
    assert any("unknown grid 'NOPE'" in r for r in reasons), reasons


def test_the_plans_file_is_part_of_the_reference_version(tmp_path: Path) -> None:
    def move_day(doc: dict) -> None:
        doc["joint_inspection_days"][0]["weekday"] = "thursday"

    moved = load_reference(_broken_copy(tmp_path, "inspections.yaml", move_day))
    assert moved.version != _shipped().version
    thursday = date(2026, 12, 10)
    assert due_dates(
        next(p for p in moved.inspection_plans if p.id == "JOINT-T03"), TUESDAY, SUNDAY
    ) == [thursday]


def test_another_county_plans_its_own_townships_and_without_a_file_the_default_rule(
    tmp_path: Path,
) -> None:
    """Tenancy (docs/scale.md): 桃林县 (140998) plans from its own inspections.yaml; a county
    directory without one gets each township's 综合查一次 on Tuesday, never the default
    county's plans (which name its townships and units)."""
    shipped = load_counties(CONFIG)["140998"]
    assert {t.plan_id for t in tasks_due(shipped.inspection_plans, TUESDAY)} == {
        "JOINT-L01",
        "JOINT-L02",
    }
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    (target / "140998" / "inspections.yaml").unlink()
    bare = load_counties(target)["140998"]
    assert bare.inspection_plans == shipped.inspection_plans
    assert not any(t.township.startswith("T") for t in tasks_due(bare.inspection_plans, TUESDAY))
