"""Which grid a coordinate falls in: the grid polygons in a shapely STRtree, built once per
reference-data version.

Polygons are GeoJSON ([[[lon, lat], ...], holes...], WGS 84). They are projected to metres on
a plane tangent at the centre of the county (equirectangular), so that "within 500 m" is
measured in metres: over a county's extent (well under 1° of latitude) the scale error is
below 1%, a few metres at 500 m.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import shapely
from shapely import STRtree

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)

Ring = Sequence[Sequence[float]]  # [[lon, lat], ...]


@dataclass(frozen=True)
class GridHit:
    grid_id: str
    distance_m: float  # 0 when the point is inside or on the grid's boundary
    also: tuple[str, ...] = ()  # other grids containing it (a shared boundary) or as near


def polygon_problem(rings: Sequence[Ring]) -> str | None:
    """Why a GeoJSON polygon's coordinates do not make a valid polygon, or None."""
    if not rings:
        return "has no rings"
    for ring in rings:
        if len(ring) < 4:
            return "a ring needs at least 4 positions"
        if tuple(ring[0]) != tuple(ring[-1]):
            return "a ring is not closed (its first and last positions differ)"
    for ring in rings:
        for lon, lat in ring:
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                return f"position [{lon}, {lat}] is not a longitude/latitude"
    polygon = shapely.Polygon(rings[0], rings[1:])
    if not polygon.is_valid:
        return str(shapely.is_valid_reason(polygon))
    return None


class GridLocator:
    """Point → the grid containing it, else the nearest grid and how far away it is."""

    def __init__(self, grids: Iterable[tuple[str, Sequence[Ring]]]) -> None:
        entries = sorted(grids, key=lambda entry: entry[0])
        self._ids = [grid_id for grid_id, _ in entries]
        lons = [lon for _, rings in entries for lon, _ in rings[0]]
        lats = [lat for _, rings in entries for _, lat in rings[0]]
        # The projection's origin: the centre of the grids' bounding box.
        self._lon0 = (min(lons) + max(lons)) / 2 if lons else 0.0
        self._lat0 = (min(lats) + max(lats)) / 2 if lats else 0.0
        self._kx = EARTH_RADIUS_M * math.radians(1) * math.cos(math.radians(self._lat0))
        self._ky = EARTH_RADIUS_M * math.radians(1)
        self._polygons = [
            shapely.Polygon(self._project(rings[0]), [self._project(r) for r in rings[1:]])
            for _, rings in entries
        ]
        self._tree = STRtree(self._polygons)

    def __len__(self) -> int:
        return len(self._ids)

    def _project(self, ring: Ring) -> list[tuple[float, float]]:
        return [self._xy(lat, lon) for lon, lat in ring]

    def _xy(self, lat: float, lon: float) -> tuple[float, float]:
        return ((lon - self._lon0) * self._kx, (lat - self._lat0) * self._ky)

    def locate(self, lat: float, lon: float) -> GridHit | None:
        """The grid containing the point (on a boundary shared by several: the lowest id);
        else the nearest grid, however far, with its distance; None when there are no grids.
        """
        if not self._ids:
            return None
        point = shapely.Point(self._xy(lat, lon))
        inside = sorted(self._ids[i] for i in self._tree.query(point, predicate="intersects"))
        if inside:
            return GridHit(inside[0], 0.0, tuple(inside[1:]))
        indices, distances = self._tree.query_nearest(point, return_distance=True, all_matches=True)
        nearest = sorted(self._ids[i] for i in indices)
        return GridHit(nearest[0], float(distances.min()), tuple(nearest[1:]))
