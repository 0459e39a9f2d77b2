"""Which frames are worth labelling, and why: a pure, deterministic selector with a per-camera memory.

Usage:
    selector = HardExampleSelector(score_threshold=0.35)
    kept = selector.update(FrameObservation("cam-1", 12.5, ("dog",), np.array([0.38]), np.array([[0, 0, 9, 9]])))
    # -> (Selected(HardExampleReason.UNCERTAIN, "dog 0.380 within 0.1 of threshold 0.35"),)

Reasons: ``uncertain`` (a score within ``uncertain_band`` of the serving threshold), ``confused``
(boxes of different classes overlapping at IoU >= ``confused_iou``: class-aware NMS keeps both,
the model could not decide), ``rare_class`` (a class making up less than ``rare_fraction`` of the
camera's last ``rare_window`` detections, once ``rare_min_history`` were seen), ``drifting_camera``
and ``reviewed_false`` (flags the caller passes in). Each (camera, reason) keeps at most one frame per
``min_interval_s`` of capture time, so a busy camera cannot flood storage; the same input sequence
always selects the same frames.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from schemas.hard_examples import HardExampleReason

RECENT_KEPT = 64  # capture times remembered per (camera, reason) for the rate limit


@dataclass(frozen=True)
class FrameObservation:
    """One frame as the selector sees it: boxes (N, 4) x1 y1 x2 y2 with their class names and scores.

    ``reviewed_false``: the frame comes back because an alert on it was reviewed as false; it was
    counted when its detections first came by, so it does not count towards the class history again.
    """

    camera_id: str
    captured_s: float
    class_names: tuple[str, ...]
    scores: np.ndarray
    boxes: np.ndarray
    drifting: bool = False
    reviewed_false: bool = False

    def __post_init__(self) -> None:
        count = len(self.class_names)
        if np.shape(self.scores) != (count,) or np.shape(self.boxes) not in ((count, 4), (0,)):
            shapes = f"{np.shape(self.scores)} and {np.shape(self.boxes)}"
            raise ValueError(f"expected {count} scores and ({count}, 4) boxes, got {shapes}")


@dataclass(frozen=True)
class Selected:
    reason: HardExampleReason
    detail: str


@dataclass
class _CameraMemory:
    classes: deque[str]
    counts: Counter[str] = field(default_factory=Counter)
    kept: dict[HardExampleReason, deque[float]] = field(default_factory=dict)


class HardExampleSelector:
    def __init__(
        self,
        score_threshold: float,
        *,
        uncertain_band: float = 0.1,
        confused_iou: float = 0.5,
        rare_fraction: float = 0.02,
        rare_window: int = 1000,
        rare_min_history: int = 200,
        min_interval_s: float = 60.0,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be within [0, 1], got {score_threshold}")
        if not 0.0 <= uncertain_band <= 1.0:
            raise ValueError(f"uncertain_band must be within [0, 1], got {uncertain_band}")
        if not 0.0 < confused_iou <= 1.0:
            raise ValueError(f"confused_iou must be within (0, 1], got {confused_iou}")
        if not 0.0 <= rare_fraction < 1.0:
            raise ValueError(f"rare_fraction must be within [0, 1), got {rare_fraction}")
        if rare_window < 1 or not 0 <= rare_min_history <= rare_window:
            raise ValueError(
                f"need rare_window >= 1 and 0 <= rare_min_history <= rare_window, got {rare_window}, {rare_min_history}"
            )
        if min_interval_s < 0:
            raise ValueError(f"min_interval_s must be >= 0, got {min_interval_s}")
        self.score_threshold = score_threshold
        self.uncertain_band = uncertain_band
        self.confused_iou = confused_iou
        self.rare_fraction = rare_fraction
        self.rare_window = rare_window
        self.rare_min_history = rare_min_history
        self.min_interval_s = min_interval_s
        self._cameras: dict[str, _CameraMemory] = {}

    def update(self, frame: FrameObservation) -> tuple[Selected, ...]:
        """The reasons to keep this frame, each one passing its (camera, reason) rate limit."""
        memory = self._cameras.setdefault(frame.camera_id, _CameraMemory(deque(maxlen=self.rare_window)))
        if frame.reviewed_false:
            found = [Selected(HardExampleReason.REVIEWED_FALSE, "an alert on this frame was reviewed as false")]
        else:
            found = self._reasons(frame, memory)
            self._remember_classes(memory, frame.class_names)
        return tuple(selected for selected in found if self._admit(memory, selected.reason, frame.captured_s))

    def _reasons(self, frame: FrameObservation, memory: _CameraMemory) -> list[Selected]:
        found = []
        checks = (
            (HardExampleReason.UNCERTAIN, self._uncertain),
            (HardExampleReason.CONFUSED, self._confused),
            (HardExampleReason.RARE_CLASS, self._rare),
        )
        for reason, check in checks:
            detail = check(frame, memory)
            if detail:
                found.append(Selected(reason, detail))
        if frame.drifting:
            found.append(Selected(HardExampleReason.DRIFTING_CAMERA, "the camera's input drifts"))
        return found

    def _uncertain(self, frame: FrameObservation, memory: _CameraMemory) -> str:
        if not frame.class_names:
            return ""
        distance = np.abs(frame.scores - self.score_threshold)
        index = int(np.argmin(distance))
        if distance[index] > self.uncertain_band + 1e-9:  # the band's edge is in it
            return ""
        return (
            f"{frame.class_names[index]} {frame.scores[index]:.3f} within {self.uncertain_band:g} "
            f"of threshold {self.score_threshold:g}"
        )

    def _confused(self, frame: FrameObservation, memory: _CameraMemory) -> str:
        if len(frame.class_names) < 2:
            return ""
        iou = pairwise_iou(np.asarray(frame.boxes, dtype=np.float64))
        names = np.asarray(frame.class_names)
        different = names[:, None] != names[None, :]
        candidates = np.triu(different & (iou >= self.confused_iou), k=1)
        if not candidates.any():
            return ""
        first, second = (int(i) for i in np.argwhere(candidates)[0])
        return f"{names[first]} and {names[second]} overlap at IoU {iou[first, second]:.2f}"

    def _rare(self, frame: FrameObservation, memory: _CameraMemory) -> str:
        seen = len(memory.classes)
        if seen == 0 or seen < self.rare_min_history:
            return ""
        for name in sorted(set(frame.class_names)):
            share = memory.counts[name] / seen
            if share < self.rare_fraction:
                return f"{name}: {share:.1%} of the camera's last {seen} detections"
        return ""

    def _remember_classes(self, memory: _CameraMemory, names: Sequence[str]) -> None:
        for name in names:
            if len(memory.classes) == memory.classes.maxlen:
                dropped = memory.classes[0]
                memory.counts[dropped] -= 1
            memory.classes.append(name)
            memory.counts[name] += 1

    def _admit(self, memory: _CameraMemory, reason: HardExampleReason, captured_s: float) -> bool:
        """At most one frame per ``min_interval_s`` of capture time, measured both ways: reviews
        and replays can bring frames older than the last one kept."""
        kept = memory.kept.setdefault(reason, deque(maxlen=RECENT_KEPT))
        if any(abs(captured_s - previous) < self.min_interval_s for previous in kept):
            return False
        kept.append(captured_s)
        return True


def pairwise_iou(boxes: np.ndarray) -> np.ndarray:
    """IoU of every pair of (N, 4) x1 y1 x2 y2 boxes; 0 where a box has no area."""
    if boxes.size == 0:
        return np.zeros((0, 0))
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area[:, None] + area[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
