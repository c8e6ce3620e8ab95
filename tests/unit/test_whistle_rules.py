"""两吹两不吹: the sample county's whistle eligibility rules; a broken rules file is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from contracts.cases import CaseStatus
from reference.county import (
    ReferenceData,
    ReferenceDataError,
    Urgency,
    load_reference,
)
from services.dispatch.whistles import WhistleFacts, automatic_whistle, judge

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"


@pytest.fixture(scope="module")
def sample() -> ReferenceData:
    return load_reference(CONFIG)


def _facts(
    sample: ReferenceData,
    code: str | None,
    *,
    township: str = "T03",
    status: CaseStatus = CaseStatus.IN_PROGRESS,
    urgency: Urgency | None = None,
    reopens: int = 0,
    summoned: frozenset[str] = frozenset(),
) -> WhistleFacts:
    item = sample.items[code] if code else None
    return WhistleFacts(
        status=status,
        urgency=urgency or (item.default_urgency if item else Urgency.GENERAL),
        matter=item,
        claimed=item is not None and item.code in sample.claims[township],
        reopens=reopens,
        summoned=summoned,
    )


def _judge(sample: ReferenceData, facts: WhistleFacts, departments: list[str], reason: str):
    return judge(facts, departments, reason, sample.whistle_rules, sample.departments)


def test_the_shipped_rules_are_marked_as_the_sample_countys_placeholders(
    sample: ReferenceData,
) -> None:
    rules = sample.whistle_rules
    assert rules is not None and rules.placeholder
    assert {r.code for r in rules.reasons} >= {
        "beyond_powers",
        "needs_joint_action",
        "major_emergency",
        "repeated_complaint",
    }
    assert all(r.label for r in rules.reasons)
    assert "PLACEHOLDER" in (CONFIG / "whistle_rules.yaml").read_text(encoding="utf-8")


# (matter, facts overrides, departments, reason code, rules that refuse — empty: allowed)
CASES = [
    # 吹: beyond the township's powers
    ("SC-006", {}, ["SCJGJ"], "beyond_powers", []),  # county-only
    ("YJ-002", {}, ["YJGLJ"], "beyond_powers", []),  # assist
    ("SC-005", {"township": "T04"}, ["SCJGJ"], "beyond_powers", []),  # T04 did not claim it
    (
        "SC-005",
        {"township": "T03"},
        ["SCJGJ"],
        "beyond_powers",
        ["beyond_powers", "own_claimed_matter"],
    ),
    # no matter yet: neither the authority nor the responsible departments can be known
    (
        None,
        {"status": CaseStatus.TRIAGE},
        ["SCJGJ"],
        "beyond_powers",
        ["beyond_powers", "unrelated_department"],
    ),
    # 吹: joint action, to the lead or a supporting department
    ("CG-001", {}, ["GAJ", "SCJGJ"], "needs_joint_action", []),
    (
        "CG-001",
        {"status": CaseStatus.TRIAGE},
        ["GAJ"],
        "needs_joint_action",
        ["needs_joint_action"],
    ),
    # 不吹: a claimed matter the township handles alone
    ("SC-001", {}, ["SCJGJ"], "needs_joint_action", ["needs_joint_action", "own_claimed_matter"]),
    ("SC-001", {}, ["SCJGJ"], "beyond_powers", ["beyond_powers", "own_claimed_matter"]),
    # ... unless it is a major emergency or a repeated complaint
    ("SC-001", {"urgency": Urgency.EMERGENCY}, ["SCJGJ"], "major_emergency", []),
    ("SC-001", {"reopens": 1}, ["SCJGJ"], "repeated_complaint", []),
    ("SC-001", {"reopens": 0}, ["SCJGJ"], "repeated_complaint", ["repeated_complaint"]),
    ("SC-001", {}, ["SCJGJ"], "major_emergency", ["major_emergency"]),  # not an emergency
    # 不吹: a department with nothing to do with the matter
    ("CG-001", {}, ["WSJKJ"], "needs_joint_action", ["unrelated_department"]),
    ("YJ-006", {}, ["WSJKJ"], "major_emergency", []),  # an emergency may call anyone
    (None, {"urgency": Urgency.EMERGENCY}, ["YJGLJ"], "major_emergency", []),
    # 不吹: the same department twice
    (
        "SC-006",
        {"summoned": frozenset({"SCJGJ"})},
        ["SCJGJ"],
        "beyond_powers",
        ["no_repeat_whistle"],
    ),
    # unknown codes
    ("SC-006", {}, ["NOPE"], "beyond_powers", ["unknown_department", "unrelated_department"]),
    ("SC-006", {}, ["SCJGJ"], "because", ["unknown_reason"]),
]


@pytest.mark.parametrize(("code", "overrides", "departments", "reason", "refused_by"), CASES)
def test_sample_rules(
    sample: ReferenceData,
    code: str | None,
    overrides: dict,
    departments: list[str],
    reason: str,
    refused_by: list[str],
) -> None:
    verdict = _judge(sample, _facts(sample, code, **overrides), departments, reason)
    assert sorted({r.rule for r in verdict.refusals}) == sorted(refused_by)
    assert verdict.allowed == (not refused_by)
    assert all(r.reason for r in verdict.refusals)


def test_an_overridden_rule_is_recorded_as_waived(sample: ReferenceData) -> None:
    facts = _facts(sample, "SC-001", urgency=Urgency.EMERGENCY)
    verdict = _judge(sample, facts, ["SCJGJ"], "major_emergency")
    assert verdict.allowed and verdict.rule == "major_emergency"
    assert verdict.waived == ("own_claimed_matter",)


def test_a_refusal_names_the_condition_in_chinese(sample: ReferenceData) -> None:
    verdict = _judge(sample, _facts(sample, "SC-001"), ["SCJGJ"], "beyond_powers")
    reasons = {r.rule: r.reason for r in verdict.refusals}
    assert reasons["beyond_powers"] == (
        "超出乡镇职权：事项职权类型为赋权，须为县级专属、协助、清单之外，或乡镇未认领的事项"
    )
    assert "SC-001" in reasons["own_claimed_matter"]


def test_urgency_and_state_are_named_in_chinese_not_by_code(sample: ReferenceData) -> None:
    facts = _facts(sample, "SC-001", status=CaseStatus.RESOLVED)
    verdict = _judge(sample, facts, ["SCJGJ"], "major_emergency")
    reasons = [r.reason for r in verdict.refusals if r.rule == "major_emergency"]
    assert reasons == [
        "重大突发：案件状态为已办结，须为待分拨、已派单、已接单、处理中",
        "重大突发：案件紧急程度为一般，须为突发",
    ]
    assert not any(
        code in r.reason for r in verdict.refusals for code in ("general", "resolved", "emergency")
    )


def test_without_rules_nothing_is_eligible(sample: ReferenceData) -> None:
    verdict = judge(_facts(sample, "SC-006"), ["SCJGJ"], "beyond_powers", None, sample.departments)
    assert not verdict.allowed and verdict.refusals[0].rule == "no_rules"


@pytest.mark.parametrize(("rule", "department"), [("county_only", "SCJGJ"), ("unclaimed", "SCJGJ")])
def test_routing_to_the_county_whistles_automatically(
    sample: ReferenceData, rule: str, department: str
) -> None:
    automatic = automatic_whistle(rule, sample.units["SCJGJ-COUNTY"])
    assert automatic is not None
    assert automatic.departments == (department,) and automatic.rule == rule


@pytest.mark.parametrize("rule", ["assist", "statutory", "devolved", "manual"])
def test_other_routes_do_not_whistle(sample: ReferenceData, rule: str) -> None:
    assert automatic_whistle(rule, sample.units["SCJGJ-COUNTY"]) is None


# ---------------------------------------------------------------- a broken rules file


def _refused(tmp_path: Path, edit) -> list[str]:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    path = target / "whistle_rules.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(ReferenceDataError) as info:
        load_reference(target)
    return info.value.reasons


def test_unknown_reason_in_an_unless_list_is_named(tmp_path: Path) -> None:
    def edit(doc: dict) -> None:
        doc["no_whistle"][0]["unless_reasons"].append("because_i_said_so")
        doc["automatic_reason"] = "nope"

    reasons = _refused(tmp_path, edit)
    assert any("own_claimed_matter" in r and "because_i_said_so" in r for r in reasons)
    assert any("automatic_reason 'nope'" in r for r in reasons)


def test_unknown_check_authority_or_duplicate_code_is_named(tmp_path: Path) -> None:
    def edit(doc: dict) -> None:
        doc["no_whistle"][0]["when"] = "on_tuesdays"
        doc["reasons"][1]["authorities"] = ["sometimes"]
        doc["reasons"].append(dict(doc["reasons"][0]))

    reasons = _refused(tmp_path, edit)
    assert all(r.startswith("whistle_rules.yaml: ") for r in reasons)
    assert any("no_whistle.0.when" in r for r in reasons)
    assert any("reasons.1.authorities" in r for r in reasons)


def test_duplicate_reason_code_is_named(tmp_path: Path) -> None:
    def edit(doc: dict) -> None:
        doc["reasons"].append(dict(doc["reasons"][0]))

    assert "whistle_rules.yaml: duplicate reason code 'beyond_powers'" in _refused(tmp_path, edit)


def test_a_missing_rules_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    (target / "whistle_rules.yaml").unlink()
    with pytest.raises(ReferenceDataError) as info:
        load_reference(target)
    assert any(r.startswith("whistle_rules.yaml: cannot read") for r in info.value.reasons)
