"""Pluggable detector networks: a small spec says how to feed a network and which decoder reads it.

A detector network is an ONNX graph plus a ``DetectorSpec`` (``detector.json`` beside the
``model.onnx`` of a ``detector`` version, see README "Models: decoders, registry, promotion"):
input name, square input size, layout, channel order, normalisation, resize mode, output names,
decoder and class names. Class names must be COCO names: events carry COCO class ids, so a
network that knows only "person" and "car" is fine, its indices are mapped to COCO's. The
decoder turns ONE image's raw outputs into ``Candidates`` in canvas pixels;
``processors/detector.py`` then runs class-aware NMS and maps boxes to original pixels for
every decoder alike.

Decoders (``DECODERS``):

- ``nanodet``: NanoDet's per-stride sigmoid scores and GFL distance bins (processors/nanodet.py).
- ``yolov8``: the Ultralytics YOLOv8/YOLO11 export, one output [4+C, A] per image (batched
  [N, 4+C, A]): rows 0-3 are box centre x, centre y, width, height in canvas pixels, rows 4..
  the C class scores (already sigmoid, no objectness). Every (anchor, class) above the score
  threshold is a candidate.
- ``centernet``: boxes decoded inside the graph, one output [K, 6] per image (batched [N, K, 6]):
  x1, y1, x2, y2, score, class index; coordinates in canvas pixels, or normalised to [0, 1]
  when the spec says ``"box_units": "normalized"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from processors import nanodet
from processors.nanodet import DEFAULT_MAX_CANDIDATES, Candidates
from schemas.coco import COCO_CLASSES

SPEC_FILE = "detector.json"
LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("BGR", "RGB")
RESIZE_MODES = ("letterbox", "stretch")
BOX_UNITS = ("pixels", "normalized")


class SpecError(ValueError):
    """A detector spec that cannot describe a network; the message names the field."""


@dataclass(frozen=True)
class DetectorSpec:
    decoder: str
    input_name: str
    input_size: int
    output_names: tuple[str, ...]
    layout: str = "NCHW"
    channels: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # per channel, in the network's channel order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "letterbox"
    pad_value: int = 0
    box_units: str = "pixels"  # centernet only
    max_batch: int = 16  # images per network call (a graph that hard-codes batch 1 says 1)
    classes: tuple[str, ...] = COCO_CLASSES  # the network's class index -> name
    _coco_ids: np.ndarray = field(init=False, repr=False, compare=False)
    _scale: np.ndarray = field(init=False, repr=False, compare=False)
    _offset: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("decoder", self.decoder, tuple(DECODERS)),
            ("layout", self.layout, LAYOUTS),
            ("channels", self.channels, CHANNEL_ORDERS),
            ("resize", self.resize, RESIZE_MODES),
            ("box_units", self.box_units, BOX_UNITS),
        ):
            if value not in allowed:
                raise SpecError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if not 16 <= self.input_size <= 4096:
            raise SpecError(f"input_size must be within 16..4096, got {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            raise SpecError(f"mean and std need three values each (std non-zero), got {self.mean} {self.std}")
        if not self.output_names:
            raise SpecError("output_names is empty")
        if not 1 <= self.max_batch <= 16:
            raise SpecError(f"max_batch must be within 1..16, got {self.max_batch}")
        if not self.classes:
            raise SpecError("classes is empty")
        unknown = [name for name in self.classes if name not in COCO_CLASSES]
        if unknown:
            raise SpecError(f"classes {unknown} are not COCO class names (events carry COCO class ids)")
        coco_ids = np.array([COCO_CLASSES.index(name) for name in self.classes], np.int32)
        object.__setattr__(self, "_coco_ids", coco_ids)
        std = np.asarray(self.std, np.float32)
        object.__setattr__(self, "_scale", (1.0 / std).astype(np.float32))
        object.__setattr__(self, "_offset", (np.asarray(self.mean, np.float32) / std).astype(np.float32))

    def to_input_tensor(self, canvas_bgr: np.ndarray) -> np.ndarray:
        """A BGR uint8 [S,S,3] canvas to the float32 tensor of one image, in the spec's layout."""
        size = self.input_size
        if canvas_bgr.shape != (size, size, 3) or canvas_bgr.dtype != np.uint8:
            raise ValueError(f"expected a uint8 [{size},{size},3] canvas, got {canvas_bgr.dtype} {canvas_bgr.shape}")
        pixels = canvas_bgr if self.channels == "BGR" else canvas_bgr[:, :, ::-1]
        tensor = pixels.astype(np.float32) * self._scale - self._offset  # (pixel - mean) / std
        return np.ascontiguousarray(tensor.transpose(2, 0, 1) if self.layout == "NCHW" else tensor)

    def decode(self, outputs: Mapping[str, np.ndarray], score_threshold: float) -> Candidates:
        """One image's outputs to candidates in canvas pixels with COCO class ids."""
        missing = [name for name in self.output_names if name not in outputs]
        if missing:
            raise ValueError(f"{self.decoder} network outputs {missing} are missing (got {sorted(outputs)})")
        found = DECODERS[self.decoder](outputs, self, score_threshold)
        return Candidates(boxes=found.boxes, scores=found.scores, class_ids=self._coco_ids[found.class_ids])

    def to_dict(self) -> dict[str, object]:
        return {
            "decoder": self.decoder,
            "input": {
                "name": self.input_name,
                "size": self.input_size,
                "layout": self.layout,
                "channels": self.channels,
                "mean": list(self.mean),
                "std": list(self.std),
                "resize": self.resize,
                "pad_value": self.pad_value,
            },
            "outputs": list(self.output_names),
            "box_units": self.box_units,
            "max_batch": self.max_batch,
            "classes": "coco" if self.classes == COCO_CLASSES else list(self.classes),
        }


def spec_from_dict(raw: Mapping[str, object], source: str = "detector spec") -> DetectorSpec:
    """A spec from its JSON form (see ``DetectorSpec.to_dict``); SpecError names what is wrong."""
    try:
        entry = dict(raw["input"])  # type: ignore[call-overload]
        classes = raw.get("classes", "coco")
        return DetectorSpec(
            decoder=str(raw["decoder"]),
            input_name=str(entry["name"]),
            input_size=int(entry["size"]),
            output_names=tuple(str(name) for name in raw["outputs"]),  # type: ignore[attr-defined]
            layout=str(entry.get("layout", "NCHW")),
            channels=str(entry.get("channels", "RGB")),
            mean=tuple(float(v) for v in entry.get("mean", (0.0, 0.0, 0.0))),  # type: ignore[arg-type]
            std=tuple(float(v) for v in entry.get("std", (1.0, 1.0, 1.0))),  # type: ignore[arg-type]
            resize=str(entry.get("resize", "letterbox")),
            pad_value=int(entry.get("pad_value", 0)),
            box_units=str(raw.get("box_units", "pixels")),
            max_batch=int(raw.get("max_batch", 16)),  # type: ignore[call-overload]
            classes=COCO_CLASSES if classes == "coco" else tuple(str(c) for c in classes),  # type: ignore[union-attr]
        )
    except SpecError as error:
        raise SpecError(f"{source}: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise SpecError(f"{source}: missing or malformed field {error}") from None


def load_spec(path: Path) -> DetectorSpec:
    """``detector.json`` (or the folder holding it) to a spec."""
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SpecError(f"{path}: {error}") from None
    return spec_from_dict(raw, str(path))


def _decode_nanodet(outputs: Mapping[str, np.ndarray], spec: DetectorSpec, score_threshold: float) -> Candidates:
    if spec.input_size != nanodet.INPUT_SIZE or len(spec.classes) != nanodet.NUM_CLASSES:
        raise ValueError(f"the nanodet decoder needs a {nanodet.INPUT_SIZE} input and {nanodet.NUM_CLASSES} classes")
    return nanodet.decode_outputs(outputs, score_threshold)


def _decode_yolov8(outputs: Mapping[str, np.ndarray], spec: DetectorSpec, score_threshold: float) -> Candidates:
    head = np.asarray(outputs[spec.output_names[0]], dtype=np.float32)
    classes = len(spec.classes)
    if head.ndim != 2 or head.shape[0] != 4 + classes:
        raise ValueError(f"yolov8 output must be [4+{classes}, anchors], got {list(head.shape)}")
    anchor_ids, class_ids = np.nonzero(head[4:].T > score_threshold)
    scores = head[4 + class_ids, anchor_ids]
    cx, cy, w, h = (head[row, anchor_ids] for row in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return _capped(boxes, scores, class_ids)


def _decode_centernet(outputs: Mapping[str, np.ndarray], spec: DetectorSpec, score_threshold: float) -> Candidates:
    rows = np.asarray(outputs[spec.output_names[0]], dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != 6:
        raise ValueError(f"centernet output must be [K, 6], got {list(rows.shape)}")
    class_ids = np.rint(rows[:, 5]).astype(np.int64)
    keep = (rows[:, 4] > score_threshold) & (class_ids >= 0) & (class_ids < len(spec.classes))
    boxes = rows[keep, :4]
    if spec.box_units == "normalized":
        boxes = boxes * np.float32(spec.input_size)
    return _capped(boxes, rows[keep, 4], class_ids[keep])


def _capped(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> Candidates:
    if scores.shape[0] > DEFAULT_MAX_CANDIDATES:
        keep = np.argpartition(-scores, DEFAULT_MAX_CANDIDATES - 1)[:DEFAULT_MAX_CANDIDATES]
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
    return Candidates(
        boxes=np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.ascontiguousarray(scores, dtype=np.float32),
        class_ids=np.ascontiguousarray(class_ids, dtype=np.int32),
    )


Decoder = Callable[[Mapping[str, np.ndarray], DetectorSpec, float], Candidates]
DECODERS: dict[str, Decoder] = {
    "nanodet": _decode_nanodet,
    "yolov8": _decode_yolov8,
    "centernet": _decode_centernet,
}


def split_batch(outputs: Mapping[str, np.ndarray], spec: DetectorSpec, index: int) -> dict[str, np.ndarray]:
    """Image ``index`` of the batched outputs as that image's own outputs."""
    return {name: np.asarray(outputs[name])[index] for name in spec.output_names}


NANODET_SPEC = DetectorSpec(
    decoder="nanodet",
    input_name=nanodet.INPUT_NAME,
    input_size=nanodet.INPUT_SIZE,
    output_names=nanodet.OUTPUT_NAMES,
    channels="BGR",
    mean=tuple(float(v) for v in nanodet.MEAN_BGR),  # type: ignore[arg-type]
    std=tuple(float(v) for v in nanodet.STD_BGR),  # type: ignore[arg-type]
)
