"""Detection metrics on synthetic sets: perfect predictions score 1, shifted ones near 0, and the
numbers equal pycocotools run by hand on the same files."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from processors.detection_metrics import (
    BACKGROUND,
    ScoredBox,
    coco_detections,
    coco_ground_truth,
    evaluate,
)
from schemas.labels import LabelSet

CLASSES = ("person", "car", "dog")


def synthetic_set(seed: int = 0, images: int = 12) -> LabelSet:
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(images):
        boxes = []
        for _ in range(int(rng.integers(1, 6))):
            x1, y1 = rng.uniform(0, 400, 2)
            w, h = rng.uniform(20, 200, 2)
            boxes.append(
                {
                    "label": str(rng.choice(CLASSES)),
                    "x1": x1,
                    "y1": y1,
                    "x2": min(x1 + w, 640.0),
                    "y2": min(y1 + h, 480.0),
                }
            )
        rows.append({"image": f"img{index}.jpg", "width": 640, "height": 480, "boxes": boxes})
    return LabelSet(classes=CLASSES, images=tuple(rows))


def as_predictions(labels: LabelSet, shift: float = 0.0, score: float = 0.9) -> list[list[ScoredBox]]:
    """Each ground-truth box as a detection, moved right and down by ``shift`` times its size."""
    return [
        [
            ScoredBox(
                b.label,
                score,
                b.x1 + shift * (b.x2 - b.x1),
                b.y1 + shift * (b.y2 - b.y1),
                b.x2 + shift * (b.x2 - b.x1),
                b.y2 + shift * (b.y2 - b.y1),
            )
            for b in image.boxes
        ]
        for image in labels.images
    ]


def test_ground_truth_against_itself_scores_one() -> None:
    labels = synthetic_set()
    result = evaluate(labels, as_predictions(labels), score_threshold=0.35)
    assert result.map == pytest.approx(1.0) and result.map50 == pytest.approx(1.0)
    for metrics in result.per_class:
        assert (metrics.ap, metrics.ap50, metrics.precision, metrics.recall, metrics.f1) == pytest.approx((1,) * 5)
    k = len(CLASSES)
    assert np.array_equal(result.confusion[:k, :k], np.diag(np.diag(result.confusion[:k, :k])))
    assert result.confusion[:, k].sum() == 0 and result.confusion[k, :].sum() == 0


def test_boxes_shifted_by_half_their_size_score_near_zero() -> None:
    labels = synthetic_set()
    result = evaluate(labels, as_predictions(labels, shift=0.5), score_threshold=0.35)
    # IoU of a box with itself shifted by half its width and height is 1/7: no match at any COCO IoU.
    assert result.map < 0.02 and result.map50 < 0.02
    assert all(m.recall == 0.0 for m in result.per_class)


def test_scores_below_the_threshold_do_not_count_for_precision_and_recall() -> None:
    labels = synthetic_set()
    result = evaluate(labels, as_predictions(labels, score=0.2), score_threshold=0.35)
    assert result.map == pytest.approx(1.0)  # AP ranks by score, whatever the threshold
    assert all(m.recall == 0.0 and m.suggested_threshold <= 0.2 for m in result.per_class)


def test_a_class_taken_for_another_shows_in_the_confusion() -> None:
    labels = synthetic_set()
    predictions = [
        [ScoredBox("cow" if b.label == "dog" else b.label, b.score, b.x1, b.y1, b.x2, b.y2) for b in boxes]
        for boxes in as_predictions(labels)
    ]
    result = evaluate(labels, predictions, score_threshold=0.35)
    names = list(result.confusion_labels)
    assert names[-1] == BACKGROUND and "cow" in names
    dogs = sum(1 for image in labels.images for b in image.boxes if b.label == "dog")
    assert result.confusion[names.index("dog"), names.index("cow")] == dogs
    per_class = {m.name: m for m in result.per_class}
    assert per_class["dog"].recall == 0.0 and per_class["cow"].ground_truths == 0


@pytest.mark.parametrize(("seed", "shift", "drop"), [(1, 0.1, 0.0), (2, 0.2, 0.3), (3, 0.05, 0.5)])
def test_numbers_match_pycocotools_run_directly_on_the_files(
    seed: int, shift: float, drop: float, tmp_path: Path
) -> None:
    labels = synthetic_set(seed)
    rng = np.random.default_rng(seed)
    predictions = [
        [
            ScoredBox(b.label, float(rng.uniform(0.05, 1.0)), b.x1, b.y1, b.x2, b.y2)
            for b in boxes
            if rng.uniform() >= drop
        ]
        for boxes in as_predictions(labels, shift)
    ]
    ours = evaluate(labels, predictions, score_threshold=0.35)

    (tmp_path / "gt.json").write_text(json.dumps(coco_ground_truth(labels, CLASSES)))
    (tmp_path / "dt.json").write_text(json.dumps(coco_detections(predictions, CLASSES)))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "gt.json"))
        direct = COCOeval(coco_gt, coco_gt.loadRes(str(tmp_path / "dt.json")), "bbox")
        direct.evaluate()
        direct.accumulate()
        direct.summarize()
    assert ours.map == pytest.approx(direct.stats[0]) and ours.map50 == pytest.approx(direct.stats[1])
    for metrics in ours.per_class:
        direct.params.catIds = [CLASSES.index(metrics.name) + 1]
        with contextlib.redirect_stdout(io.StringIO()):
            direct.evaluate()
            direct.accumulate()
            direct.summarize()
        assert metrics.ap == pytest.approx(direct.stats[0]) or (math.isnan(metrics.ap) and direct.stats[0] == -1)
        assert metrics.ap50 == pytest.approx(direct.stats[1]) or (math.isnan(metrics.ap50) and direct.stats[1] == -1)


def test_prediction_lists_must_match_the_images() -> None:
    with pytest.raises(ValueError, match="1 prediction lists for 12 images"):
        evaluate(synthetic_set(), [[]], score_threshold=0.35)
