"""framestream/commands/detect.py without a server: path expansion and the JSON line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from framestream.commands.detect import expand_paths, image_record
from processors.detector import ObjectDetections


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("b.JPG", "a.jpg", "c.png", "d.jpeg", "notes.txt", "e.gif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "f.jpg").write_bytes(b"x")
    return tmp_path


def test_a_folder_expands_to_its_own_images_sorted(folder: Path) -> None:
    files, errors = expand_paths([folder])
    assert [f.name for f in files] == ["a.jpg", "b.JPG", "c.png", "d.jpeg"]
    assert errors == []


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda root: root / "missing.jpg", "missing.jpg: no such file or folder"),
        (lambda root: root / "nested" / "deeper", "deeper: no such file or folder"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "empty: folder holds no .jpg/.jpeg/.png files"),
    ],
)
def test_bad_paths_are_named(folder: Path, make: object, error: str) -> None:
    bad = make(folder)  # type: ignore[operator]
    files, errors = expand_paths([bad, folder / "a.jpg"])
    assert [f.name for f in files] == ["a.jpg"]
    assert len(errors) == 1 and errors[0].endswith(error)


def test_files_are_kept_in_the_order_given_even_repeated(folder: Path) -> None:
    files, _ = expand_paths([folder / "c.png", folder / "notes.txt", folder / "c.png"])
    assert [f.name for f in files] == ["c.png", "notes.txt", "c.png"]  # a named file is sent whatever its suffix


def test_image_record_names_classes_and_rounds() -> None:
    data = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    detections = ObjectDetections(
        np.array([[1.234, 2.0, 30.06, 40.0]], np.float32), np.array([0.876543], np.float32), np.array([16], np.int32)
    )
    record = image_record(Path("photos/x.jpg"), data, detections)
    assert json.loads(json.dumps(record)) == {
        "file": "photos/x.jpg",
        "width": 64,
        "height": 48,
        "detections": [{"class_name": "dog", "class_id": 16, "score": 0.8765, "box": [1.2, 2.0, 30.1, 40.0]}],
    }
