"""How far a candidate detector agrees with the current one on the same frame (shadow mode).

The current model's detections stand in for ground truth: a candidate box agrees when it has
the same class and IoU >= the threshold with a current box, each box matched at most once,
greedily by IoU (highest first) -- the matching COCO evaluation uses within a class. Precision
is the share of the candidate's boxes that agree, recall the share of the current model's boxes
the candidate found. Two empty frames agree fully.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelledBox:
    class_name: str
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class Agreement:
    matched: int
    current_only: int
    candidate_only: int
    mean_iou: float  # of the matched pairs; 1.0 when nothing was matched because both were empty

    @property
    def precision(self) -> float:
        candidate = self.matched + self.candidate_only
        return self.matched / candidate if candidate else 1.0

    @property
    def recall(self) -> float:
        current = self.matched + self.current_only
        return self.matched / current if current else 1.0


def iou_matrix(first: Sequence[LabelledBox], second: Sequence[LabelledBox]) -> np.ndarray:
    """[len(first), len(second)] intersection over union of every pair."""
    if not first or not second:
        return np.zeros((len(first), len(second)))
    a = np.array([(b.x1, b.y1, b.x2, b.y2) for b in first], dtype=np.float64)
    b = np.array([(b.x1, b.y1, b.x2, b.y2) for b in second], dtype=np.float64)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def agreement(
    current: Sequence[LabelledBox], candidate: Sequence[LabelledBox], iou_threshold: float = 0.5
) -> Agreement:
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    ious = iou_matrix(current, candidate)
    same_class = np.array([[c.class_name == d.class_name for d in candidate] for c in current], dtype=bool)
    ious = np.where(same_class.reshape(ious.shape), ious, 0.0)
    pairs = sorted(
        ((ious[i, j], i, j) for i in range(len(current)) for j in range(len(candidate)) if ious[i, j] >= iou_threshold),
        reverse=True,
    )
    used_current: set[int] = set()
    used_candidate: set[int] = set()
    matched_ious: list[float] = []
    for value, i, j in pairs:
        if i in used_current or j in used_candidate:
            continue
        used_current.add(i)
        used_candidate.add(j)
        matched_ious.append(float(value))
    matched = len(matched_ious)
    both_empty = not current and not candidate
    return Agreement(
        matched=matched,
        current_only=len(current) - matched,
        candidate_only=len(candidate) - matched,
        mean_iou=float(np.mean(matched_ious)) if matched_ious else (1.0 if both_empty else 0.0),
    )
