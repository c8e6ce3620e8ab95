"""When a tip joins an open case instead of opening its own, and when it may be split off."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from reference.geometry import EARTH_RADIUS_M
from services.dispatch.merging import (
    ArrivingTip,
    Candidate,
    MergePolicy,
    Point,
    SplitRefusal,
    check_split,
    distance_m,
    find_merge,
    within_one_township,
)

NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)
POLICY = MergePolicy(distance_m=200, window=timedelta(hours=72))
HERE = Point(38.76, 113.225)  # 城关镇五里铺村, grid T03V02G02
TIP = ArrivingTip("CG-001", "T03V02G02", HERE, "T03")


def north(point: Point, metres: float) -> Point:
    """The point ``metres`` due north: along a meridian the haversine distance is exact."""
    return Point(point.lat + math.degrees(metres / EARTH_RADIUS_M), point.lon)


def case(
    number: int,
    metres: float | None = 50,
    *,
    grid: str | None = "T03V01G01",
    matter: str | None = "CG-001",
    township: str | None = "T03",
    status: str = "assigned",
    age: timedelta = timedelta(hours=1),
) -> Candidate:
    return Candidate(
        case_id=UUID(int=number),
        status=status,
        matter_code=matter,
        township=township,
        grid_id=grid,
        point=None if metres is None else north(HERE, metres),
        opened_at=NOW - age,
    )


def test_a_tip_may_join_only_a_case_of_its_own_township() -> None:
    assert within_one_township(TIP, case(1, township="T03"))
    assert not within_one_township(TIP, case(1, township="T04"))
    assert not within_one_township(TIP, case(1, township=None))
    assert not within_one_township(replace(TIP, township=None), case(1, township=None))


# (what, candidates, the tip, the case it joins or None, rule)
CASES: list[tuple[str, list[Candidate], ArrivingTip, int | None, str | None]] = [
    ("199 m away, another grid", [case(1, 199)], TIP, 1, "within_distance"),
    ("201 m away, another grid", [case(1, 201)], TIP, None, None),
    ("exactly the merge distance", [case(1, 200)], TIP, 1, "within_distance"),
    ("same grid, 900 m apart", [case(1, 900, grid="T03V02G02")], TIP, 1, "same_grid"),
    (
        "same grid, the case has no coordinates",
        [case(1, None, grid="T03V02G02")],
        TIP,
        1,
        "same_grid",
    ),
    (
        "same grid, the tip has no coordinates",
        [case(1, 900, grid="T03V02G02")],
        replace(TIP, point=None),
        1,
        "same_grid",
    ),
    ("neither near nor in the grid", [case(1, None)], TIP, None, None),
    (
        "a tip with neither point nor grid",
        [case(1, 10)],
        ArrivingTip("CG-001", None, None, None),
        None,
        None,
    ),
    ("opened exactly 72 h ago", [case(1, age=timedelta(hours=72))], TIP, 1, "within_distance"),
    ("opened 72 h and 1 s ago", [case(1, age=timedelta(hours=72, seconds=1))], TIP, None, None),
    ("another matter, 10 m away", [case(1, 10, matter="CG-007")], TIP, None, None),
    ("another township's case, 10 m away", [case(1, 10, township="T04")], TIP, None, None),
    (
        "another township's case in the same grid",
        [case(1, None, grid="T03V02G02", township="T04")],
        TIP,
        None,
        None,
    ),
    (
        "a tip no township holds",
        [case(1, 10, township=None)],
        replace(TIP, township=None),
        None,
        None,
    ),
    ("a case without a matter", [case(1, 10, matter=None)], TIP, None, None),
    ("a closed case", [case(1, 10, status="closed")], TIP, None, None),
    ("a resolved case", [case(1, 10, status="resolved")], TIP, None, None),
    ("a case waiting for triage", [case(1, 10, status="triage")], TIP, 1, "within_distance"),
    ("a case in arbitration", [case(1, 10, status="arbitration")], TIP, 1, "within_distance"),
    (
        "the nearest of several, though opened later",
        [case(1, 150, age=timedelta(hours=10)), case(2, 50, age=timedelta(hours=1))],
        TIP,
        2,
        "within_distance",
    ),
    (
        "equally near: the one opened first",
        [case(2, 80, age=timedelta(hours=1)), case(1, 80, age=timedelta(hours=5))],
        TIP,
        1,
        "within_distance",
    ),
    (
        "a measured case before one matched only by grid",
        [case(1, None, grid="T03V02G02", age=timedelta(hours=9)), case(2, 190)],
        TIP,
        2,
        "within_distance",
    ),
    (
        "the closed nearest is skipped for the open one farther away",
        [case(1, 5, status="closed"), case(2, 180)],
        TIP,
        2,
        "within_distance",
    ),
]


@pytest.mark.parametrize(
    ("candidates", "tip", "joins", "rule"),
    [pytest.param(c, t, j, r, id=what) for what, c, t, j, r in CASES],
)
def test_which_open_case_a_tip_joins(
    candidates: list[Candidate], tip: ArrivingTip, joins: int | None, rule: str | None
) -> None:
    merge = find_merge(tip, candidates, NOW, POLICY)
    if joins is None:
        assert merge is None
    else:
        assert merge is not None
        assert (merge.case_id, merge.rule) == (UUID(int=joins), rule)
        assert merge.explanation and str(merge.case_id) in merge.explanation[0]


def test_the_merge_records_how_far_apart_the_tips_were() -> None:
    merge = find_merge(TIP, [case(1, 199)], NOW, POLICY)
    assert merge is not None and merge.distance_m == 199.0
    grid_only = find_merge(TIP, [case(1, None, grid="T03V02G02")], NOW, POLICY)
    assert grid_only is not None and grid_only.distance_m is None


def test_a_window_of_zero_merges_nothing() -> None:
    off = MergePolicy(distance_m=200, window=timedelta(0))
    assert find_merge(TIP, [case(1, 1, grid="T03V02G02")], NOW, off) is None


def test_the_distance_is_the_great_circle_distance() -> None:
    # One degree of longitude on the equator, and a known pair of points about 1 km apart.
    assert distance_m(Point(0, 0), Point(0, 1)) == pytest.approx(111_195, rel=1e-4)
    assert distance_m(HERE, north(HERE, 1000)) == pytest.approx(1000, abs=1e-6)
    east = Point(HERE.lat, HERE.lon + 0.01)  # 0.01° of longitude at 38.76°N ≈ 867 m
    assert distance_m(HERE, east) == pytest.approx(867.5, abs=1)
    assert distance_m(HERE, east) == pytest.approx(distance_m(east, HERE))


ORIGINAL, MERGED, STRANGER = UUID(int=10), UUID(int=11), UUID(int=12)


@pytest.mark.parametrize(
    ("status", "tip", "refusal"),
    [
        ("in_progress", MERGED, None),
        ("resolved", MERGED, None),
        ("triage", MERGED, None),
        ("in_progress", ORIGINAL, SplitRefusal.ORIGINAL_TIP),
        ("in_progress", STRANGER, SplitRefusal.NOT_MERGED),
        ("closed", MERGED, SplitRefusal.CLOSED),
    ],
)
def test_only_a_merged_tip_of_a_case_not_closed_can_be_split_off(
    status: str, tip: UUID, refusal: SplitRefusal | None
) -> None:
    assert check_split(status, ORIGINAL, tip, {MERGED}) is refusal
