"""Polygon zones: which detections' anchor points lie inside an area of the image.

The geometry is shapely's (GEOS): it names where a polygon crosses itself, and a
point exactly on an edge or a vertex counts as inside, so a zone drawn along the
image border still catches objects standing on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import shapely

from schemas.rules import Anchor, check_polygon


def anchor_points(boxes: npt.ArrayLike, anchor: Anchor) -> npt.NDArray[np.float64]:
    """(N, 4) boxes as x1, y1, x2, y2 -> (N, 2) anchor points as x, y."""
    xyxy = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x = (xyxy[:, 0] + xyxy[:, 2]) / 2.0
    y = xyxy[:, 3] if anchor is Anchor.BOTTOM_CENTER else (xyxy[:, 1] + xyxy[:, 3]) / 2.0
    return np.stack([x, y], axis=1)


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
