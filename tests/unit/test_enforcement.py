"""Lawful enforcement's pure rules (services/dispatch/enforcement.py) on the sample county's
catalogue: in whose name a unit acts, the entrusted ceiling, and the 重大执法决定 list — and
their validation when the catalogue is loaded."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from uuid6 import uuid7

from contracts.cases import PenaltyKind
from contracts.events import ActingFor, Penalty
from reference.county import (
    DEFAULT_ENTRUSTED_CEILING,
    EntrustedCeiling,
    MajorDecision,
    ReferenceData,
    ReferenceDataError,
    load_reference,
)
from services.dispatch.enforcement import (
    acting_capacity,
    describe_ceiling,
    entrustment_refusal,
    major_decisions,
)
from services.dispatch.publicity import ClosedCase, public_record

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"
WARNING, FINE = PenaltyKind.WARNING, PenaltyKind.FINE


@pytest.fixture(scope="module")
def sample() -> ReferenceData:
    return load_reference(CONFIG)


def _fine(yuan: int, *more: PenaltyKind) -> Penalty:
    return Penalty(kinds=[FINE, *more], fine_yuan=yuan)


def _capacity(sample: ReferenceData, matter: str, unit: str) -> ActingFor:
    township = sample.townships.get(sample.units[unit].township or "")
    return acting_capacity(
        sample.items[matter], sample.units[unit], township, sample.departments
    ).acting_in_name_of


# ---------------------------------------------------------------- in whose name


def test_an_entrusted_matter_is_handled_in_the_entrusting_departments_name(
    sample: ReferenceData,
) -> None:
    # 无证餐馆 (SC-002) is entrusted by the county's market regulator to 城关镇's squad.
    capacity = acting_capacity(
        sample.items["SC-002"],
        sample.units["T03-SCJGJ"],
        sample.townships["T03"],
        sample.departments,
    )
    assert capacity.acting_in_name_of == ActingFor(
        kind="department", code="SCJGJ", name="县市场监督管理局", entrusted=True
    )
    assert capacity.legal_basis == "《中华人民共和国食品安全法》第一百二十二条"
    assert capacity.document_type == "县市场监督管理局行政执法文书（城关镇受委托使用）"


def test_a_devolved_matter_is_handled_in_the_townships_own_name(sample: ReferenceData) -> None:
    assert _capacity(sample, "SC-001", "T03-SCJGJ") == ActingFor(
        kind="township", code="T03", name="城关镇"
    )
    assert _capacity(sample, "ZR-002", "T03-TEAM").kind == "township"  # statutory


def test_a_county_department_acts_in_its_own_name_even_on_an_entrusted_matter(
    sample: ReferenceData,
) -> None:
    assert _capacity(sample, "SC-002", "SCJGJ-COUNTY") == ActingFor(
        kind="department", code="SCJGJ", name="县市场监督管理局"
    )


# ---------------------------------------------------------------- the entrusted ceiling


def test_the_catalogue_states_a_ceiling_or_the_default_applies(sample: ReferenceData) -> None:
    assert sample.items["SC-002"].ceiling == EntrustedCeiling(
        penalties=[WARNING, FINE], max_fine_yuan=2000
    )
    # 短斤少两 (SC-005) is entrusted and names none: a warning, or a fine up to 200 yuan.
    assert sample.items["SC-005"].ceiling == DEFAULT_ENTRUSTED_CEILING
    assert describe_ceiling(DEFAULT_ENTRUSTED_CEILING) == "警告或200元以下罚款"
    # Only entrusted items have one: the others are bound by the law alone.
    assert sample.items["SC-001"].ceiling is None


@pytest.mark.parametrize(
    "penalty",
    [
        Penalty(kinds=[WARNING]),
        _fine(2000),  # 以下 includes the amount itself
        _fine(1500, WARNING),
    ],
)
def test_a_penalty_within_the_ceiling_is_allowed(sample: ReferenceData, penalty: Penalty) -> None:
    acting = _capacity(sample, "SC-002", "T03-SCJGJ")
    assert entrustment_refusal(sample.items["SC-002"], acting, penalty) is None


@pytest.mark.parametrize(
    ("penalty", "decided"),
    [
        (_fine(2001), "罚款2001元"),
        (Penalty(kinds=[PenaltyKind.LICENCE_REVOCATION]), "吊销许可证件"),
        (_fine(500, PenaltyKind.CONFISCATION), "罚款500元、没收违法所得、没收非法财物"),
    ],
)
def test_a_penalty_beyond_the_ceiling_is_refused_naming_it(
    sample: ReferenceData, penalty: Penalty, decided: str
) -> None:
    acting = _capacity(sample, "SC-002", "T03-SCJGJ")
    assert entrustment_refusal(sample.items["SC-002"], acting, penalty) == (
        "超出委托范围：委托事项仅可给予警告或2000元以下罚款，"
        f"应移交委托机关（县市场监督管理局）依法处理（本次决定：{decided}）"
    )


def test_the_ceiling_binds_only_what_is_decided_by_entrustment(sample: ReferenceData) -> None:
    big = _fine(50000)
    item = sample.items["SC-002"]
    assert entrustment_refusal(item, _capacity(sample, "SC-002", "SCJGJ-COUNTY"), big) is None
    devolved = sample.items["SC-001"]
    assert entrustment_refusal(devolved, _capacity(sample, "SC-001", "T03-SCJGJ"), big) is None


# ---------------------------------------------------------------- 重大执法决定


@pytest.mark.parametrize(
    ("penalty", "matched"),
    [
        (Penalty(kinds=[WARNING]), []),
        (_fine(10000), []),  # above the amount, not at it
        (_fine(10001), ["罚款金额超过10000元"]),
        (Penalty(kinds=[PenaltyKind.LICENCE_REVOCATION]), ["吊销许可证件"]),
        (
            _fine(20000, PenaltyKind.SUSPENSION),
            ["罚款金额超过10000元", "责令停产停业"],
        ),
        (Penalty(kinds=[PenaltyKind.CONFISCATION]), ["没收违法所得、没收非法财物"]),
    ],
)
def test_the_major_decision_list_of_the_sample_catalogue(
    sample: ReferenceData, penalty: Penalty, matched: list[str]
) -> None:
    assert major_decisions(penalty, sample.catalogue.major_decisions) == matched


# ---------------------------------------------------------------- validation


def test_a_penalty_names_its_fine_with_a_fine_only() -> None:
    with pytest.raises(ValidationError):
        Penalty(kinds=[FINE])
    with pytest.raises(ValidationError):
        Penalty(kinds=[WARNING], fine_yuan=100)
    with pytest.raises(ValidationError):
        Penalty(kinds=[WARNING, WARNING])


def test_a_ceiling_and_a_list_entry_are_checked_when_built() -> None:
    with pytest.raises(ValidationError):
        EntrustedCeiling(penalties=[FINE])  # a fine without its limit
    with pytest.raises(ValidationError):
        EntrustedCeiling(penalties=[WARNING], max_fine_yuan=100)
    with pytest.raises(ValidationError):
        MajorDecision(label="吊销", kind=PenaltyKind.LICENCE_REVOCATION, above_yuan=1)


def _load_with(tmp_path: Path, matter: str, ceiling: dict[str, object]) -> list[str]:
    """The reasons the sample county's data is refused with ``matter`` given ``ceiling``."""
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    catalogue = yaml.safe_load((config / "catalogue.yaml").read_text(encoding="utf-8"))
    next(i for i in catalogue["items"] if i["code"] == matter)["entrusted_ceiling"] = ceiling
    (config / "catalogue.yaml").write_text(yaml.safe_dump(catalogue, allow_unicode=True))
    with pytest.raises(ReferenceDataError) as refused:
        load_reference(config)
    return refused.value.reasons


def test_a_ceiling_on_an_item_that_is_not_entrusted_is_refused_at_load(tmp_path: Path) -> None:
    assert _load_with(tmp_path, "SC-001", {"penalties": ["warning"]}) == [
        "matter SC-001: an entrusted_ceiling is for entrusted items, not devolved"
    ]


def test_a_ceiling_with_a_fine_but_no_limit_is_refused_at_load(tmp_path: Path) -> None:
    [reason] = _load_with(tmp_path, "SC-005", {"penalties": ["fine"]})
    assert "entrusted_ceiling" in reason and "max_fine_yuan" in reason


# ---------------------------------------------------------------- publicity


def test_the_public_record_marks_a_decision_made_by_entrustment(sample: ReferenceData) -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    case = ClosedCase(
        case_id=uuid7(),
        matter_code="SC-002",
        township_code="T03",
        village_code="T03V02",
        unit_id="T03-SCJGJ",
        staff_id=None,
        opened_at=at,
        assigned_at=at,
        resolved_at=at,
        resolution="penalised",
        closed_at=at,
        acting_in_name_of=_capacity(sample, "SC-002", "T03-SCJGJ"),
        penalty=_fine(2000),
    )
    record = public_record(case, sample)
    assert record is not None
    assert (record.acting_in_name_of, record.result) == (
        "县市场监督管理局（委托执法）",
        "立案处罚：罚款2000元",
    )
