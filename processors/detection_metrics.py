"""Detection metrics from pycocotools' COCOeval: mAP, per-class AP, P/R/F1 at a threshold, confusion.

Everything is computed from COCOeval's own outputs: its precision array (AP, PR curves) and its
per-image matches (``evalImgs``: which detection matched which ground truth at IoU 0.5), so the
numbers are COCO's, not a re-implementation. The confusion summary runs COCOeval once more with
``useCats=0`` (class-agnostic matching), so a horse taken for a cow shows up as a match.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from schemas.labels import LabelBox, LabelSet

BACKGROUND = "(background)"
IOU_MATCH = 0.5
SWEEP = np.round(np.arange(0.05, 0.951, 0.05), 2)


@dataclass(frozen=True)
class ScoredBox:
    label: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    ground_truths: int
    ap: float  # AP@[.5:.95]; nan when the class has no ground truth
    ap50: float
    precision: float  # at the score threshold, IoU 0.5
    recall: float
    f1: float
    suggested_threshold: float  # the sweep's F1-best score threshold
    suggested_f1: float
    sweep_f1: tuple[float, ...]  # F1 at each of SWEEP's thresholds


@dataclass(frozen=True)
class Evaluation:
    map: float
    map50: float
    score_threshold: float
    per_class: tuple[ClassMetrics, ...]
    recall_points: np.ndarray  # COCO's 101 recall thresholds
    pr_curves: dict[str, np.ndarray] = field(default_factory=dict)  # class -> precision at IoU 0.5
    confusion_labels: tuple[str, ...] = ()  # rows: truth, columns: prediction; last is background
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))


def coco_ground_truth(labels: LabelSet, classes: tuple[str, ...]) -> dict[str, list[dict[str, object]]]:
    """COCO dataset dict: image ids 1..N in order, category ids 1..K in ``classes`` order."""
    category = {name: index + 1 for index, name in enumerate(classes)}
    images, annotations = [], []
    for image_id, image in enumerate(labels.images, start=1):
        images.append({"id": image_id, "file_name": image.image, "width": image.width, "height": image.height})
        for box in image.boxes:
            annotations.append(_coco_box(box, len(annotations) + 1, image_id, category[box.label]))
    categories = [{"id": category_id, "name": name} for name, category_id in category.items()]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_detections(predictions: list[list[ScoredBox]], classes: tuple[str, ...]) -> list[dict[str, object]]:
    """COCO results list; ``predictions[i]`` belongs to image id i + 1."""
    category = {name: index + 1 for index, name in enumerate(classes)}
    return [
        {**_coco_box(box, 0, image_id, category[box.label]), "score": float(box.score)}
        for image_id, boxes in enumerate(predictions, start=1)
        for box in boxes
    ]


def _coco_box(box: LabelBox | ScoredBox, ann_id: int, image_id: int, category_id: int) -> dict[str, object]:
    width, height = box.x2 - box.x1, box.y2 - box.y1
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "iscrowd": 0,
        "bbox": [box.x1, box.y1, width, height],
        "area": width * height,
    }


def run_cocoeval(gt: dict, dt: list[dict[str, object]], use_cats: bool = True) -> COCOeval:
    """COCOeval, evaluated and accumulated, with pycocotools' chatter kept off stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dt) if dt else COCO()
        if not dt:
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.useCats = int(use_cats)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def evaluate(labels: LabelSet, predictions: list[list[ScoredBox]], score_threshold: float) -> Evaluation:
    """Usage:
    result = evaluate(ground_truth, [[ScoredBox("dog", 0.9, 10, 10, 50, 40)]], score_threshold=0.35)
    result.map, result.map50, result.per_class[0].ap
    """
    if len(predictions) != len(labels.images):
        raise ValueError(f"{len(predictions)} prediction lists for {len(labels.images)} images")
    classes = evaluation_classes(labels, predictions)
    gt, dt = coco_ground_truth(labels, classes), coco_detections(predictions, classes)
    evaluator = run_cocoeval(gt, dt)
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, classes, areas, max dets]
    matches = _matches_by_class(evaluator, len(classes))
    per_class, curves = [], {}
    for k, name in enumerate(classes):
        count = sum(1 for a in gt["annotations"] if a["category_id"] == k + 1)
        if count == 0 and not np.any(matches[k][0] >= score_threshold):
            continue  # neither labelled nor predicted at the serving threshold
        ap, ap50 = _mean_valid(precision[:, :, k, 0, -1]), _mean_valid(precision[0, :, k, 0, -1])
        if count:
            curves[name] = precision[0, :, k, 0, -1]
        p, r, f1 = _prf(*matches[k], count, score_threshold)
        sweep = [(float(t), _prf(*matches[k], count, float(t))[2]) for t in SWEEP]
        best_t, best_f1 = max(sweep, key=lambda item: (item[1], -abs(item[0] - score_threshold)))
        per_class.append(ClassMetrics(name, count, ap, ap50, p, r, f1, best_t, best_f1, tuple(f for _, f in sweep)))
    labels_order, confusion = confusion_matrix(gt, dt, classes, score_threshold)
    return Evaluation(
        map=float(evaluator.stats[0]),
        map50=float(evaluator.stats[1]),
        score_threshold=score_threshold,
        per_class=tuple(per_class),
        recall_points=evaluator.params.recThrs,
        pr_curves=curves,
        confusion_labels=labels_order,
        confusion=confusion,
    )


def evaluation_classes(labels: LabelSet, predictions: list[list[ScoredBox]]) -> tuple[str, ...]:
    """The category order of an evaluation: the labelled classes, then predicted names they lack."""
    extra = sorted({box.label for boxes in predictions for box in boxes} - set(labels.classes))
    return (*labels.classes, *extra)


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float("nan")


def _image_records(evaluator: COCOeval) -> list[dict]:
    """evalImgs entries for the all-areas range at the largest maxDets."""
    return [e for e in evaluator.evalImgs if e is not None and e["aRng"] == evaluator.params.areaRng[0]]


def _matches_by_class(evaluator: COCOeval, num_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per class: (scores, matched-at-IoU-0.5 flags) of its non-ignored detections."""
    t = int(np.argmin(np.abs(evaluator.params.iouThrs - IOU_MATCH)))
    scores: list[list[float]] = [[] for _ in range(num_classes)]
    matched: list[list[bool]] = [[] for _ in range(num_classes)]
    for record in _image_records(evaluator):
        k = record["category_id"] - 1
        for d, score in enumerate(record["dtScores"]):
            if not record["dtIgnore"][t, d]:
                scores[k].append(score)
                matched[k].append(bool(record["dtMatches"][t, d]))
    return [(np.asarray(s, dtype=np.float64), np.asarray(m, dtype=bool)) for s, m in zip(scores, matched, strict=True)]


def _prf(scores: np.ndarray, matched: np.ndarray, ground_truths: int, threshold: float) -> tuple[float, float, float]:
    kept = scores >= threshold
    tp, fp = int(np.sum(matched & kept)), int(np.sum(~matched & kept))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / ground_truths if ground_truths else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def confusion_matrix(
    gt: dict, dt: list[dict[str, object]], classes: tuple[str, ...], score_threshold: float
) -> tuple[tuple[str, ...], np.ndarray]:
    """Counts [truth, prediction] of class-agnostic matches at IoU 0.5 among detections >= threshold.

    The last row counts detections that matched no ground truth, the last column ground truths
    that no detection matched (both labelled BACKGROUND).
    """
    kept = [d for d in dt if float(d["score"]) >= score_threshold]  # type: ignore[arg-type]
    k = len(classes)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    gt_class = {a["id"]: a["category_id"] - 1 for a in gt["annotations"]}
    if kept:
        evaluator = run_cocoeval(gt, kept, use_cats=False)
        t = int(np.argmin(np.abs(evaluator.params.iouThrs - IOU_MATCH)))
        dt_class = {a["id"]: a["category_id"] - 1 for a in evaluator.cocoDt.dataset["annotations"]}
        for record in _image_records(evaluator):
            for d, dt_id in enumerate(record["dtIds"]):
                gt_id = int(record["dtMatches"][t, d])
                matrix[gt_class[gt_id] if gt_id else k, dt_class[dt_id]] += 1
            for g, gt_id in enumerate(record["gtIds"]):
                if not record["gtMatches"][t, g]:
                    matrix[gt_class[gt_id], k] += 1
    else:
        for a in gt["annotations"]:
            matrix[a["category_id"] - 1, k] += 1
    return (*classes, BACKGROUND), matrix
