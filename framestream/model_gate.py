"""The accuracy gate of ``framestream model promote``: candidate vs current on a labelled set.

Both versions run in this process with the code the served model runs (processors/detector.py
around each version's own ONNX file and spec, ONNX Runtime on the CPU), on the deployment's
labelled set, scored by pycocotools as ``framestream eval`` does (processors/detection_metrics.py,
detections above --min-score 0.05 so AP sees the whole ranking). The candidate passes when its
metric beats the current model's by at least the margin. Evaluating outside Triton is deliberate:
a candidate that has not passed never answers a live request (Triton routes unversioned requests
to the highest loaded version, so loading it beside the current one would put it in the stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framestream.registry import ModelRegistry, Network, RegistryError

METRICS = ("map", "map50")
MIN_SCORE = 0.05


@dataclass(frozen=True)
class GateResult:
    metric: str
    margin: float
    current: int
    candidate: int
    current_score: float
    candidate_score: float
    images: int

    @property
    def passed(self) -> bool:
        return self.candidate_score >= self.current_score + self.margin

    def summary(self) -> str:
        verdict = "passes" if self.passed else "fails"
        return (
            f"gate {verdict}: {self.metric} on {self.images} labelled images: candidate v{self.candidate} "
            f"{self.candidate_score:.4f} vs current v{self.current} {self.current_score:.4f} "
            f"(needs >= current + {self.margin:.4f} = {self.current_score + self.margin:.4f})"
        )

    def as_record(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "margin": self.margin,
            "current_score": round(self.current_score, 4),
            "candidate_score": round(self.candidate_score, 4),
            "images": self.images,
        }


@dataclass(frozen=True)
class LabelledSet:
    labels: object  # schemas.labels.LabelSet
    images: list[bytes]

    @classmethod
    def read(cls, dataset: Path, label_format: str) -> LabelledSet:
        from framestream.commands.eval import read_images
        from framestream.labels import read_labels

        labels = read_labels(dataset, label_format)
        return cls(labels, read_images(labels, str(dataset)))


def score(
    network: Network, labelled: LabelledSet, metric: str, score_threshold: float = 0.35, iou: float = 0.6
) -> float:
    """``metric`` (mAP@[.5:.95] or mAP@.5) of one network on the labelled set; nan scores as 0."""
    from processors.detection_metrics import evaluate

    value = getattr(evaluate(labelled.labels, predict(network, labelled.images, iou), score_threshold), metric)  # type: ignore[arg-type]
    return 0.0 if np.isnan(value) else float(value)


def predict(network: Network, images: list[bytes], iou: float = 0.6) -> list[list[object]]:
    import onnxruntime as ort

    from processors.decode import DecodeError
    from processors.detection_metrics import ScoredBox
    from processors.detector import Thresholds, detect_batch
    from schemas.coco import class_name

    session = ort.InferenceSession(str(network.onnx), providers=["CPUExecutionProvider"])
    names = list(network.spec.output_names)

    def infer(batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {network.spec.input_name: batch}), strict=True))

    predictions: list[list[object]] = []
    thresholds = [Thresholds(MIN_SCORE, iou)] * len(images)
    for index, found in enumerate(detect_batch(images, infer, thresholds, spec=network.spec, max_batch=4)):
        if isinstance(found, DecodeError):
            raise RegistryError(f"labelled image {index} does not decode: {found}")
        predictions.append(
            [
                ScoredBox(class_name(int(c)), float(s), *(float(v) for v in box))
                for box, s, c in zip(found.boxes, found.scores, found.class_ids, strict=True)
            ]
        )
    return predictions


def gate(
    registry: ModelRegistry,
    name: str,
    candidate: int,
    labelled: LabelledSet,
    metric: str = "map",
    margin: float = 0.01,
    current: int | None = None,
) -> GateResult:
    if metric not in METRICS:
        raise RegistryError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    current = registry.served(name) if current is None else current
    return GateResult(
        metric=metric,
        margin=margin,
        current=current,
        candidate=candidate,
        current_score=score(registry.network(name, current), labelled, metric),
        candidate_score=score(registry.network(name, candidate), labelled, metric),
        images=len(labelled.images),
    )
