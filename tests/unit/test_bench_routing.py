"""The routing benchmark's generated county is reference data dispatch accepts, and its tips
exercise every way a decision can go."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import shapely

from bench.routing import _decide, generate, tips
from reference.county import Authority, UnitKind, load_reference
from services.dispatch.routing import Assignment


def test_generated_county_loads_and_routes(tmp_path: Path) -> None:
    generate(townships=3, items=200, seed=1).write(tmp_path)
    reference = load_reference(tmp_path)  # every cross-check and polygon check of the loader

    assert len(reference.townships) == 3
    assert len(reference.items) == 200
    assert {i.authority for i in reference.items.values()} == set(Authority)
    assert any(i.supporting_departments for i in reference.items.values())
    for township in reference.townships:
        kinds = Counter(u.kind for u in reference.units_of_township(township))
        assert kinds[UnitKind.TOWNSHIP_TEAM] == 1 and kinds[UnitKind.SECONDED_SQUAD] == 9

    # The grids tile the county: a point inside each grid is located to that grid alone.
    for grid_id, (_, _, grid) in reference.grids.items():
        assert grid.polygon is not None
        inside = shapely.Polygon(grid.polygon[0]).representative_point()
        hit = reference.grid_locator.locate(inside.y, inside.x)
        assert hit is not None and (hit.grid_id, hit.distance_m, hit.also) == (grid_id, 0.0, ())

    outcomes = Counter()
    for tip in tips(reference, 150, seed=2):
        outcome = _decide(tip, reference, {}, 0.5)[3]
        outcomes[outcome.rule if isinstance(outcome, Assignment) else "other"] += 1
    assert {"statutory", "devolved", "county_only", "other"} <= set(outcomes)
