"""Write a LabelSet as CVAT for images 1.1, COCO JSON, YOLO (Ultralytics layout) or Pascal VOC (LabelImg).

globox writes the boxes (coordinate conversion, the core elements); this module adds what the
tools need beyond globox's minimal output: CVAT's <version> and <meta> label list and image ids,
LabelImg's folder/path/size depth/object flags, Ultralytics' data.yaml and images/labels folders,
COCO's info and licenses. Images are referenced, never copied: COCO and CVAT by a path relative
to the output folder, VOC by LabelImg's absolute <path>, YOLO by symlinks under images/ (Ultralytics
finds a label file by swapping images/ for labels/ in the image path, so the image must appear there).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from globox import Annotation, AnnotationSet, BoundingBox
from PIL import Image

from processors.labels import LabelError
from schemas.labels import LabeledImage, LabelSet


def write_labels(labels: LabelSet, fmt: str, out: Path) -> list[Path]:
    """Usage:
    written = write_labels(read_labels(Path("voc/"), "voc"), "cvat", Path("task"))
    # -> [Path("task/annotations.xml")]
    """
    writers = {"coco": write_coco, "cvat": write_cvat, "voc": write_voc, "yolo": write_yolo}
    if fmt not in writers:
        raise LabelError(str(out), "--to", f"unknown format {fmt!r}; one of {sorted(writers)}")
    out.mkdir(parents=True, exist_ok=True)
    return writers[fmt](labels, out.resolve())


def _annotation(image: LabeledImage, image_id: str) -> Annotation:
    boxes = [BoundingBox(label=b.label, xmin=b.x1, ymin=b.y1, xmax=b.x2, ymax=b.y2) for b in image.boxes]
    return Annotation(image_id, (image.width, image.height), boxes)


def _relative(image: str, out: Path) -> str:
    return Path(os.path.relpath(Path(image).resolve(), out)).as_posix()


def write_coco(labels: LabelSet, out: Path) -> list[Path]:
    annotations = AnnotationSet(_annotation(image, _relative(image.image, out)) for image in labels.images)
    content = annotations.to_coco(
        label_to_id={name: index + 1 for index, name in enumerate(labels.classes)},
        imageid_to_id={_relative(image.image, out): index + 1 for index, image in enumerate(labels.images)},
    )
    for annotation in content["annotations"]:
        annotation["id"] += 1  # globox counts from 0; COCO tools treat id 0 as "no id"
        annotation["bbox"] = list(annotation["bbox"])
        del annotation["ignore"]  # not a COCO field
    content["images"].sort(key=lambda image: image["id"])
    content["categories"].sort(key=lambda category: category["id"])
    content = {"info": {"description": "written by framestream label convert"}, "licenses": [], **content}
    path = out / "annotations.json"
    path.write_text(json.dumps(content, indent=1))
    return [path]


def write_cvat(labels: LabelSet, out: Path) -> list[Path]:
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = out.name
    ET.SubElement(task, "size").text = str(len(labels.images))
    ET.SubElement(task, "mode").text = "annotation"
    label_nodes = ET.SubElement(task, "labels")
    for name in labels.classes:
        label = ET.SubElement(label_nodes, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "rectangle"
        ET.SubElement(label, "attributes")
    for index, image in enumerate(labels.images):
        node = _annotation(image, _relative(image.image, out)).to_cvat()
        node.set("id", str(index))
        for box in node.iter("box"):
            box.attrib.update({"occluded": "0", "source": "manual", "z_order": "0"})
        root.append(node)
    ET.indent(root)
    path = out / "annotations.xml"
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return [path]


def write_voc(labels: LabelSet, out: Path) -> list[Path]:
    written: list[Path] = []
    stems = _unique_stems(labels, out)
    for image in labels.images:
        source = Path(image.image).resolve()
        node = _annotation(image, source.name).to_xml()
        node.insert(0, _text("folder", source.parent.name))
        node.insert(2, _text("path", str(source)))
        source_node = ET.Element("source")
        source_node.append(_text("database", "Unknown"))
        node.insert(3, source_node)
        ET.SubElement(node.find("size"), "depth").text = str(_depth(source))
        node.insert(5, _text("segmented", "0"))
        for obj in node.iter("object"):
            for at, (tag, text) in enumerate((("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0")), 1):
                obj.insert(at, _text(tag, text))
        ET.indent(node)
        path = out / f"{stems[image.image]}.xml"
        ET.ElementTree(node).write(path, encoding="utf-8")
        written.append(path)
    return written


def write_yolo(labels: LabelSet, out: Path) -> list[Path]:
    images_dir, labels_dir = out / "images", out / "labels"
    images_dir.mkdir(exist_ok=True)
    labels_dir.mkdir(exist_ok=True)
    class_ids = {name: index for index, name in enumerate(labels.classes)}
    stems = _unique_stems(labels, out)
    written: list[Path] = []
    for image in labels.images:
        source = Path(image.image).resolve()
        if not source.is_file():
            raise LabelError(image.image, "(image)", "YOLO needs the image itself (its size is not stored)")
        link = images_dir / f"{stems[image.image]}{source.suffix}"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
        text = _annotation(image, link.name).to_yolo_darknet(label_to_id=class_ids)
        path = labels_dir / f"{stems[image.image]}.txt"
        path.write_text(text + "\n" if text else "")
        written.append(path)
    data = {"path": str(out), "train": "images", "val": "images", "names": dict(enumerate(labels.classes))}
    data_file = out / "data.yaml"
    data_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return [data_file, *written]


def _unique_stems(labels: LabelSet, out: Path) -> dict[str, str]:
    """One output file name per image; two images with one name in different folders fail clearly."""
    stems: dict[str, str] = {}
    owners: dict[str, str] = {}
    for image in labels.images:
        stem = Path(image.image).stem
        if stem in owners:
            raise LabelError(
                image.image, "(image)", f"shares its file name with {owners[stem]}; one folder {out} cannot hold both"
            )
        owners[stem] = image.image
        stems[image.image] = stem
    return stems


def _text(tag: str, text: str) -> ET.Element:
    node = ET.Element(tag)
    node.text = text
    return node


def _depth(image: Path) -> int:
    try:
        with Image.open(image) as opened:
            return len(opened.getbands())
    except OSError:
        return 3  # image not at hand: LabelImg's own default
