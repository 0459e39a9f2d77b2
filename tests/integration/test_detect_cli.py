"""``framestream detect`` as a user runs it: a subprocess against the fixture's Triton."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.coco import COCO_CLASSES

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PHOTOS = REPO / "tests" / "data" / "photos"


def framestream_detect(triton_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FRAMESTREAM_TRITON_URL": triton_url}
    return subprocess.run(
        [sys.executable, "-m", "framestream.cli", "detect", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_one_json_line_per_image(triton_url: str) -> None:
    result = framestream_detect(triton_url, str(PHOTOS / "dog.jpg"), str(PHOTOS))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    expected_files = [PHOTOS / "dog.jpg", *sorted(PHOTOS.glob("*.jpg"))]
    assert [Path(line["file"]) for line in lines] == expected_files
    dog = lines[0]
    assert (dog["width"], dog["height"]) == (768, 576)
    assert set(dog) == {"file", "width", "height", "detections"}
    assert {d["class_name"] for d in dog["detections"]} >= {"dog", "bicycle"}
    for line in lines:
        for detection in line["detections"]:
            assert set(detection) == {"class_name", "class_id", "score", "box"}
            assert COCO_CLASSES[detection["class_id"]] == detection["class_name"]
            x1, y1, x2, y2 = detection["box"]
            assert 0 <= x1 < x2 <= line["width"] and 0 <= y1 < y2 <= line["height"]
            assert 0.35 < detection["score"] <= 1.0


def test_thresholds_from_the_command_line(triton_url: str) -> None:
    strict = framestream_detect(triton_url, "--score-threshold", "0.6", str(PHOTOS / "dog.jpg"))
    assert strict.returncode == 0, strict.stderr
    scores = [d["score"] for d in json.loads(strict.stdout)["detections"]]
    assert scores and min(scores) > 0.6


def test_missing_path_is_named_and_fails_but_good_images_are_printed(triton_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-photo.jpg"
    result = framestream_detect(triton_url, str(missing), str(PHOTOS / "person.jpg"))
    assert result.returncode == 1
    assert f"{missing}: no such file or folder" in result.stderr
    assert [json.loads(line)["file"] for line in result.stdout.splitlines()] == [str(PHOTOS / "person.jpg")]


def test_rejected_image_is_reported_on_stderr(triton_url: str, tmp_path: Path) -> None:
    fake = tmp_path / "fake.jpg"
    fake.write_text("not really a photo\n")
    result = framestream_detect(triton_url, str(fake), str(PHOTOS / "kite.jpg"))
    assert result.returncode == 1
    assert f"{fake}: rejected: not a JPEG or PNG" in result.stderr
    assert len(result.stdout.splitlines()) == 1


@pytest.mark.parametrize("arguments", [["--score-threshold", "1.5"], ["--iou-threshold", "-1"]])
def test_out_of_range_thresholds_fail_fast(triton_url: str, arguments: list[str]) -> None:
    result = framestream_detect(triton_url, *arguments, str(PHOTOS / "dog.jpg"))
    assert result.returncode == 1 and "must be within [0, 1]" in result.stderr and result.stdout == ""
