"""The one authority rule (services/dispatch/authority.py), on the sample county's data: which
unit may be given which matter, with which admission decision, on which day."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from reference.county import SERVICE_BODY_KINDS, ReferenceData, load_reference
from services.dispatch.authority import (
    AdmissionInForce,
    AuthorityRefusal,
    Verdict,
    assistance_refusal,
    certified_on,
    judge_assignment,
    judge_referral,
)

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"
TODAY = date(2026, 12, 5)
# 县人民政府 approved that 台城镇 (T05) carry LD-005 劳动争议 (out of its list).
ADMITTED = AdmissionInForce("LD-005", "T05", "县人民政府", "五政发〔2026〕12号")


@pytest.fixture(scope="module")
def sample() -> ReferenceData:
    return load_reference(CONFIG)


def _judge(
    sample: ReferenceData,
    matter: str,
    unit: str,
    township: str,
    admission: AdmissionInForce | None = None,
    today: date = TODAY,
) -> Verdict:
    return judge_assignment(
        sample.items[matter],
        sample.units[unit],
        township=township,
        claims=sample.claims[township],
        admission=admission,
        today=today,
    )


def _rules(verdict: Verdict) -> list[AuthorityRefusal]:
    return [r.rule for r in verdict.refusals]


@pytest.mark.parametrize(
    ("matter", "unit", "township", "grounds"),
    [
        ("ZR-002", "T03-TEAM", "T03", "法定事项，本乡镇已认领，由城关镇综合行政执法队办理"),
        ("CG-001", "T03-CGJ", "T03", "赋权事项，本乡镇已认领，由城关镇城市管理派驻组办理"),
        ("LD-001", "T05-RSJ", "T05", "委托事项，本乡镇已认领，由台城镇劳动监察派驻组办理"),
        # A township dispatcher may pick another of its own units than routing would.
        ("JT-001", "T03-CGJ", "T03", "赋权事项，本乡镇已认领，由城关镇城市管理派驻组办理"),
    ],
)
def test_a_township_unit_may_hold_what_its_township_holds(
    sample: ReferenceData, matter: str, unit: str, township: str, grounds: str
) -> None:
    verdict = _judge(sample, matter, unit, township)
    assert verdict.allowed and verdict.refusals == ()
    assert verdict.grounds == grounds


@pytest.mark.parametrize(
    ("matter", "unit", "township", "rule", "reason"),
    [
        (
            "SC-006",  # 电梯 安全隐患: county-only
            "T03-SCJGJ",
            "T03",
            AuthorityRefusal.COUNTY_ONLY,
            "电梯等特种设备安全隐患为县级专属事项，须由县直部门办理，不得指派给乡镇",
        ),
        (
            "YJ-002",  # 燃气泄漏: assist, the county department leads
            "T02-YJGLJ",
            "T02",
            AuthorityRefusal.ASSIST,
            "燃气泄漏等燃气安全事故隐患为协助事项，由县直部门牵头、乡镇协助，不得由乡镇单位牵头办理",
        ),
        (
            "SC-005",  # optional, not claimed by 东冶镇
            "T04-SCJGJ",
            "T04",
            AuthorityRefusal.UNCLAIMED,
            "本乡镇未认领使用不合格计量器具或破坏计量器具准确度，该事项由县直部门办理，"
            "不得指派给乡镇单位",
        ),
        (
            "LD-005",  # out of the list, no admission decision
            "T05-SFJ",
            "T05",
            AuthorityRefusal.NOT_ADMITTED,
            "该事项不在本乡镇赋权清单内，须经县政府准入批准后方可指派",
        ),
        (
            "CG-001",  # 台城镇's squad for a case in 城关镇
            "T05-CGJ",
            "T03",
            AuthorityRefusal.OTHER_TOWNSHIP,
            "台城镇城市管理派驻组不属于本案所在乡镇（T03），不得跨乡镇指派",
        ),
    ],
)
def test_a_township_unit_is_refused_what_its_township_does_not_hold(
    sample: ReferenceData,
    matter: str,
    unit: str,
    township: str,
    rule: AuthorityRefusal,
    reason: str,
) -> None:
    verdict = _judge(sample, matter, unit, township)
    assert not verdict.allowed
    assert _rules(verdict) == [rule]
    assert verdict.reason == reason


def test_an_out_of_list_matter_is_allowed_only_under_its_own_admission(
    sample: ReferenceData,
) -> None:
    admitted = _judge(sample, "LD-005", "T05-SFJ", "T05", ADMITTED)
    assert admitted.allowed
    assert admitted.grounds == "经县人民政府准入批准（五政发〔2026〕12号），由台城镇司法所办理"
    # Any unit of the admitted township (a reassignment after a rejection, say).
    assert _judge(sample, "LD-005", "T05-TEAM", "T05", ADMITTED).allowed
    # An admission is for one matter in one township.
    other_matter = AdmissionInForce("GA-003", "T05", "县人民政府", "五政发〔2026〕12号")
    assert _rules(_judge(sample, "LD-005", "T05-SFJ", "T05", other_matter)) == [
        AuthorityRefusal.NOT_ADMITTED
    ]
    assert _rules(_judge(sample, "LD-005", "T03-SFJ", "T03", ADMITTED)) == [
        AuthorityRefusal.NOT_ADMITTED
    ]
    # Admission moves an out-of-list duty, never a county-only one.
    county_only = AdmissionInForce("SC-006", "T03", "县人民政府", "五政发〔2026〕12号")
    assert _rules(_judge(sample, "SC-006", "T03-SCJGJ", "T03", county_only)) == [
        AuthorityRefusal.COUNTY_ONLY
    ]


@pytest.mark.parametrize("matter", ["SC-006", "YJ-002", "SC-005", "LD-005", "CG-001"])
def test_a_county_department_may_be_given_any_matter(sample: ReferenceData, matter: str) -> None:
    verdict = _judge(sample, matter, "SCJGJ-COUNTY", "T04")
    assert verdict.allowed
    assert verdict.grounds == "县市场监督管理局综合行政执法队为县直部门队伍，以本部门名义办理"


def test_a_penalty_needs_a_certified_officer_that_day(sample: ReferenceData) -> None:
    # 龙泉街道's agriculture squad: its one officer's 执法证 ran out on 2025-03-07.
    squad = sample.units["T01-NYNCJ"]
    assert certified_on(squad, date(2025, 3, 7)) and not certified_on(squad, TODAY)
    assert _judge(sample, "NY-006", "T01-NYNCJ", "T01", today=date(2025, 3, 7)).allowed
    refused = _judge(sample, "NY-006", "T01-NYNCJ", "T01")
    assert _rules(refused) == [AuthorityRefusal.NO_CERTIFICATE]
    assert refused.reason == (
        "龙泉街道农业农村派驻组当前无持有效执法证人员，"
        "不得指派行政处罚事项（使用电鱼、炸鱼、毒鱼等方法捕捞）"
    )
    # The same squad may be given a matter that is no penalty (an inspection).
    inspection = sample.items["NY-006"].model_copy(update={"action_type": "inspection"})
    assert judge_assignment(
        inspection,
        squad,
        township="T01",
        claims=sample.claims["T01"],
        admission=None,
        today=TODAY,
    ).allowed


def test_the_certificate_rule_holds_for_a_county_department_too(sample: ReferenceData) -> None:
    county = sample.units["SCJGJ-COUNTY"]
    expired = [s.model_copy(update={"certificate": None}) for s in county.staff]
    uncertified = county.model_copy(update={"staff": expired})
    verdict = judge_assignment(
        sample.items["SC-001"],
        uncertified,
        township="T01",
        claims=sample.claims["T01"],
        admission=None,
        today=TODAY,
    )
    assert _rules(verdict) == [AuthorityRefusal.NO_CERTIFICATE]


def test_every_rule_that_refuses_is_named(sample: ReferenceData) -> None:
    # YJ-005 危化品 is county-only and a penalty; 龙泉街道's agriculture squad has nobody
    # certified: both are said.
    verdict = _judge(sample, "YJ-005", "T01-NYNCJ", "T01")
    assert _rules(verdict) == [AuthorityRefusal.COUNTY_ONLY, AuthorityRefusal.NO_CERTIFICATE]
    assert verdict.reason.count("；") == 1


def test_every_township_unit_and_matter_of_the_sample_is_judged_by_the_catalogue(
    sample: ReferenceData,
) -> None:
    """The rule against the catalogue for every unit of every township: a township unit is
    allowed exactly its township's claimed statutory, devolved and entrusted items (the
    certificate rule aside), and never another township's case."""
    held = {"statutory", "devolved", "entrusted"}
    for township in sample.townships:
        claims = sample.claims[township]
        for unit in sample.units_of_township(township):
            for item in sample.catalogue.items:
                verdict = judge_assignment(
                    item, unit, township=township, claims=claims, admission=None, today=TODAY
                )
                rules = set(_rules(verdict)) - {AuthorityRefusal.NO_CERTIFICATE}
                if item.is_service:  # any body of the township may fix it; no enforcement check
                    assert not verdict.refusals, (item.code, unit.id)
                    continue
                if unit.kind in SERVICE_BODY_KINDS:  # no enforcement power, whatever the item
                    assert rules == {AuthorityRefusal.NOT_ENFORCEMENT_BODY}, (item.code, unit.id)
                    continue
                assert (not rules) == (item.authority.value in held and item.code in claims)
                if AuthorityRefusal.NO_CERTIFICATE in _rules(verdict):
                    assert item.action_type == "penalty" and not certified_on(unit, TODAY)


@pytest.mark.parametrize(
    ("matter", "township", "rules"),
    [
        ("CG-001", "T03", []),  # 占道经营: devolved, claimed by 城关镇
        ("SC-006", "T03", [AuthorityRefusal.COUNTY_ONLY]),
        ("YJ-002", "T03", [AuthorityRefusal.ASSIST]),
        ("LD-005", "T05", [AuthorityRefusal.NOT_ADMITTED]),  # no admission stands behind it
    ],
)
def test_a_department_refers_only_what_the_township_may_lead(
    sample: ReferenceData, matter: str, township: str, rules: list[AuthorityRefusal]
) -> None:
    verdict = judge_referral(sample.items[matter], township, sample.claims[township])
    assert _rules(verdict) == rules
    if not rules:
        assert verdict.grounds == "赋权事项，本乡镇已认领，由乡镇办理"


@pytest.mark.parametrize(
    ("matter", "lead", "assisting", "refused"),
    [
        ("YJ-002", "YJGLJ-COUNTY", "T03-TEAM", None),  # 燃气泄漏: the department leads
        ("YJ-002", "YJGLJ-COUNTY", "T03-CGJ", None),  # a named squad of the township
        ("CG-001", "T03-CGJ", "T03-TEAM", "仅协助事项可请求乡镇协助"),
        ("YJ-002", "T03-YJGLJ", "T03-TEAM", "仅由县直部门牵头办理的案件可请求乡镇协助"),
        ("YJ-002", "YJGLJ-COUNTY", "T01-TEAM", "不是本案所在乡镇（T03）的单位"),
        ("YJ-002", "YJGLJ-COUNTY", "CGJ-COUNTY", "不是本案所在乡镇（T03）的单位"),
    ],
)
def test_only_the_department_leading_an_assist_matter_asks_its_township(
    sample: ReferenceData, matter: str, lead: str, assisting: str, refused: str | None
) -> None:
    reason = assistance_refusal(
        sample.items[matter], sample.units[lead], sample.units[assisting], "T03"
    )
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


# ---------------------------------------------------------------- public-service requests


def test_a_service_request_goes_to_its_body_without_enforcement_checks(
    sample: ReferenceData,
) -> None:
    # 城关镇城建办 holds no certificate, no claim and no authority type, yet mends street lights.
    street_light = _judge(sample, "GF-001", "T03-CJB", "T03")
    assert street_light.allowed
    assert street_light.grounds == "公共服务诉求（路灯不亮、损坏），由城关镇城建办办理"
    assert not certified_on(sample.units["T03-CJB"], TODAY)
    assert _judge(sample, "GF-007", "ZLS-COUNTY", "T03").allowed  # the county's water company
    # ... but not another township's station.
    assert _rules(_judge(sample, "GF-001", "T05-CJB", "T03")) == [AuthorityRefusal.OTHER_TOWNSHIP]


@pytest.mark.parametrize("unit", ["T03-CJB", "T03-GDS", "ZLS-COUNTY", "RQ-COUNTY"])
def test_an_enforcement_matter_never_goes_to_a_service_body_or_utility(
    sample: ReferenceData, unit: str
) -> None:
    # CG-001 占道经营 is claimed by 城关镇; a utility or station still may not enforce it.
    verdict = _judge(sample, "CG-001", unit, "T03")
    assert _rules(verdict) == [AuthorityRefusal.NOT_ENFORCEMENT_BODY]
    assert "无行政执法权" in verdict.reason
