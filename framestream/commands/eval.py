"""``framestream eval --dataset PATH --format F``: the served detector scored against labelled images.

Every image of the set goes through Triton (the URL from settings; empty starts the local
tritonserver, as ``framestream detect`` does) with a low score floor (--min-score), so AP sees the
whole ranking; precision, recall and F1 are then taken at the serving score threshold. Metrics are
pycocotools' (processors/detection_metrics.py). Prints a summary, optionally writes JSON (--json)
and PNG plots (--out). Exit 1: bad labels or images; 2: Triton unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from framestream.settings import Settings
from schemas.labels import LABEL_FORMATS

if TYPE_CHECKING:
    from processors.detection_metrics import Evaluation, ScoredBox
    from schemas.labels import LabelSet

EXIT_BAD_INPUT = 1
EXIT_UNAVAILABLE = 2
CHUNK = 64


class Unavailable(Exception):
    """Triton could not be started or reached."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="score the served detector on a labelled image set")
    parser.add_argument("--dataset", required=True, type=Path, metavar="PATH", help="label file or folder")
    parser.add_argument("--format", required=True, choices=LABEL_FORMATS)
    parser.add_argument("--model", default=None, metavar="NAME[:VERSION]", help="served model (default: settings)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the metrics as JSON")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="write PNG plots here")
    parser.add_argument("--triton-url", default=None, help="Triton gRPC host:port (default: settings)")
    parser.add_argument("--min-score", type=float, default=0.05, help="score floor of the detections AP ranks")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from framestream.labels import read_labels
    from processors.labels import LabelError

    model, _, version = (args.model or settings.triton.model_name).partition(":")
    threshold = settings.triton.score_threshold
    if not 0.0 <= args.min_score <= threshold:
        return _fail(f"--min-score must be within [0, serving threshold {threshold}], got {args.min_score}")
    try:
        labels = read_labels(args.dataset, args.format)
        images = read_images(labels, str(args.dataset))
    except LabelError as error:
        return _fail(str(error))
    url = settings.triton.url if args.triton_url is None else args.triton_url
    try:
        with ExitStack() as stack:
            live_url = url or _start_local_triton(stack, settings)
            predictions = asyncio.run(_predict(images, live_url, model, version, args.min_score, settings))
    except Unavailable as error:
        print(f"framestream eval: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ValueError as error:
        return _fail(str(error))
    from processors.detection_metrics import evaluate

    result = evaluate(labels, predictions, threshold)
    print(format_report(result, model, len(labels.images)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report_dict(result, model, len(labels.images)), indent=1))
    if args.out:
        for path in write_outputs(result, labels, predictions, args.out):
            print(f"wrote {path}")
    return 0


def read_images(labels: LabelSet, source: str) -> list[bytes]:
    """Each labelled image's bytes; a missing image or one whose size the labels misstate is an error."""
    from processors.decode import DecodeError, probe_size
    from processors.labels import LabelError

    images: list[bytes] = []
    for index, image in enumerate(labels.images):
        field = f"images[{index}] ({image.image})"
        try:
            data = Path(image.image).read_bytes()
            size = probe_size(data, max_pixels=sys.maxsize)
        except OSError as error:
            raise LabelError(source, field, f"cannot read the image: {error.strerror}") from None
        except DecodeError as error:
            raise LabelError(source, field, f"not an image: {error}") from None
        if size != (image.width, image.height):
            raise LabelError(
                source,
                f"{field}.width/height",
                f"labels say {image.width}x{image.height}, the image is {size[0]}x{size[1]}",
            )
        images.append(data)
    return images


def write_outputs(result: Evaluation, labels: LabelSet, predictions: list[list[ScoredBox]], out: Path) -> list[Path]:
    """The PNG plots, plus the COCO files the numbers came from (to rerun pycocotools on them)."""
    from framestream.labels.plots import write_plots
    from processors.detection_metrics import coco_detections, coco_ground_truth, evaluation_classes

    classes = evaluation_classes(labels, predictions)
    written = write_plots(result, out)
    for name, content in (
        ("ground_truth.json", coco_ground_truth(labels, classes)),
        ("detections.json", coco_detections(predictions, classes)),
    ):
        (out / name).write_text(json.dumps(content))
        written.append(out / name)
    return written


def _fail(message: str) -> int:
    print(f"framestream eval: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _start_local_triton(stack: ExitStack, settings: Settings) -> str:
    """The local tritonserver for the duration of the command, as ``framestream detect`` starts it."""
    from framestream.services.triton import LocalTriton, TritonStartError

    log_file = settings.data_dir / "logs" / "tritonserver-eval.log"
    try:
        triton = LocalTriton(settings.triton.model_repository, settings.triton.venv, log_file=log_file)
        return stack.enter_context(triton).grpc_url
    except TritonStartError as error:
        raise Unavailable(f"cannot start the local Triton: {error}") from error


async def _predict(
    images: list[bytes], url: str, model: str, version: str, min_score: float, settings: Settings
) -> list[list[ScoredBox]]:
    from processors.detection_metrics import ScoredBox
    from schemas.coco import class_name
    from streams.inference import DetectorClient, InferenceRejected, InferenceUnavailable

    predictions: list[list[ScoredBox]] = []
    async with DetectorClient(url, model, settings.triton.max_in_flight, settings.triton.timeout_s) as client:
        try:
            await client.wait_ready(timeout_s=settings.triton.timeout_s)
            served = await client.model_version()
            if version and version != served:
                raise ValueError(
                    f"--model {model}:{version}: Triton serves version {served} of {model} "
                    "(requests go to the latest ready version)"
                )
            for start in range(0, len(images), CHUNK):
                results = await client.detect_many(
                    images[start : start + CHUNK], min_score, settings.triton.iou_threshold
                )
                for offset, result in enumerate(results):
                    if isinstance(result, InferenceRejected):
                        raise ValueError(f"image {start + offset}: Triton rejected it: {result}")
                    predictions.append(
                        [
                            ScoredBox(class_name(int(c)), float(s), *(float(v) for v in box))
                            for box, s, c in zip(result.boxes, result.scores, result.class_ids, strict=True)
                        ]
                    )
        except InferenceUnavailable as error:
            raise Unavailable(f"Triton at {url} is unavailable: {error}") from error
    return predictions


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def report_dict(result: Evaluation, model: str, images: int) -> dict[str, object]:
    """The JSON report: ``map``, ``map50``, ``per_class`` (AP, P/R/F1, suggested threshold), confusion."""
    return {
        "model": model,
        "images": images,
        "score_threshold": result.score_threshold,
        "map": _number(result.map),
        "map50": _number(result.map50),
        "per_class": {
            m.name: {
                "ground_truths": m.ground_truths,
                "ap": _number(m.ap),
                "ap50": _number(m.ap50),
                "precision": _number(m.precision),
                "recall": _number(m.recall),
                "f1": _number(m.f1),
                "suggested_threshold": m.suggested_threshold,
                "f1_at_suggested": _number(m.suggested_f1),
            }
            for m in result.per_class
        },
        "confusion": {"labels": list(result.confusion_labels), "matrix": result.confusion.tolist()},
    }


def format_report(result: Evaluation, model: str, images: int) -> str:
    lines = [
        f"{model}: {images} images; mAP@[.5:.95] {result.map:.4f}  mAP@.5 {result.map50:.4f}",
        f"P/R/F1 at the serving score threshold {result.score_threshold:.2f}, IoU 0.5:",
        f"{'class':<16}{'gt':>6}{'AP':>8}{'AP50':>8}{'P':>7}{'R':>7}{'F1':>7}{'best thr':>10}{'F1 there':>10}",
    ]
    for m in sorted(result.per_class, key=lambda m: -m.ground_truths):
        ap = "-" if math.isnan(m.ap) else f"{m.ap:.3f}"
        ap50 = "-" if math.isnan(m.ap50) else f"{m.ap50:.3f}"
        lines.append(
            f"{m.name:<16}{m.ground_truths:>6}{ap:>8}{ap50:>8}{m.precision:>7.3f}{m.recall:>7.3f}"
            f"{m.f1:>7.3f}{m.suggested_threshold:>10.2f}{m.suggested_f1:>10.3f}"
        )
    lines.append("confusion (true -> predicted, matched at IoU 0.5 across classes):")
    labels, matrix = result.confusion_labels, result.confusion
    pairs = [
        (int(matrix[i, j]), labels[i], labels[j])
        for i in range(len(labels))
        for j in range(len(labels))
        if i != j and matrix[i, j]
    ]
    for count, truth, predicted in sorted(pairs, reverse=True)[:15]:
        lines.append(f"  {truth} -> {predicted}: {count}")
    if not pairs:
        lines.append("  (none)")
    return "\n".join(lines)
