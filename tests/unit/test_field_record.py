"""What a step on the ground records and when it is refused (services/dispatch/field_record.py),
on the sample county's data: the officer's 执法证 checked valid on the step's date, the place,
the evidence cited."""

from __future__ import annotations

from datetime import date

import pytest

from contracts.events import GeoPoint
from reference.county import ReferenceData, load_reference
from services.dispatch.field_record import (
    OfficerRecord,
    find_staff,
    officer_record,
    step_place,
)
from services.runtime.uploads import not_stored
from tests.conftest import REPO


@pytest.fixture(scope="module")
def sample() -> ReferenceData:
    return load_reference(REPO / "deploy" / "config")


def _record(sample: ReferenceData, staff_id: str, matter: str, day: date) -> OfficerRecord | str:
    staff = find_staff(sample.units.values(), staff_id)
    return officer_record(staff_id, staff, sample.items[matter], day)


def test_a_valid_certificate_is_recorded_by_its_number(sample: ReferenceData) -> None:
    # 宋晓丽 (S0089): 晋执字14099920240085, 2024-09-17 to 2029-09-16, both days included.
    for day in (date(2024, 9, 17), date(2029, 9, 16)):
        assert _record(sample, "S0089", "CG-001", day) == OfficerRecord(
            "S0089", "晋执字14099920240085"
        )


def test_a_certificate_out_of_its_dates_refuses_a_step_of_a_penalty_matter(
    sample: ReferenceData,
) -> None:
    for day in (date(2024, 9, 16), date(2029, 9, 17)):
        refusal = _record(sample, "S0089", "CG-001", day)
        assert isinstance(refusal, str)
        assert f"{day}不在有效期内" in refusal and "占道经营、出店经营" in refusal


def test_an_account_that_is_no_officer_is_refused_a_penalty_matter(sample: ReferenceData) -> None:
    refusal = _record(sample, "dev-user", "CG-001", date(2026, 12, 5))
    assert isinstance(refusal, str) and refusal.startswith("dev-user不在执法人员名录中")


def test_a_service_request_needs_no_certificate(sample: ReferenceData) -> None:
    assert _record(sample, "dev-user", "GF-001", date(2026, 12, 5)) == OfficerRecord(
        "dev-user", None
    )
    # Nor does a case whose matter is not known yet.
    assert officer_record("dev-user", None, None, date(2026, 12, 5)) == OfficerRecord(
        "dev-user", None
    )


def test_an_enforcement_matter_that_is_no_penalty_records_no_certificate_without_refusing(
    sample: ReferenceData,
) -> None:
    [inspection] = [
        i for i in sample.items.values() if not i.is_service and i.action_type != "penalty"
    ][:1]
    assert _record(sample, "dev-user", inspection.code, date(2026, 12, 5)) == OfficerRecord(
        "dev-user", None
    )


def test_the_place_is_the_point_given_and_the_cases_grid() -> None:
    point = GeoPoint(lat=38.76, lon=113.225)
    assert step_place(point, "T03V02G01").record() == {
        "grid_id": "T03V02G01",
        "point": {"lat": 38.76, "lon": 113.225},
    }
    assert step_place(None, "T03V02G01").record() == {"grid_id": "T03V02G01", "point": None}


def test_unknown_evidence_is_named_once_in_the_order_cited() -> None:
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    assert not_stored([c, a, c, b], {a}) == [c, b]
    assert not_stored([a], {a}) == []
    assert not_stored([], set()) == []
