"""The pipeline benchmark's load and its measure (bench/pipeline.py): distinct tips that open
cases of their own, retellings that merge, and latencies that end at an event of the tip's own."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from bench.load import generate_load
from bench.pipeline import LedgerTimes, Outcome, measure
from reference.county import ReferenceData, load_reference
from services.dispatch.triage import classify
from tests.conftest import REPO

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def reference() -> ReferenceData:
    return load_reference(REPO / "deploy" / "config")


def test_originals_are_distinct_matters_and_grids_and_retellings_follow_them(
    reference: ReferenceData,
) -> None:
    load = generate_load(reference, 400, duplicate_share=0.05)
    assert len(load) == 400
    originals = [t for t in load if t.duplicate_of is None]
    retold = [(n, t) for n, t in enumerate(load) if t.duplicate_of is not None]
    assert len(retold) == 20
    assert len({(t.matter_code, t.grid_id) for t in originals}) == len(originals)
    assert len({t.text for t in load}) == len(load)
    for n, tip in retold:
        assert tip.duplicate_of is not None
        original = load[tip.duplicate_of]
        assert tip.duplicate_of < n and original.duplicate_of is None
        assert (tip.grid_id, tip.matter_code) == (original.grid_id, original.matter_code)
    # Spread: many matters and grids, not a handful of texts.
    assert len({t.matter_code for t in originals}) > 40
    assert len({t.grid_id for t in originals}) > 100
    assert generate_load(reference, 400) == load  # a fixed seed: every run posts the same load


def test_each_tip_names_its_matter_as_dispatch_reads_it(reference: ReferenceData) -> None:
    load = generate_load(reference, 300)
    found = Counter(
        classify(tip.text, None, reference).item == reference.items[tip.matter_code] for tip in load
    )
    assert found[True] == len(load), found


def test_a_load_larger_than_the_distinct_pairs_is_refused(reference: ReferenceData) -> None:
    pairs = sum(1 for i in reference.catalogue.items if i.keywords) * len(reference.grids)
    with pytest.raises(ValueError, match="pairs"):
        generate_load(reference, pairs + 1, duplicate_share=0)


def test_a_tip_merged_into_an_older_case_is_measured_from_its_own_merge() -> None:
    """The old measure joined every tip of a case to the case's deadlines: a tip merged into a
    case deadlined before it arrived came out at minus seconds."""
    times = LedgerTimes(
        received={"a": T0, "b": T0 + timedelta(seconds=30), "c": T0, "d": T0, "e": T0},
        opened={"a": "case-a", "c": "case-c", "d": "case-d"},
        merged={"b": T0 + timedelta(seconds=30.2)},
        triage={"case-c": T0 + timedelta(seconds=0.3)},
        deadlines={"case-a": T0 + timedelta(seconds=0.1)},
    )
    measured = measure(times)
    assert measured.outcomes == Counter(
        {Outcome.DEADLINED: 1, Outcome.MERGED: 1, Outcome.MANUAL: 1, Outcome.PENDING: 2}
    )
    assert measured.latencies[Outcome.DEADLINED] == [pytest.approx(0.1)]
    assert measured.latencies[Outcome.MERGED] == [pytest.approx(0.2)]
    assert measured.latencies[Outcome.MANUAL] == [pytest.approx(0.3)]
