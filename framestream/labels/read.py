"""Read CVAT 1.1 XML, COCO JSON, YOLO (Ultralytics data.yaml) and Pascal VOC XML into a LabelSet.

globox parses the boxes; this module finds the files, resolves image references against the
label file's folder, and turns every failure into a LabelError naming file, field and problem.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import yaml
from globox import Annotation, AnnotationSet, BoundingBox, BoxFormat
from globox.errors import ParsingError
from PIL import Image

from processors.labels import LabelError, build_label_set
from schemas.labels import LabelSet

BOX_FIELDS = ("label", "x1", "y1", "x2", "y2")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_labels(path: Path, fmt: str) -> LabelSet:
    """Usage:
    labels = read_labels(Path("task/annotations.xml"), "cvat")
    labels.images[0].boxes[0].label
    """
    readers: dict[str, Callable[[Path], LabelSet]] = {
        "coco": read_coco,
        "cvat": read_cvat,
        "voc": read_voc,
        "yolo": read_yolo,
    }
    if fmt not in readers:
        raise LabelError(str(path), "--from", f"unknown format {fmt!r}; one of {sorted(readers)}")
    if not path.exists():
        raise LabelError(str(path), "(path)", "no such file or folder")
    return readers[fmt](path)


def _annotation_images(annotations: AnnotationSet | list[Annotation], base: Path) -> list[dict[str, object]]:
    images: list[dict[str, object]] = []
    for annotation in annotations:
        width, height = annotation.image_size or (0, 0)
        boxes = [dict(zip(BOX_FIELDS, (box.label, *box.ltrb), strict=True)) for box in annotation.boxes]
        images.append(
            {"image": str((base / annotation.image_id).resolve()), "width": width, "height": height, "boxes": boxes}
        )
    return images


def read_coco(path: Path) -> LabelSet:
    if path.is_dir():
        path = _single(path, "*.json")
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise LabelError(str(path), "(file)", f"not readable JSON: {error}") from None
    if not isinstance(content, dict):
        raise LabelError(str(path), "(file)", "top level must be an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(content.get(key), list):
            raise LabelError(str(path), key, "missing or not a list")
    _check_coco_references(path, content)
    try:
        annotations = AnnotationSet.from_coco(path)
    except (ParsingError, KeyError, ValueError, TypeError) as error:
        raise LabelError(str(path), "annotations", f"cannot parse: {error!r}") from None
    categories = sorted(content["categories"], key=lambda c: c["id"])
    return build_label_set(
        str(path), [str(c["name"]) for c in categories], _annotation_images(annotations, path.parent)
    )


def _check_coco_references(path: Path, content: dict) -> None:
    """The references globox would otherwise fail on with a bare KeyError."""
    for key, fields in (
        ("images", ("id", "file_name", "width", "height")),
        ("categories", ("id", "name")),
        ("annotations", ("id", "image_id", "category_id", "bbox")),
    ):
        for index, item in enumerate(content[key]):
            missing = [field for field in fields if not isinstance(item, dict) or field not in item]
            if missing:
                raise LabelError(str(path), f"{key}[{index}].{missing[0]}", "missing")
    image_ids = {item["id"] for item in content["images"]}
    category_ids = {item["id"] for item in content["categories"]}
    for index, item in enumerate(content["annotations"]):
        if item["image_id"] not in image_ids:
            raise LabelError(str(path), f"annotations[{index}].image_id", f"no image has id {item['image_id']!r}")
        if item["category_id"] not in category_ids:
            raise LabelError(
                str(path), f"annotations[{index}].category_id", f"no category has id {item['category_id']!r}"
            )
        bbox = item["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
            raise LabelError(str(path), f"annotations[{index}].bbox", f"must be 4 numbers [x, y, w, h], got {bbox!r}")


def read_cvat(path: Path) -> LabelSet:
    if path.is_dir():
        path = _single(path, "*.xml")
    root = _parse_xml(path)
    for index, node in enumerate(root.iter("image")):
        for field in ("name", "width", "height"):
            if node.get(field) is None:
                raise LabelError(str(path), f"image[{index}].{field}", "missing attribute")
        for box_index, box in enumerate(node.iter("box")):
            for field in ("label", "xtl", "ytl", "xbr", "ybr"):
                if box.get(field) is None:
                    raise LabelError(
                        str(path), f"image[{index}] ({node.get('name')}).box[{box_index}].{field}", "missing attribute"
                    )
    try:
        annotations = AnnotationSet.from_cvat(path)
    except (ParsingError, ValueError) as error:
        raise LabelError(str(path), "image", f"cannot parse: {error}") from None
    declared = [node.findtext("name", "") for node in root.findall("./meta/task/labels/label")]
    declared += [node.findtext("name", "") for node in root.findall("./meta/project/labels/label")]
    images = _annotation_images(annotations, path.parent)
    return build_label_set(str(path), declared or None, images)


def read_voc(path: Path) -> LabelSet:
    files = sorted(path.glob("*.xml")) if path.is_dir() else [path]
    if not files:
        raise LabelError(str(path), "(folder)", "holds no .xml files")
    images: list[dict[str, object]] = []
    for file in files:
        root = _parse_xml(file)
        for field in ("filename", "size/width", "size/height"):
            if root.findtext(field) is None:
                raise LabelError(str(file), field, "missing element")
        for index, node in enumerate(root.iter("object")):
            for field in ("name", "bndbox/xmin", "bndbox/ymin", "bndbox/xmax", "bndbox/ymax"):
                if node.findtext(field) is None:
                    raise LabelError(str(file), f"object[{index}].{field}", "missing element")
        try:
            annotation = Annotation.from_xml(file)
        except (ParsingError, ValueError) as error:
            raise LabelError(str(file), "(file)", f"cannot parse: {error}") from None
        # LabelImg writes the image's absolute path; the file name beside the XML is the fallback.
        written = root.findtext("path")
        base = file.parent
        if written and Path(written).name == annotation.image_id and Path(written).is_file():
            base = Path(written).parent
        images += _annotation_images([annotation], base)
    return build_label_set(str(path), None, images)


def read_yolo(path: Path) -> LabelSet:
    data_file = _single(path, "data.yaml") if path.is_dir() else path
    try:
        data = yaml.safe_load(data_file.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise LabelError(str(data_file), "(file)", f"not readable YAML: {error}") from None
    names = _yolo_names(data_file, data)
    root = data_file.parent / str(data.get("path") or ".")
    splits = [data[key] for key in ("train", "val", "test") if data.get(key)]
    if not splits:
        raise LabelError(str(data_file), "train", "missing (no image folder named)")
    images: list[dict[str, object]] = []
    seen: set[Path] = set()
    for split in splits:
        folder = root / str(split)
        if not folder.is_dir():
            raise LabelError(str(data_file), "train/val", f"image folder {folder} does not exist")
        for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            if image in seen:
                continue
            seen.add(image)
            images.append(_yolo_image(image, names))
    return build_label_set(str(data_file), names, images)


def _yolo_names(data_file: Path, data: object) -> list[str]:
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        return [str(names[i]) for i in range(len(names))]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise LabelError(str(data_file), "names", "missing, or not a list / a dict of ids 0..n-1 to names")


def _yolo_image(image: Path, names: list[str]) -> dict[str, object]:
    """One image's boxes, from labels/<stem>.txt beside images/ (Ultralytics' img2label_paths rule)."""
    parts = list(image.parts)
    if "images" not in parts:
        raise LabelError(str(image), "(path)", "YOLO images must sit under a folder named 'images'")
    at = len(parts) - 1 - parts[::-1].index("images")
    label_file = Path(*parts[:at], "labels", *parts[at + 1 :]).with_suffix(".txt")
    with Image.open(image) as opened:
        size = opened.size
    boxes: list[dict[str, object]] = []
    if label_file.is_file():
        for line_no, line in enumerate(label_file.read_text().splitlines(), start=1):
            if line.strip():
                boxes.append(_yolo_box(label_file, line_no, line, size, names))
    return {"image": str(image.resolve()), "width": size[0], "height": size[1], "boxes": boxes}


def _yolo_box(file: Path, line_no: int, line: str, size: tuple[int, int], names: list[str]) -> dict[str, object]:
    fields = line.split()
    if len(fields) != 5:
        raise LabelError(str(file), f"line {line_no}", f"expected 'class x y w h', got {line!r}")
    try:
        class_id, values = int(fields[0]), [float(v) for v in fields[1:]]
    except ValueError:
        raise LabelError(str(file), f"line {line_no}", f"not numbers: {line!r}") from None
    if not 0 <= class_id < len(names):
        raise LabelError(str(file), f"line {line_no}.class", f"{class_id} is not a class id in data.yaml names")
    if not all(0.0 <= v <= 1.0 for v in values):
        raise LabelError(str(file), f"line {line_no}.xywh", f"normalised values must be within [0, 1]: {line!r}")
    # globox does the relative centre/size -> absolute corners arithmetic.
    parsed = BoundingBox.create(
        label=names[class_id], coords=tuple(values), box_format=BoxFormat.XYWH, relative=True, image_size=size
    )
    return dict(zip(BOX_FIELDS, (parsed.label, *parsed.ltrb), strict=True))


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as error:
        raise LabelError(str(path), "(file)", f"not readable XML: {error}") from None


def _single(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise LabelError(str(folder), "(folder)", f"expected exactly one {pattern}, found {len(found)}")
    return found[0]
