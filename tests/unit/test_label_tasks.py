"""The labelling round trip without services: stored hard examples -> labelling task (every format)
-> corrected labels imported as a camera's COCO evaluation set, boxes and classes unchanged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from framestream.cli import main
from framestream.labels import read_labels
from framestream.labels.tasks import (
    StoredExample,
    camera_of,
    export_task,
    import_eval_set,
    parse_duration,
    pre_annotations,
)
from processors.labels import LabelError, label_set_differences
from schemas.coco import COCO_CLASSES
from schemas.labels import LABEL_FORMATS, LabelSet
from streams.example_store import file_path

TASK_FILE = {"cvat": "annotations.xml", "coco": "annotations.json", "yolo": "data.yaml", "voc": "."}


def detection(name: str, box: tuple[float, float, float, float], score: float = 0.4) -> dict:
    return {"class_name": name, "score": score, "box": dict(zip(("x1", "y1", "x2", "y2"), box, strict=True))}


def stored(tmp_path: Path, camera: str, seq: int, predictions: list[dict], *, image: bool = True) -> StoredExample:
    path = tmp_path / "store" / camera / f"{camera}_{seq:012d}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (320, 240), (seq * 40 % 255, 90, 160)).save(path, "JPEG")
    uri = path.resolve().as_uri() if image else None
    return StoredExample(f"{camera}:{seq}", camera, seq, uri, 320, 240, predictions, ("uncertain",))


@pytest.fixture
def examples(tmp_path: Path) -> list[StoredExample]:
    return [
        stored(tmp_path, "cam-a", 0, [detection("dog", (10.5, 20.25, 100, 120)), detection("cat", (12, 22, 98, 118))]),
        stored(tmp_path, "cam-a", 1, [detection("person", (-5, -3, 330, 250))]),  # clipped to the image
        stored(tmp_path, "cam-a", 2, []),  # kept: an image the model found nothing in is worth labelling too
        stored(tmp_path, "cam-b", 0, [detection("horse", (50, 50, 50, 90))]),  # no area: dropped
        stored(tmp_path, "cam-b", 1, [detection("kite", (1, 1, 30, 30))], image=False),  # frame gone
    ]


def local(uri: str) -> Path | None:
    return file_path(uri)


def no_download(uri: str) -> bytes:
    raise AssertionError(f"a local image was downloaded: {uri}")


def only_camera(labels: LabelSet, camera: str) -> LabelSet:
    return labels.model_copy(update={"images": tuple(i for i in labels.images if camera_of(i.image) == camera)})


@pytest.mark.parametrize("fmt", LABEL_FORMATS)
def test_export_then_import_keeps_boxes_and_classes(tmp_path: Path, examples: list[StoredExample], fmt: str) -> None:
    summary = export_task(examples, fmt, tmp_path / "task", local, no_download)
    assert (summary.images, summary.boxes, summary.without_image) == (4, 3, 1)
    exported = read_labels(tmp_path / "task" / TASK_FILE[fmt], fmt)
    if fmt != "voc":  # VOC files carry no label list
        assert exported.classes == COCO_CLASSES
    boxes = {Path(i.image).name: [(b.label, b.x1, b.y1, b.x2, b.y2) for b in i.boxes] for i in exported.images}
    tolerance = 1e-3 if fmt == "yolo" else 1e-6
    assert boxes["cam-a_000000000001.jpg"][0][1:] == pytest.approx((0, 0, 320, 240), abs=tolerance)
    assert boxes["cam-b_000000000000.jpg"] == []

    result = import_eval_set(tmp_path / "task" / TASK_FILE[fmt], fmt, "cam-a", tmp_path / "eval-sets")
    assert (result.images, result.boxes, result.other_cameras) == (3, 3, 1)
    eval_set = read_labels(tmp_path / "eval-sets" / "cam-a" / "annotations.json", "coco")
    assert label_set_differences(only_camera(exported, "cam-a"), eval_set, tolerance, key="name") == []
    assert all(Path(i.image).parent == tmp_path / "eval-sets" / "cam-a" / "images" for i in eval_set.images)


def test_s3_images_are_downloaded_into_the_task(tmp_path: Path, examples: list[StoredExample]) -> None:
    downloaded: list[str] = []

    def download(uri: str) -> bytes:
        downloaded.append(uri)
        return file_path(uri).read_bytes()

    export_task(examples[:2], "cvat", tmp_path / "task", lambda uri: None, download)
    assert len(downloaded) == 2
    labels = read_labels(tmp_path / "task" / "annotations.xml", "cvat")
    assert {Path(i.image).parent for i in labels.images} == {tmp_path / "task" / "images"}


def test_a_second_import_replaces_relabelled_images_and_keeps_the_rest(
    tmp_path: Path, examples: list[StoredExample]
) -> None:
    export_task(examples[:2], "coco", tmp_path / "round1", local, no_download)
    import_eval_set(tmp_path / "round1" / "annotations.json", "coco", "cam-a", tmp_path / "sets")
    relabelled = stored(tmp_path, "cam-a", 1, [detection("bicycle", (5, 5, 60, 60))])
    export_task([relabelled, examples[2]], "cvat", tmp_path / "round2", local, no_download)
    result = import_eval_set(tmp_path / "round2" / "annotations.xml", "cvat", "cam-a", tmp_path / "sets")
    assert result.total_images == 3
    merged = read_labels(tmp_path / "sets" / "cam-a" / "annotations.json", "coco")
    labels = {Path(i.image).name: sorted(b.label for b in i.boxes) for i in merged.images}
    assert labels == {
        "cam-a_000000000000.jpg": ["cat", "dog"],
        "cam-a_000000000001.jpg": ["bicycle"],
        "cam-a_000000000002.jpg": [],
    }


def test_the_cli_imports_into_the_data_dirs_eval_sets(
    tmp_path: Path, examples: list[StoredExample], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    export_task(examples, "cvat", tmp_path / "task", local, no_download)
    monkeypatch.setenv("FRAMESTREAM_DATA_DIR", str(tmp_path / "data"))
    code = main(
        ["label", "import", str(tmp_path / "task" / "annotations.xml"), "--format", "cvat", "--camera", "cam-b"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "1 images, 0 boxes of cam-b (3 images of other cameras skipped)" in out
    assert (tmp_path / "data" / "eval-sets" / "cam-b" / "annotations.json").is_file()
    assert main(["label", "import", str(tmp_path / "task"), "--format", "coco", "--camera", "bad/id"]) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("1.5d", timedelta(hours=36)),
        ("24", ValueError),
        ("h", ValueError),
        ("-1h", ValueError),
    ],
)
def test_parse_duration(text: str, expected: object) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected, match="--since"):
            parse_duration(text)
    else:
        assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("image", "camera"),
    [
        ("/x/cam-a_000000000001.jpg", "cam-a"),
        ("cam_b_2_000000000010.png", "cam_b_2"),
        ("/x/photo.jpg", None),
        ("cam-a_12.jpg", None),
    ],
)
def test_camera_of(image: str, camera: str | None) -> None:
    assert camera_of(image) == camera


def test_pre_annotations_clip_and_drop(tmp_path: Path) -> None:
    example = StoredExample(
        "c:0", "c", 0, None, 100, 50, [detection("dog", (-1, 10, 120, 60)), detection("cat", (70, 5, 70, 9))], ()
    )
    assert pre_annotations(example, "x.jpg")["boxes"] == [
        {"label": "dog", "x1": 0.0, "y1": 10.0, "x2": 100.0, "y2": 50.0}
    ]


def test_an_import_of_a_bad_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "bad.xml").write_text("<annotations><image name='a.jpg'/></annotations>")
    with pytest.raises(LabelError, match="width: missing attribute"):
        import_eval_set(tmp_path / "bad.xml", "cvat", "cam-a", tmp_path / "sets")
