"""Tracking accuracy on a synthetic scene with known trajectories: MOTA, IDF1 (motmetrics) and
line-crossing counts against the ground truth.

    scene = default_scene()
    result = evaluate(scene)  # renders, detects with NanoDet in process, tracks with SceneTracker
    print(result.mota, result.idf1, result.crossings, result.expected_crossings)

Real object crops from the bundled photos (tests/data/photos: people, a dog) walk over a
textured background along piecewise-linear paths: across a counting line in both directions,
behind and in front of each other (occlusions), in from and out over the frame's edges. Each
frame is JPEG-encoded and goes through the detect path the Triton model runs (decode,
letterbox, NanoDet, NMS, in process with ONNX Runtime), then through the track stage's
``SceneTracker`` with the worker's default settings. Ground truth is the pasted rectangle,
clipped to the frame, counted while at least ``MIN_VISIBLE`` of it is visible.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from framestream.settings import REPO_ROOT
from processors.scene import CountingLine
from processors.tracking import SceneTracker, TrackerConfig, TrackerState
from schemas.coco import COCO_CLASSES
from schemas.detections import BoundingBox, Detection, FrameDetections
from schemas.rules import RuleSet

PHOTOS = REPO_ROOT / "tests" / "data" / "photos"
MODEL_PATH = REPO_ROOT / "triton_models" / "nanodet" / "1" / "model.onnx"
MIN_VISIBLE = 0.5  # a ground-truth object counts on frames where this much of its box is visible
MATCH_IOU = 0.5  # motmetrics: a track and a truth box match at IoU >= this
START = datetime(2025, 6, 1, 8, 0, 0, tzinfo=UTC)

# Crops of the bundled photos, x1 y1 x2 y2 in the photo's pixels (NanoDet's boxes on them).
CROPS = {
    "woman": ("person.jpg", "person", (188, 99, 275, 372)),
    "dog": ("dog.jpg", "dog", (130, 208, 336, 542)),
    "walker": ("kite.jpg", "person", (213, 699, 273, 857)),
    "boy": ("kite.jpg", "person", (113, 606, 166, 765)),
}


@dataclass(frozen=True)
class Walker:
    """One object: a crop scaled to ``height`` pixels, its bottom centre moving through ``path``
    (frame, x, y) waypoints, drawn over the walkers of lower ``z``."""

    name: str
    crop: str
    height: int
    path: tuple[tuple[int, float, float], ...]
    z: int

    def position(self, frame: int) -> tuple[float, float] | None:
        first, last = self.path[0][0], self.path[-1][0]
        if not first <= frame <= last:
            return None
        for (f0, x0, y0), (f1, x1, y1) in zip(self.path, self.path[1:], strict=False):
            if f0 <= frame <= f1:
                t = 0.0 if f1 == f0 else (frame - f0) / (f1 - f0)
                return x0 + t * (x1 - x0), y0 + t * (y1 - y0)
        return self.path[-1][1], self.path[-1][2]


@dataclass(frozen=True)
class Scene:
    walkers: tuple[Walker, ...]
    frames: int
    width: int = 640
    height: int = 480
    fps: float = 10.0
    line: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.55), (1.0, 0.55))  # normalized, 'mid'


def default_scene() -> Scene:
    """Five objects over 12 s at 10 fps; the line 'mid' is at y = 264 (drawn left to right: 'in' = down)."""
    return Scene(
        walkers=(
            Walker("woman-down", "woman", 190, ((0, 150, 170), (85, 175, 560)), z=1),  # in, then out of the bottom
            Walker("walker-up", "walker", 180, ((10, 480, 475), (100, 455, 190)), z=3),  # out
            Walker("dog-across", "dog", 130, ((20, -80, 405), (119, 720, 405)), z=4),  # passes in front of woman
            Walker("boy-across", "boy", 170, ((35, 700, 330), (119, -60, 330)), z=2),  # passes behind walker
            Walker("boy-back", "boy", 160, ((0, 330, 200), (45, 325, 345), (95, 335, 200)), z=0),  # in, then out
        ),
        frames=120,
    )


@dataclass
class TrackingResult:
    mota: float
    idf1: float
    id_switches: int
    frames: int
    truth_objects: int
    tracks: int
    crossings: dict[str, int]  # "in" / "out" -> tracked crossings of 'mid'
    expected_crossings: dict[str, int]
    details: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "mota": round(self.mota, 4),
            "idf1": round(self.idf1, 4),
            "id_switches": self.id_switches,
            "frames": self.frames,
            "truth_objects": self.truth_objects,
            "tracks": self.tracks,
            "crossings": self.crossings,
            "expected_crossings": self.expected_crossings,
            **{key: round(value, 4) for key, value in self.details.items()},
        }


def load_crops() -> dict[str, tuple[str, np.ndarray]]:
    crops = {}
    for name, (photo, class_name, (x1, y1, x2, y2)) in CROPS.items():
        image = cv2.imread(str(PHOTOS / photo))
        if image is None:
            raise FileNotFoundError(PHOTOS / photo)
        crops[name] = (class_name, image[y1:y2, x1:x2].copy())
    return crops


def background(width: int, height: int) -> np.ndarray:
    """A fixed pavement-like texture: smooth gradient plus blurred noise (seeded)."""
    rng = np.random.default_rng(7)
    noise = cv2.GaussianBlur(rng.normal(0, 18, (height, width)).astype(np.float32), (0, 0), 3)
    ramp = np.linspace(150, 110, height, dtype=np.float32)[:, None]
    grey = np.clip(ramp + noise, 0, 255).astype(np.uint8)
    return cv2.merge([grey, (grey * 0.97).astype(np.uint8), (grey * 0.92).astype(np.uint8)])


@dataclass(frozen=True)
class Placed:
    walker: Walker
    box: tuple[int, int, int, int]  # unclipped x1 y1 x2 y2


def render(scene: Scene, crops: dict[str, tuple[str, np.ndarray]], frame: int, base: np.ndarray) -> tuple[
    np.ndarray, list[tuple[str, tuple[float, float, float, float]]]
]:  # fmt: skip
    """The frame's image and its ground truth: (walker name, visible box) of objects visible enough."""
    image = base.copy()
    placed = []
    for walker in sorted(scene.walkers, key=lambda w: w.z):
        position = walker.position(frame)
        if position is None:
            continue
        _, crop = crops[walker.crop]
        width = max(1, round(crop.shape[1] * walker.height / crop.shape[0]))
        x1, y2 = round(position[0] - width / 2), round(position[1])
        box = (x1, y2 - walker.height, x1 + width, y2)
        _paste(image, cv2.resize(crop, (width, walker.height), interpolation=cv2.INTER_AREA), box)
        placed.append(Placed(walker, box))
    return image, _visible_truth(placed, scene.width, scene.height)


def _paste(image: np.ndarray, sprite: np.ndarray, box: tuple[int, int, int, int]) -> None:
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    if cx1 < cx2 and cy1 < cy2:
        image[cy1:cy2, cx1:cx2] = sprite[cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1]


def _visible_truth(
    placed: list[Placed], width: int, height: int
) -> list[tuple[str, tuple[float, float, float, float]]]:
    truth = []
    for index, item in enumerate(placed):  # placed is in z order: later ones cover earlier ones
        mask = np.zeros((height, width), dtype=bool)
        x1, y1, x2, y2 = item.box
        cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
        if cx1 >= cx2 or cy1 >= cy2:
            continue
        mask[cy1:cy2, cx1:cx2] = True
        for above in placed[index + 1 :]:
            ax1, ay1, ax2, ay2 = above.box
            mask[max(0, ay1) : max(0, ay2), max(0, ax1) : max(0, ax2)] = False
        if mask.sum() >= MIN_VISIBLE * (x2 - x1) * (y2 - y1):
            truth.append((item.walker.name, (float(cx1), float(cy1), float(cx2), float(cy2))))
    return truth


def expected_crossings(scene: Scene) -> dict[str, int]:
    """Crossings of the ground-truth paths (bottom centres, every frame the object is in the scene)."""
    line = CountingLine("mid", *scene.line, normalized=True)
    counts: Counter[str] = Counter()
    for walker in scene.walkers:
        previous = None
        for frame in range(scene.frames):
            position = walker.position(frame)
            if position is None:
                continue
            if previous is not None and (direction := line.crossing(previous, position, scene.width, scene.height)):
                counts[direction.value] += 1
            if line.side(position, scene.width, scene.height) != 0:
                previous = position
    return {"in": counts["in"], "out": counts["out"]}


def nanodet_detector() -> Callable[[bytes], list[tuple[int, float, tuple[float, float, float, float]]]]:
    """The detect path of the Triton model, in process: JPEG bytes -> (class id, score, box)."""
    import onnxruntime as ort

    from processors.detector import Thresholds, detect_batch
    from processors.nanodet import INPUT_NAME, OUTPUT_NAMES

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(MODEL_PATH), options, providers=["CPUExecutionProvider"])

    def infer(batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch}), strict=True))

    def detect(jpeg: bytes) -> list[tuple[int, float, tuple[float, float, float, float]]]:
        (found,) = detect_batch([jpeg], infer, [Thresholds()])
        if isinstance(found, Exception):
            raise found
        return [
            (int(c), float(s), tuple(float(v) for v in b))
            for b, s, c in zip(found.boxes, found.scores, found.class_ids, strict=True)
        ]

    return detect


def frame_detections(
    camera_id: str, seq: int, captured_at: datetime, width: int, height: int, found: Sequence
) -> FrameDetections:
    return FrameDetections(
        event_id=f"{camera_id}:{seq}",
        camera_id=camera_id,
        frame_seq=seq,
        captured_at=captured_at,
        detected_at=captured_at,
        width=width,
        height=height,
        model_name="nanodet",
        model_version="1",
        detections=tuple(
            Detection(
                detection_id=f"{camera_id}:{seq}:{index}",
                class_id=class_id,
                class_name=COCO_CLASSES[class_id],
                score=score,
                box=BoundingBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3]),
            )
            for index, (class_id, score, box) in enumerate(found)
        ),
    )


def scene_rules(scene: Scene) -> RuleSet:
    start, end = scene.line
    return RuleSet.model_validate({"rules": [], "lines": [{"name": "mid", "start": start, "end": end}]})


def evaluate(scene: Scene | None = None, config: TrackerConfig | None = None) -> TrackingResult:
    """Render, detect, track and score the scene; see the module doc."""
    import motmetrics as mm

    scene = scene or default_scene()
    crops, base = load_crops(), background(scene.width, scene.height)
    tracker = SceneTracker(scene_rules(scene), config or TrackerConfig(frame_rate=scene.fps))
    detect = nanodet_detector()
    accumulator = mm.MOTAccumulator(auto_id=True)
    state: TrackerState | None = None
    crossings: Counter[str] = Counter()
    track_ids: set[str] = set()
    names: dict[str, int] = {}
    numbers: dict[str | None, int] = {}
    for seq in range(scene.frames):
        image, truth = render(scene, crops, seq, base)
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        captured_at = START + timedelta(seconds=seq / scene.fps)
        frame = frame_detections("synthetic", seq, captured_at, scene.width, scene.height, detect(jpeg))
        step = tracker.update(frame, state, tracked_at=captured_at)
        state = step.state
        assert step.tracks is not None
        tracked = [obj for obj in step.tracks.objects if obj.track_id is not None]
        track_ids.update(obj.track_id for obj in tracked)
        crossings.update(crossing.direction.value for crossing in step.tracks.crossings)
        distances = iou_distances(
            [box for _, box in truth], [(o.box.x1, o.box.y1, o.box.x2, o.box.y2) for o in tracked]
        )
        # motmetrics stores ids as floats: number the names and the track ids
        truth_ids = [names.setdefault(name, len(names)) for name, _ in truth]
        accumulator.update(truth_ids, [numbers.setdefault(o.track_id, len(numbers)) for o in tracked], distances)
    summary = mm.metrics.create().compute(
        accumulator,
        metrics=["mota", "idf1", "num_switches", "motp", "num_misses", "num_false_positives", "num_objects"],
        name="scene",
    )
    row = summary.loc["scene"]
    return TrackingResult(
        mota=float(row["mota"]),
        idf1=float(row["idf1"]),
        id_switches=int(row["num_switches"]),
        frames=scene.frames,
        truth_objects=len(scene.walkers),
        tracks=len(track_ids),
        crossings={"in": crossings["in"], "out": crossings["out"]},
        expected_crossings=expected_crossings(scene),
        details={
            "misses": float(row["num_misses"]),
            "false_positives": float(row["num_false_positives"]),
            "truth_boxes": float(row["num_objects"]),
            "motp_iou_distance": float(row["motp"]),
        },
    )


def iou_distances(truth: Sequence[Sequence[float]], tracked: Sequence[Sequence[float]]) -> np.ndarray:
    """1 - IoU of x1 y1 x2 y2 boxes, NaN (no match) below ``MATCH_IOU``: what motmetrics'
    ``iou_matrix`` returns, which 1.4.0 computes with ``np.asfarray`` (gone in numpy 2)."""
    a = np.asarray(truth, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(tracked, dtype=np.float64).reshape(-1, 4)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    union = (
        (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    )
    distance = 1.0 - np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    distance[distance > 1.0 - MATCH_IOU] = np.nan
    return distance


def main(argv: list[str], settings: object) -> int:
    """``framestream bench tracking [--json] [--write-frames DIR]``."""
    parser = argparse.ArgumentParser(prog="framestream bench tracking", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--write-frames", default=None, help="folder to write the rendered frames to (PNG)")
    args = parser.parse_args(argv)
    if args.write_frames:
        write_frames(args.write_frames)
    result = evaluate()
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(
            f"synthetic scene: {result.frames} frames, {result.truth_objects} objects, {result.tracks} track ids\n"
            f"MOTA {result.mota:.3f}  IDF1 {result.idf1:.3f}  ID switches {result.id_switches}\n"
            f"line 'mid': in {result.crossings['in']} (expected {result.expected_crossings['in']}), "
            f"out {result.crossings['out']} (expected {result.expected_crossings['out']})"
        )
    return 0


def write_frames(folder: str) -> None:
    from pathlib import Path

    scene, out = default_scene(), Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    crops, base = load_crops(), background(scene.width, scene.height)
    for seq in range(scene.frames):
        image, _ = render(scene, crops, seq, base)
        cv2.imwrite(str(out / f"{seq:04d}.png"), image)
