"""Near-duplicate tips: when a new tip joins an open case instead of opening its own, and when
a dispatcher may split a tip back out.

Several citizens report the same stall or the same noisy square; each report should count,
but one case should be worked. A routed tip (its matter and place known) joins an open case
of the same matter and the same township opened within the merge window, if that case's point
lies within the merge distance of the tip's, or if both are in the same grid. Never across a
township line, however near: the case's township would read the other township's citizen's
tip (its text, its place), which is not theirs to read, and would handle a problem on ground
that is not theirs.

Distance is the great-circle (haversine) distance on a sphere of the Earth's mean radius. Its
error against the WGS 84 ellipsoid is at most about 0.5 %, under a metre at 200 m, far below
the 5–20 m of a phone's GPS fix; it needs no projection origin (unlike measuring in shapely on
a local plane) and is exact for two points on one meridian, which the tests rely on.

Among several matching cases the tip joins the nearest: the closest report is the likeliest to
be the same problem. A case matched only by grid, whose distance cannot be measured (it or the
tip has no coordinates), ranks after every measured one; ties go to the case opened first,
then to the lowest case id, so the choice never depends on query order.

Plain data and functions: the case service (cases.py) gathers candidates and applies the decision.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal
from uuid import UUID

from contracts.cases import CaseStatus
from reference.geometry import EARTH_RADIUS_M

# Resolved and closed cases are done: a new report of the same problem is a new case (or, for
# a citizen unhappy with the result, a rating that reopens it).
MERGEABLE_STATUSES: frozenset[CaseStatus] = frozenset(CaseStatus) - {
    CaseStatus.RESOLVED,
    CaseStatus.CLOSED,
}


# Distances are compared and recorded to the decimetre: finer is below any GPS fix, and a
# tip exactly at the merge distance must not miss it by a rounding error of the arithmetic.
DISTANCE_DECIMALS = 1


@dataclass(frozen=True)
class Point:
    lat: float
    lon: float


@dataclass(frozen=True)
class Candidate:
    """An existing case, as far as merging is concerned."""

    case_id: UUID
    status: str
    matter_code: str | None
    township: str | None
    grid_id: str | None
    point: Point | None
    opened_at: datetime


@dataclass(frozen=True)
class ArrivingTip:
    """A routed tip: its matter and where it is."""

    matter_code: str
    grid_id: str | None
    point: Point | None
    township: str | None


@dataclass(frozen=True)
class MergePolicy:
    distance_m: float
    window: timedelta

    @property
    def enabled(self) -> bool:
        return self.window > timedelta(0)


@dataclass(frozen=True)
class Merge:
    case_id: UUID
    rule: Literal["same_grid", "within_distance"]
    distance_m: float | None
    explanation: tuple[str, ...]


def distance_m(a: Point, b: Point) -> float:
    """Great-circle distance in metres (haversine, mean Earth radius)."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi = phi2 - phi1
    dlambda = math.radians(b.lon - a.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def within_one_township(tip: ArrivingTip, case: Candidate) -> bool:
    """May the tip join this case as far as township lines go? Only a case of the tip's own
    township: the case's township would read the tip (its words, its place) and act on the
    ground it names, so another township's case is never joined, however near — the tip opens
    a case of its own township. A tip located in no township joins no case."""
    return tip.township is not None and case.township == tip.township


def find_merge(
    tip: ArrivingTip, candidates: Iterable[Candidate], now: datetime, policy: MergePolicy
) -> Merge | None:
    """The open case this tip joins, or None when it opens a case of its own.

    A case opened exactly ``policy.window`` ago, or exactly ``policy.distance_m`` away (to the
    decimetre), still matches.
    """
    if not policy.enabled:
        return None
    matches: list[tuple[tuple[float, datetime, str], Merge]] = []
    for case in candidates:
        if case.matter_code != tip.matter_code or case.status not in MERGEABLE_STATUSES:
            continue
        if not within_one_township(tip, case):
            continue
        age = now - case.opened_at
        if age > policy.window:
            continue
        metres = (
            round(distance_m(tip.point, case.point), DISTANCE_DECIMALS)
            if tip.point is not None and case.point is not None
            else None
        )
        near = metres is not None and metres <= policy.distance_m
        same_grid = tip.grid_id is not None and tip.grid_id == case.grid_id
        if not (near or same_grid):
            continue
        hours = max(age, timedelta(0)) / timedelta(hours=1)
        window_hours = policy.window / timedelta(hours=1)
        if near:
            assert metres is not None
            where = f"距其 {metres:.0f} 米（{policy.distance_m:g} 米以内）"
        elif metres is not None:
            where = f"同在网格 {tip.grid_id}（相距 {metres:.0f} 米）"
        else:
            where = f"同在网格 {tip.grid_id}"
        why = (
            f"与案件 {case.case_id} 同为事项 {tip.matter_code}，{where}，"
            f"该案件 {hours:.1f} 小时前立案（{window_hours:g} 小时以内）且未办结，并入该案件"
        )
        rank = (math.inf if metres is None else metres, case.opened_at, str(case.case_id))
        rule: Literal["same_grid", "within_distance"] = "within_distance" if near else "same_grid"
        matches.append((rank, Merge(case.case_id, rule, metres, (why,))))
    if not matches:
        return None
    return min(matches, key=lambda match: match[0])[1]


class SplitRefusal(StrEnum):
    CLOSED = "closed"
    ORIGINAL_TIP = "original_tip"
    NOT_MERGED = "not_merged"


def check_split(
    status: str, original_tip: UUID, tip_id: UUID, merged_tips: Collection[UUID]
) -> SplitRefusal | None:
    """May ``tip_id`` be split out of a case in ``status``? Only a tip that joined by merge:
    the case's own tip is the case. A closed case's record is final; reopen it first."""
    if tip_id == original_tip:
        return SplitRefusal.ORIGINAL_TIP
    if tip_id not in merged_tips:
        return SplitRefusal.NOT_MERGED
    if status == CaseStatus.CLOSED:
        return SplitRefusal.CLOSED
    return None
