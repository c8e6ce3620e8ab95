"""Which county's reference data a reader's view names things by (queries.reference_for):
one rule for every console view and read of dispatch (docs/scale.md, "Tenancy")."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.county import CountySet, load_counties
from services.dispatch.models import Case
from services.dispatch.queries import readers_counties, reference_for
from services.runtime.auth import Principal

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"
QINGXI, TAOLIN = "140999", "140998"


@pytest.fixture(scope="module")
def counties() -> CountySet:
    return load_counties(CONFIG)


def _token(*scopes: str) -> Principal:
    return Principal("someone", frozenset({"county_supervisor"}), frozenset(scopes))


def test_a_case_is_named_from_its_own_county(counties: CountySet) -> None:
    case = Case(county=TAOLIN)
    for reader in (_token(f"county:{QINGXI}"), _token("county:*")):
        assert reference_for(counties, reader, case=case).county.code == TAOLIN


def test_a_form_about_no_case_is_the_tokens_county(counties: CountySet) -> None:
    assert reference_for(counties, _token(f"county:{TAOLIN}")).county.code == TAOLIN
    assert reference_for(counties, _token(f"county:{QINGXI}")).county.code == QINGXI
    # A city token reads the default county's until it chooses.
    city = _token("county:*")
    assert reference_for(counties, city).county.code == QINGXI
    assert reference_for(counties, city, chosen=TAOLIN).county.code == TAOLIN
    assert [c.county.code for c in readers_counties(counties, city)] == [QINGXI, TAOLIN]


def test_a_token_chooses_only_a_county_it_reads_and_one_served_here(
    counties: CountySet,
) -> None:
    with pytest.raises(LookupError):
        reference_for(counties, _token(f"county:{QINGXI}"), chosen=TAOLIN)
    with pytest.raises(LookupError):
        reference_for(counties, _token("county:*"), chosen="999999")
    with pytest.raises(LookupError):
        reference_for(counties, _token("county:999999"))


def test_a_token_of_several_counties_reads_one_of_its_own(counties: CountySet) -> None:
    both = _token(f"county:{QINGXI}", f"county:{TAOLIN}")
    assert reference_for(counties, both).county.code == QINGXI  # the default, which it reads
    assert reference_for(counties, both, chosen=TAOLIN).county.code == TAOLIN
    assert [c.county.code for c in readers_counties(counties, _token(f"county:{TAOLIN}"))] == [
        TAOLIN
    ]
