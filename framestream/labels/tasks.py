"""The labelling round trip: hard examples out as a labelling task, corrected labels back as an eval set.

Usage:
    summary = export_task(client, since=timedelta(hours=24), camera=None, fmt="cvat", out=Path("task"), fetch=get)
    imported = import_eval_set(Path("task/annotations.xml"), "cvat", "cam-1", data_dir / "eval-sets")
    # -> data_dir/eval-sets/cam-1/annotations.json (COCO) and images/, for `framestream eval --format coco`

The task's boxes are the model's own detections (pre-annotations, clipped to the image; boxes with
no area dropped), its label list every COCO class, so an annotator can name what the model missed.
Images are referenced where they are local (``file://`` store) and downloaded into ``<out>/images/``
where they are not (``s3://``). An example stored without image (its frame was gone) is left out and
counted. Image file names are ``<camera_id>_<frame_seq>`` (the store's), which is how ``import``
tells cameras apart; images not named so are taken as the given camera's.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath

from framestream.labels.read import read_labels
from framestream.labels.write import write_labels
from processors.labels import LabelError, build_label_set
from schemas.base import CAMERA_ID_PATTERN
from schemas.coco import COCO_CLASSES
from schemas.labels import LabeledImage, LabelSet

EVAL_SET_FILE = "annotations.json"
_STORED_NAME = re.compile(r"^(?P<camera>.+)_(?P<seq>\d{12})$")
_DURATION = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)(?P<unit>[smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class StoredExample:
    """One sampled frame, as ClickHouse ``hard_examples`` holds it (its reasons gathered)."""

    event_id: str
    camera_id: str
    frame_seq: int
    image_uri: str | None
    width: int
    height: int
    predictions: list[dict]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ExportSummary:
    images: int
    boxes: int
    without_image: int
    written: list[Path]


@dataclass(frozen=True)
class ImportSummary:
    images: int
    boxes: int
    other_cameras: int
    total_images: int
    annotations: Path


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d``."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"--since {text!r}: expected a number and a unit s, m, h or d (e.g. 24h)")
    return timedelta(**{_UNITS[match["unit"]]: float(match["amount"])})


def query_examples(client, since: timedelta, camera: str | None) -> list[StoredExample]:  # noqa: ANN001 - clickhouse-connect Client
    """Frames sampled as hard examples, captured within ``since`` of now (one row per frame)."""
    where = "captured_at >= now64(3) - toIntervalMillisecond({since_ms:Int64})"
    parameters: dict[str, object] = {"since_ms": int(since.total_seconds() * 1000)}
    if camera is not None:
        if not re.match(CAMERA_ID_PATTERN, camera):
            raise ValueError(f"--camera {camera!r} is not a camera id")
        where += " AND camera_id = {camera:String}"
        parameters["camera"] = camera
    result = client.query(
        "SELECT event_id, camera_id, frame_seq, any(image_uri), any(width), any(height), any(predictions), "
        f"arraySort(groupUniqArray(reason)) FROM hard_examples FINAL WHERE {where} "
        "GROUP BY event_id, camera_id, frame_seq ORDER BY camera_id, frame_seq",
        parameters=parameters,
    )
    return [
        StoredExample(
            event_id, camera_id, int(seq), uri, int(width), int(height), json.loads(predictions), tuple(reasons)
        )
        for event_id, camera_id, seq, uri, width, height, predictions, reasons in result.result_rows
    ]


def pre_annotations(example: StoredExample, image: str) -> dict[str, object]:
    """The model's boxes as a labelled image: clipped to the image, boxes without area dropped."""
    boxes = []
    for detection in example.predictions:
        box = detection["box"]
        x1, x2 = (min(max(float(box[k]), 0.0), float(example.width)) for k in ("x1", "x2"))
        y1, y2 = (min(max(float(box[k]), 0.0), float(example.height)) for k in ("y1", "y2"))
        if x2 > x1 and y2 > y1:
            boxes.append({"label": detection["class_name"], "x1": x1, "y1": y1, "x2": x2, "y2": y2})
    return {"image": image, "width": example.width, "height": example.height, "boxes": boxes}


def export_task(
    examples: list[StoredExample],
    fmt: str,
    out: Path,
    local_path: Callable[[str], Path | None],
    download: Callable[[str], bytes],
) -> ExportSummary:
    """Write the labelling task; ``local_path`` maps a stored URI to a local file (None: not local)."""
    out.mkdir(parents=True, exist_ok=True)
    images, without = [], 0
    for example in examples:
        if example.image_uri is None:
            without += 1
            continue
        path = local_path(example.image_uri)
        if path is None:
            path = out / "images" / PurePosixPath(example.image_uri).name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(download(example.image_uri))
        elif not path.is_file():
            without += 1
            continue
        images.append(pre_annotations(example, str(path.resolve())))
    extra = sorted({str(box["label"]) for image in images for box in image["boxes"]} - set(COCO_CLASSES))
    labels = build_label_set(str(out), [*COCO_CLASSES, *extra], images)
    written = write_labels(labels, fmt, out)
    boxes = sum(len(image.boxes) for image in labels.images)
    return ExportSummary(len(labels.images), boxes, without, written)


def camera_of(image: str) -> str | None:
    """The camera an exported image belongs to, from its stored name ``<camera_id>_<frame_seq>``."""
    match = _STORED_NAME.match(PurePosixPath(image).stem)
    return match["camera"] if match else None


def import_eval_set(source: Path, fmt: str, camera: str, eval_sets: Path) -> ImportSummary:
    """Corrected labels of ``camera``'s images into ``<eval_sets>/<camera>/`` (COCO, images copied, so
    the set outlives the store's retention), merged with what is there: a re-labelled image replaces
    its earlier labels."""
    if not re.match(CAMERA_ID_PATTERN, camera):
        raise LabelError(str(source), "--camera", f"{camera!r} is not a camera id")
    labels = read_labels(source, fmt)
    mine = [image for image in labels.images if camera_of(image.image) in (camera, None)]
    target = eval_sets / camera
    images_dir = target / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    merged: dict[str, LabeledImage] = {}
    classes: list[str] = []
    existing = target / EVAL_SET_FILE
    if existing.is_file():
        before = read_labels(existing, "coco")
        classes += before.classes
        merged.update({Path(image.image).name: image for image in before.images})
    for image in mine:
        copy = images_dir / Path(image.image).name
        if Path(image.image).resolve() != copy.resolve():
            shutil.copyfile(image.image, copy)
        merged[copy.name] = image.model_copy(update={"image": str(copy.resolve())})
    classes += [name for name in labels.classes if name not in classes]
    result = LabelSet(classes=tuple(classes), images=tuple(merged[name] for name in sorted(merged)))
    write_labels(result, "coco", target)
    boxes = sum(len(image.boxes) for image in mine)
    return ImportSummary(len(mine), boxes, len(labels.images) - len(mine), len(result.images), existing)
