"""Draw detections on a frame, for the demo's annotated output and for reports."""

from __future__ import annotations

import cv2
import numpy as np

from schemas.detections import Detection

# A fixed palette indexed by class id, so a class keeps its colour across frames.
_PALETTE = np.array(
    [
        (56, 56, 255),
        (151, 157, 255),
        (31, 112, 255),
        (29, 178, 255),
        (49, 210, 207),
        (10, 249, 72),
        (23, 204, 146),
        (134, 219, 61),
        (52, 147, 26),
        (187, 212, 0),
        (168, 153, 44),
        (255, 194, 0),
        (147, 69, 52),
        (255, 115, 100),
        (236, 24, 0),
        (255, 56, 132),
        (133, 0, 82),
        (255, 56, 203),
    ],
    dtype=np.uint8,
)


def class_colour(class_id: int) -> tuple[int, int, int]:
    b, g, r = _PALETTE[class_id % len(_PALETTE)]
    return int(b), int(g), int(r)


def draw_detections(image: np.ndarray, detections: tuple[Detection, ...] | list[Detection]) -> np.ndarray:
    """Return a copy of the BGR ``image`` with a labelled box per detection."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR image of shape (H, W, 3), got {image.shape}")
    canvas = image.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    for detection in detections:
        colour = class_colour(detection.class_id)
        box = detection.box
        top_left = (int(round(box.x1)), int(round(box.y1)))
        cv2.rectangle(canvas, top_left, (int(round(box.x2)), int(round(box.y2))), colour, thickness)
        label = f"{detection.class_name} {detection.score:.2f}"
        (width, height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        label_y = max(top_left[1], height + baseline)
        cv2.rectangle(canvas, (top_left[0], label_y - height - baseline), (top_left[0] + width, label_y), colour, -1)
        cv2.putText(
            canvas,
            label,
            (top_left[0], label_y - baseline),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return canvas


ZONE_COLOUR = (0, 215, 255)  # amber (BGR): apart from the class palette


def draw_zone(image: np.ndarray, points: np.ndarray, name: str | None = None, alpha: float = 0.2) -> np.ndarray:
    """A copy of the BGR ``image`` with the polygon ``points`` ([N,2] pixels) outlined, lightly filled
    and named at its first corner: the alert snapshot shows where the rule looked."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR image of shape (H, W, 3), got {image.shape}")
    polygon = np.round(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int32)
    if len(polygon) < 3:
        raise ValueError(f"a zone needs at least 3 points, got {len(polygon)}")
    filled = image.copy()
    cv2.fillPoly(filled, [polygon], ZONE_COLOUR)
    canvas = cv2.addWeighted(filled, alpha, image, 1.0 - alpha, 0.0)
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    cv2.polylines(canvas, [polygon], True, ZONE_COLOUR, thickness, cv2.LINE_AA)
    if name:
        x, y = int(polygon[0, 0]), int(polygon[0, 1])
        cv2.putText(canvas, name, (x + 4, max(14, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, ZONE_COLOUR, 1, cv2.LINE_AA)
    return canvas
