"""processors.nms: class-aware NMS, checked against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from processors.nms import class_aware_nms


def iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS written the slow, obvious way: by score, drop same-class boxes with IoU > threshold."""
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(class_ids[i] != class_ids[j] or iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(int(i))
    return kept


def random_boxes(rng: np.random.Generator, count: int, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    corner = rng.uniform(0, 300, (count, 2))
    size = rng.uniform(1, 120, (count, 2))
    boxes = np.concatenate([corner, corner + size], axis=1).astype(np.float32)
    # Distinct scores: ties would make the order (and so the result) implementation-defined.
    scores = rng.permutation(count).astype(np.float32) / count + 0.001
    return boxes, scores, rng.integers(0, classes, count).astype(np.int32)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.6, 0.9])
def test_agrees_with_the_reference(seed: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    boxes, scores, class_ids = random_boxes(rng, int(rng.integers(1, 150)), classes=int(rng.integers(1, 5)))
    kept = class_aware_nms(boxes, scores, class_ids, threshold, max_detections=1000)
    assert kept.tolist() == reference_nms(boxes, scores, class_ids, threshold)


BOX = [0, 0, 10, 10]


@pytest.mark.parametrize(
    ("boxes", "scores", "class_ids", "threshold", "max_detections", "expected"),
    [
        ([BOX, [1, 1, 10, 10]], [0.9, 0.8], [0, 0], 0.5, 100, [0]),  # IoU 0.81: suppressed
        ([BOX, [1, 1, 10, 10]], [0.8, 0.9], [0, 0], 0.5, 100, [1]),  # the higher score wins
        ([BOX, [1, 1, 10, 10]], [0.9, 0.8], [0, 1], 0.5, 100, [0, 1]),  # other class: untouched
        ([BOX, [0, 0, 10, 5]], [0.9, 0.8], [0, 0], 0.5, 100, [0, 1]),  # IoU exactly 0.5: kept
        ([BOX, [0, 0, 10, 5]], [0.9, 0.8], [0, 0], 0.49, 100, [0]),
        ([BOX, [20, 20, 30, 30], [40, 40, 50, 50]], [0.5, 0.9, 0.7], [0, 0, 0], 0.5, 2, [1, 2]),
        ([BOX, BOX, BOX], [0.3, 0.2, 0.1], [0, 1, 2], 0.5, 0, []),
        ([BOX, BOX], [0.9, 0.8], [0, 0], 1.0, 100, [0, 1]),  # threshold 1: nothing suppressed
        (np.zeros((0, 4)), [], [], 0.5, 100, []),
    ],
)
def test_table(
    boxes: list[list[float]],
    scores: list[float],
    class_ids: list[int],
    threshold: float,
    max_detections: int,
    expected: list[int],
) -> None:
    kept = class_aware_nms(
        np.array(boxes, np.float32), np.array(scores), np.array(class_ids), threshold, max_detections
    )
    assert kept.dtype == np.int64
    assert kept.tolist() == expected


@pytest.mark.parametrize(
    ("boxes", "scores", "class_ids", "threshold", "max_detections", "message"),
    [
        ([BOX], [0.9, 0.8], [0], 0.5, 10, "differ in length"),
        ([BOX], [0.9], [0, 1], 0.5, 10, "differ in length"),
        ([BOX], [0.9], [0], 1.5, 10, "iou_threshold"),
        ([BOX], [0.9], [0], -0.1, 10, "iou_threshold"),
        ([BOX], [0.9], [0], 0.5, -1, "max_detections"),
    ],
)
def test_bad_arguments(
    boxes: list[list[float]],
    scores: list[float],
    class_ids: list[int],
    threshold: float,
    max_detections: int,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        class_aware_nms(np.array(boxes), np.array(scores), np.array(class_ids), threshold, max_detections)
