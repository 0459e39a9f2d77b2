"""``framestream eval`` as a user runs it: a subprocess against the fixture's real Triton.

The labelled sample is the detector's own output on tests/data/photos (see the fixture's README),
so the served detector must score 1.0 against it; the same set with every box shifted by half its
size must score near 0. Both are converted to YOLO first, so a non-COCO reader is on the path too.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from framestream.labels import read_labels, write_labels
from schemas.labels import LabelSet

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "data" / "labels" / "photos-detector" / "annotations.json"


def framestream_eval(triton_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FRAMESTREAM_TRITON_URL": triton_url}
    return subprocess.run(
        [sys.executable, "-m", "framestream.cli", "eval", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )


def pycocotools_stats(folder: Path) -> list[float]:
    """COCOeval's 12 stats, run directly on the COCO files eval wrote beside its plots."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(folder / "ground_truth.json"))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(str(folder / "detections.json")), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats]


def shifted(labels: LabelSet) -> LabelSet:
    """Every box moved right/down by half its size (clipped to the image; degenerate ones dropped)."""
    images = []
    for image in labels.images:
        boxes = []
        for b in image.boxes:
            w, h = b.x2 - b.x1, b.y2 - b.y1
            x1, y1 = b.x1 + w / 2, b.y1 + h / 2
            x2, y2 = min(b.x2 + w / 2, image.width), min(b.y2 + h / 2, image.height)
            if x2 > x1 + 1 and y2 > y1 + 1:
                boxes.append({"label": b.label, "x1": x1, "y1": y1, "x2": x2, "y2": y2})
        images.append({"image": image.image, "width": image.width, "height": image.height, "boxes": boxes})
    return LabelSet(classes=labels.classes, images=tuple(images))


def test_eval_of_the_detector_against_its_own_labels(triton_url: str, tmp_path: Path) -> None:
    yolo = tmp_path / "yolo"
    write_labels(read_labels(SAMPLE, "coco"), "yolo", yolo)
    result = framestream_eval(
        triton_url,
        "--dataset",
        str(yolo / "data.yaml"),
        "--format",
        "yolo",
        "--json",
        str(tmp_path / "eval.json"),
        "--out",
        str(tmp_path / "plots"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["map"] == pytest.approx(1.0, abs=0.02) and report["map50"] == pytest.approx(1.0, abs=0.02)
    assert {"horse", "dog", "person"} <= set(report["per_class"])
    for name, metrics in report["per_class"].items():
        if metrics["ground_truths"]:
            assert metrics["recall"] == pytest.approx(1.0), name
            assert metrics["ap50"] == pytest.approx(1.0, abs=0.02), name
    assert "mAP@[.5:.95]" in result.stdout and "confusion" in result.stdout
    for name in ("pr_curves.png", "confusion_matrix.png", "threshold_sweep.png"):
        with Image.open(tmp_path / "plots" / name) as plot:
            assert plot.format == "PNG" and plot.size[0] > 100
    assert pycocotools_stats(tmp_path / "plots")[:2] == pytest.approx([report["map"], report["map50"]], abs=1e-4)


def test_eval_of_boxes_shifted_by_half_scores_near_zero(triton_url: str, tmp_path: Path) -> None:
    write_labels(shifted(read_labels(SAMPLE, "coco")), "cvat", tmp_path / "cvat")
    dataset = str(tmp_path / "cvat" / "annotations.xml")
    result = framestream_eval(
        triton_url,
        "--dataset",
        dataset,
        "--format",
        "cvat",
        "--json",
        str(tmp_path / "eval.json"),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["map"] < 0.05 and report["map50"] < 0.1
    assert pycocotools_stats(tmp_path / "out")[:2] == pytest.approx([report["map"], report["map50"]], abs=1e-4)


def test_a_model_version_triton_does_not_serve_is_refused(triton_url: str) -> None:
    result = framestream_eval(triton_url, "--dataset", str(SAMPLE), "--format", "coco", "--model", "detector:99")
    assert result.returncode == 1
    assert "--model detector:99: Triton serves version 1 of detector" in result.stderr


def test_labels_that_misstate_the_image_size_are_refused(triton_url: str, tmp_path: Path) -> None:
    content = json.loads(SAMPLE.read_text())
    content["images"][0]["width"] = 1000
    for image in content["images"]:
        image["file_name"] = str((SAMPLE.parent / image["file_name"]).resolve())
    (tmp_path / "wrong.json").write_text(json.dumps(content))
    result = framestream_eval(triton_url, "--dataset", str(tmp_path / "wrong.json"), "--format", "coco")
    assert result.returncode == 1
    assert "dog.jpg).width/height: labels say 1000x576, the image is 768x576" in result.stderr


def test_a_bad_label_file_exits_1_naming_it(triton_url: str, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"images": [], "annotations": [], "categories": [{"id": 1}]}')
    result = framestream_eval(triton_url, "--dataset", str(tmp_path / "bad.json"), "--format", "coco")
    assert result.returncode == 1
    assert "bad.json: categories[0].name: missing" in result.stderr
