"""Polygon zones: which detections' anchor points lie inside an area of the image.

The geometry is shapely's (GEOS): it names where a polygon crosses itself, and a
point exactly on an edge or a vertex counts as inside, so a zone drawn along the
image border still catches objects standing on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum

import numpy as np
import numpy.typing as npt
import shapely


class Anchor(str, Enum):
    """The point of a box that must lie in the zone."""

    BOTTOM_CENTER = "bottom_center"  # where a person stands or a wheel touches the ground
    CENTER = "center"


def anchor_points(boxes: npt.ArrayLike, anchor: Anchor) -> npt.NDArray[np.float64]:
    """(N, 4) boxes as x1, y1, x2, y2 -> (N, 2) anchor points as x, y."""
    xyxy = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x = (xyxy[:, 0] + xyxy[:, 2]) / 2.0
    y = xyxy[:, 3] if anchor is Anchor.BOTTOM_CENTER else (xyxy[:, 1] + xyxy[:, 3]) / 2.0
    return np.stack([x, y], axis=1)


def check_polygon(points: Sequence[Sequence[float]], *, normalized: bool) -> None:
    """Raise ``ValueError`` saying what is wrong with a zone polygon, if anything."""
    if any(len(point) != 2 for point in points):
        raise ValueError("every point must be a pair [x, y]")
    if not all(math.isfinite(value) for point in points for value in point):
        raise ValueError("coordinates must be finite numbers")
    _check_range(points, normalized=normalized)
    if len({(float(x), float(y)) for x, y in points}) < 3:
        raise ValueError("a polygon needs at least 3 distinct points")
    polygon = shapely.Polygon(points)
    # Collinear points make a zero-area hull; GEOS would call that a self-intersection.
    if polygon.convex_hull.area == 0.0:
        raise ValueError("polygon is degenerate: its points are collinear (zero area)")
    if not polygon.is_valid:
        reason = shapely.is_valid_reason(polygon).replace("[", " at [", 1)
        raise ValueError(f"polygon is not simple: {reason} (edges may only meet at shared corners)")


def _check_range(points: Sequence[Sequence[float]], *, normalized: bool) -> None:
    values = [value for point in points for value in point]
    if normalized and not all(0.0 <= value <= 1.0 for value in values):
        raise ValueError(
            "normalized coordinates must lie in [0, 1] (fractions of width and height); "
            "for pixel coordinates set normalized: false"
        )
    if not normalized and min(values) < 0.0:
        raise ValueError("pixel coordinates must be >= 0")


class PolygonZone:
    """A polygon in pixels or in fractions of the frame, tested against box anchors."""

    def __init__(
        self,
        points: Sequence[Sequence[float]],
        *,
        normalized: bool,
        anchor: Anchor = Anchor.BOTTOM_CENTER,
    ) -> None:
        check_polygon(points, normalized=normalized)
        self.normalized = normalized
        self.anchor = anchor
        self._polygon = shapely.Polygon(points)
        shapely.prepare(self._polygon)  # builds the spatial index once, not per query

    def contains(self, boxes: npt.ArrayLike, width: int, height: int) -> npt.NDArray[np.bool_]:
        """For (N, 4) pixel boxes of a ``width`` x ``height`` frame: is each anchor in the zone?"""
        if width < 1 or height < 1:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        points = anchor_points(boxes, self.anchor)
        if self.normalized:
            points = points / np.array([width, height], dtype=np.float64)
        return np.asarray(shapely.intersects_xy(self._polygon, points[:, 0], points[:, 1]), dtype=bool)
