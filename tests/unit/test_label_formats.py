"""Label formats: every format round-trips a real labelled sample, and writes files its tool accepts.

The real sample is deepforest 2.1.0's OSBS_029 (Pascal VOC XML and image from the PyPI wheel's
deepforest/data/, MIT): 61 "Tree" boxes on a 400x400 aerial image. A synthetic multi-class set
with fractional coordinates covers class order and several images.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml
from PIL import Image

from framestream.cli import main
from framestream.labels import read_labels, write_labels
from processors.labels import LabelError, label_set_differences
from schemas.labels import LABEL_FORMATS, LabelSet

DEEPFOREST = Path(__file__).resolve().parents[1] / "data" / "labels" / "deepforest"

# The fields pycocotools, CVAT's and Ultralytics' COCO importers read (COCO "Data format", detection).
COCO_SCHEMA = {
    "type": "object",
    "required": ["images", "annotations", "categories"],
    "properties": {
        "images": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "file_name", "width", "height"],
                "properties": {
                    "id": {"type": "integer"},
                    "file_name": {"type": "string"},
                    "width": {"type": "integer", "minimum": 1},
                    "height": {"type": "integer", "minimum": 1},
                },
            },
        },
        "annotations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "image_id", "category_id", "bbox", "area", "iscrowd"],
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "image_id": {"type": "integer"},
                    "category_id": {"type": "integer"},
                    "iscrowd": {"enum": [0, 1]},
                    "area": {"type": "number", "minimum": 0},
                    "bbox": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number"}},
                },
            },
        },
        "categories": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "name"],
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
            },
        },
    },
}


def _source_path(fmt: str, out: Path) -> Path:
    return {"coco": out / "annotations.json", "cvat": out / "annotations.xml", "voc": out, "yolo": out / "data.yaml"}[
        fmt
    ]


@pytest.fixture(scope="module")
def deepforest() -> LabelSet:
    return read_labels(DEEPFOREST, "voc")


@pytest.fixture
def multiclass(tmp_path: Path) -> LabelSet:
    for name, size in (("a.png", (64, 48)), ("b.jpg", (100, 80)), ("empty.png", (32, 32))):
        Image.new("RGB", size).save(tmp_path / name)
    return LabelSet(
        classes=("person", "car", "dog"),
        images=(
            {
                "image": str(tmp_path / "a.png"),
                "width": 64,
                "height": 48,
                "boxes": [
                    {"label": "car", "x1": 1.5, "y1": 2.25, "x2": 30.75, "y2": 47.0},
                    {"label": "person", "x1": 0.0, "y1": 0.0, "x2": 64.0, "y2": 48.0},
                ],
            },
            {
                "image": str(tmp_path / "b.jpg"),
                "width": 100,
                "height": 80,
                "boxes": [
                    {"label": "dog", "x1": 10.0, "y1": 20.0, "x2": 33.3, "y2": 44.4},
                    {"label": "car", "x1": 50.0, "y1": 50.0, "x2": 99.0, "y2": 79.0},
                ],
            },
            {"image": str(tmp_path / "empty.png"), "width": 32, "height": 32, "boxes": []},
        ),
    )


def test_the_sample_is_real(deepforest: LabelSet) -> None:
    assert deepforest.classes == ("Tree",)
    assert [len(image.boxes) for image in deepforest.images] == [61]
    assert (deepforest.images[0].width, deepforest.images[0].height) == (400, 400)


@pytest.mark.parametrize("fmt", LABEL_FORMATS)
def test_deepforest_round_trip(fmt: str, deepforest: LabelSet, tmp_path: Path) -> None:
    write_labels(deepforest, fmt, tmp_path / fmt)
    back = read_labels(_source_path(fmt, tmp_path / fmt), fmt)
    assert label_set_differences(deepforest, back, tolerance=1e-9 if fmt != "yolo" else 1e-6) == []
    assert back.classes == deepforest.classes


@pytest.mark.parametrize("fmt", LABEL_FORMATS)
def test_multiclass_round_trip_keeps_classes_and_empty_images(fmt: str, multiclass: LabelSet, tmp_path: Path) -> None:
    write_labels(multiclass, fmt, tmp_path / "out")
    back = read_labels(_source_path(fmt, tmp_path / "out"), fmt)
    assert label_set_differences(multiclass, back, tolerance=1e-9 if fmt != "yolo" else 1e-6) == []
    # Pascal VOC stores no class list: the order read back is the sorted names.
    assert back.classes == (multiclass.classes if fmt != "voc" else tuple(sorted(multiclass.classes)))


@pytest.mark.parametrize("fmt", LABEL_FORMATS)
def test_convert_command_chains_through_every_format(fmt: str, deepforest: LabelSet, tmp_path: Path) -> None:
    assert main(["label", "convert", str(DEEPFOREST), "--from", "voc", "--to", fmt, "--out", str(tmp_path / "a")]) == 0
    assert (
        main(
            [
                "label",
                "convert",
                str(_source_path(fmt, tmp_path / "a")),
                "--from",
                fmt,
                "--to",
                "voc",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    assert label_set_differences(deepforest, read_labels(tmp_path / "b", "voc"), tolerance=1e-6) == []


def test_coco_output_meets_the_schema_and_references_images(multiclass: LabelSet, tmp_path: Path) -> None:
    (path,) = write_labels(multiclass, "coco", tmp_path / "coco")
    content = json.loads(path.read_text())
    jsonschema.validate(content, COCO_SCHEMA)
    assert [c["name"] for c in content["categories"]] == ["person", "car", "dog"]
    for image in content["images"]:
        assert (path.parent / image["file_name"]).resolve().is_file()
    assert not list((tmp_path / "coco").glob("*.png")), "images are referenced, not copied"
    by_image = {a["image_id"] for a in content["annotations"]}
    assert len(content["annotations"]) == 4 and len(by_image) == 2


def test_cvat_output_has_the_1_1_structure(multiclass: LabelSet, tmp_path: Path) -> None:
    (path,) = write_labels(multiclass, "cvat", tmp_path / "cvat")
    root = ET.parse(path).getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    labels = [node.findtext("name") for node in root.findall("./meta/task/labels/label")]
    assert labels == ["person", "car", "dog"]
    images = root.findall("image")
    assert [image.get("id") for image in images] == ["0", "1", "2"]
    for image in images:
        assert {"id", "name", "width", "height"} <= set(image.attrib)
        assert (path.parent / image.get("name")).resolve().is_file()
        for box in image.findall("box"):
            assert {"label", "occluded", "xtl", "ytl", "xbr", "ybr", "z_order"} <= set(box.attrib)
            assert box.get("label") in labels
            assert float(box.get("xtl")) < float(box.get("xbr")) and float(box.get("ytl")) < float(box.get("ybr"))


def test_voc_output_has_labelimg_fields(deepforest: LabelSet, tmp_path: Path) -> None:
    (path,) = write_labels(deepforest, "voc", tmp_path / "voc")
    root = ET.parse(path).getroot()
    assert root.tag == "annotation"
    for field in (
        "folder",
        "filename",
        "path",
        "source/database",
        "size/width",
        "size/height",
        "size/depth",
        "segmented",
    ):
        assert root.findtext(field), field
    assert Path(root.findtext("path")).is_file()
    objects = root.findall("object")
    assert len(objects) == 61
    for obj in objects:
        for field in (
            "name",
            "pose",
            "truncated",
            "difficult",
            "bndbox/xmin",
            "bndbox/ymin",
            "bndbox/xmax",
            "bndbox/ymax",
        ):
            assert obj.findtext(field) is not None, field


def test_yolo_output_is_the_ultralytics_layout(multiclass: LabelSet, tmp_path: Path) -> None:
    out = tmp_path / "yolo"
    write_labels(multiclass, "yolo", out)
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert {"path", "train", "val", "names"} <= set(data)
    assert data["names"] == {0: "person", 1: "car", 2: "dog"}
    images = sorted((out / data["train"]).iterdir())
    assert [p.name for p in images] == ["a.png", "b.jpg", "empty.png"]
    assert all(p.is_symlink() and p.resolve().is_file() for p in images), "images are linked, not copied"
    for image in images:
        label_file = out / "labels" / f"{image.stem}.txt"
        assert label_file.is_file()
        for line in label_file.read_text().splitlines():
            class_id, *xywh = line.split()
            assert 0 <= int(class_id) < 3
            assert all(0.0 <= float(v) <= 1.0 for v in xywh)
    assert (out / "labels" / "empty.txt").read_text() == ""


BAD_FILES = [
    ("coco", "annotations.json", '{"images": [], "categories": []}', "annotations: missing or not a list"),
    (
        "coco",
        "annotations.json",
        '{"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],'
        ' "categories": [{"id": 1, "name": "x"}],'
        ' "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]}',
        "annotations[0].image_id: no image has id 2",
    ),
    (
        "coco",
        "annotations.json",
        '{"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],'
        ' "categories": [{"id": 1, "name": "x"}],'
        ' "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 2]}]}',
        "images[0] (",
    ),
    (
        "cvat",
        "annotations.xml",
        '<annotations><image name="a.jpg" width="10"/></annotations>',
        "image[0].height: missing attribute",
    ),
    (
        "cvat",
        "annotations.xml",
        '<annotations><image name="a.jpg" width="10" height="10"><box label="x" xtl="1" ytl="1" xbr="2"/></image>'
        "</annotations>",
        "box[0].ybr: missing attribute",
    ),
    (
        "voc",
        "a.xml",
        "<annotation><filename>a.jpg</filename><size><width>10</width><height>10</height></size>"
        "<object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>30</xmax><ymax>2</ymax></bndbox></object>"
        "</annotation>",
        "lies outside the 10x10 image",
    ),
    ("voc", "a.xml", "<annotation><filename>a.jpg</filename></annotation>", "size/width: missing element"),
    ("yolo", "data.yaml", "path: .\ntrain: images\n", "names: missing"),
]


@pytest.mark.parametrize(("fmt", "name", "content", "message"), BAD_FILES)
def test_a_bad_label_file_fails_naming_file_field_and_problem(
    fmt: str, name: str, content: str, message: str, tmp_path: Path
) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(LabelError) as caught:
        read_labels(tmp_path / name, fmt)
    assert message in str(caught.value)
    assert str(tmp_path / name) in str(caught.value)


def test_a_bad_yolo_line_names_the_line(multiclass: LabelSet, tmp_path: Path) -> None:
    write_labels(multiclass, "yolo", tmp_path / "yolo")
    (tmp_path / "yolo" / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 1.2 0.2\n")
    with pytest.raises(LabelError, match=r"a\.txt: line 2\.class: 7 is not a class id"):
        read_labels(tmp_path / "yolo" / "data.yaml", "yolo")


def test_the_command_reports_a_bad_file_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.json").write_text("{")
    assert (
        main(
            [
                "label",
                "convert",
                str(tmp_path / "bad.json"),
                "--from",
                "coco",
                "--to",
                "voc",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 1
    )
    assert "bad.json: (file): not readable JSON" in capsys.readouterr().err
