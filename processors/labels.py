"""Pure helpers over label sets: building one from loose boxes, and comparing two after a round trip."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePath

from pydantic import ValidationError

from schemas.labels import LabeledImage, LabelSet


class LabelError(ValueError):
    """A label file that cannot be used: which file, which field, what is wrong."""

    def __init__(self, file: str, field: str, problem: str) -> None:
        super().__init__(f"{file}: {field}: {problem}")
        self.file, self.field, self.problem = file, field, problem


def build_label_set(file: str, classes: Iterable[str] | None, images: list[dict[str, object]]) -> LabelSet:
    """Validate raw image dicts into a LabelSet; classes default to the sorted names the boxes use.

    A validation failure becomes a LabelError naming ``file`` and the first bad field, e.g.
    ``images[3] (a.jpg).boxes[0]``.
    """
    if classes is None:
        classes = sorted({str(box["label"]) for image in images for box in image["boxes"]})  # type: ignore[attr-defined]
    try:
        return LabelSet(classes=tuple(classes), images=tuple(images))
    except ValidationError as error:
        first = error.errors()[0]
        raise LabelError(file, _field_name(first["loc"], images), first["msg"]) from None


def _field_name(loc: tuple[int | str, ...], images: list[dict[str, object]]) -> str:
    parts: list[str] = []
    for index, part in enumerate(loc):
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
            if index == 1 and loc[0] == "images" and part < len(images):
                parts[-1] += f" ({images[part].get('image')})"
        else:
            parts.append(str(part))
    return ".".join(parts) or "(file)"


def boxes_by_image(label_set: LabelSet, key: str = "path") -> dict[str, list[tuple[str, tuple[float, ...]]]]:
    """Sorted (class, box) pairs per image, keyed by image path or, with key="name", file name."""
    result: dict[str, list[tuple[str, tuple[float, ...]]]] = {}
    for image in label_set.images:
        name = PurePath(image.image).name if key == "name" else image.image
        result[name] = sorted((box.label, (box.x1, box.y1, box.x2, box.y2)) for box in image.boxes)
    return result


def label_set_differences(
    expected: LabelSet, actual: LabelSet, tolerance: float = 1e-6, key: str = "path"
) -> list[str]:
    """What differs between two label sets (images, sizes, classes, boxes); empty when they match.

    ``tolerance`` is in pixels: normalised formats (YOLO) store boxes as fractions, which do not
    come back bit-identical.
    """
    problems: list[str] = []
    sizes_a = {_key(i, key): (i.width, i.height) for i in expected.images}
    sizes_b = {_key(i, key): (i.width, i.height) for i in actual.images}
    if sizes_a.keys() != sizes_b.keys():
        problems.append(
            f"images differ: only expected {sorted(sizes_a.keys() - sizes_b.keys())}, "
            f"only actual {sorted(sizes_b.keys() - sizes_a.keys())}"
        )
    boxes_a, boxes_b = boxes_by_image(expected, key), boxes_by_image(actual, key)
    for name in sorted(sizes_a.keys() & sizes_b.keys()):
        if sizes_a[name] != sizes_b[name]:
            problems.append(f"{name}: size {sizes_a[name]} != {sizes_b[name]}")
        a, b = boxes_a[name], boxes_b[name]
        if len(a) != len(b):
            problems.append(f"{name}: {len(a)} boxes != {len(b)} boxes")
            continue
        for (label_a, box_a), (label_b, box_b) in zip(a, b, strict=True):
            if label_a != label_b or max(abs(p - q) for p, q in zip(box_a, box_b, strict=True)) > tolerance:
                problems.append(f"{name}: {label_a} {box_a} != {label_b} {box_b}")
    return problems


def _key(image: LabeledImage, key: str) -> str:
    return PurePath(image.image).name if key == "name" else image.image
