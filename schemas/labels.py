"""A labelled image set, whatever format it was read from: the one shape every label format maps to.

Boxes are absolute pixels, x1 y1 x2 y2, in the image's own size; ``image`` is the image's path as
the label file gives it (resolved against the label file's folder by the reader).
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

LABEL_FORMATS: tuple[str, ...] = ("coco", "yolo", "voc", "cvat")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LabelBox(_Frozen):
    label: str = Field(min_length=1, description="class name")
    x1: float
    y1: float
    x2: float
    y2: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.x2 <= self.x1:
            raise ValueError(f"x2 ({self.x2}) must be greater than x1 ({self.x1})")
        if self.y2 <= self.y1:
            raise ValueError(f"y2 ({self.y2}) must be greater than y1 ({self.y1})")
        return self


class LabeledImage(_Frozen):
    image: str = Field(min_length=1, description="image path as referenced by the label file")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    boxes: tuple[LabelBox, ...] = ()

    @model_validator(mode="after")
    def _inside(self) -> Self:
        # Half a pixel of slack: some tools write the right/bottom edge as width or width + 0.5.
        for index, box in enumerate(self.boxes):
            if box.x1 < -0.5 or box.y1 < -0.5 or box.x2 > self.width + 0.5 or box.y2 > self.height + 0.5:
                raise ValueError(
                    f"boxes[{index}] ({box.x1}, {box.y1}, {box.x2}, {box.y2}) lies outside the "
                    f"{self.width}x{self.height} image"
                )
        return self


class LabelSet(_Frozen):
    classes: tuple[str, ...] = Field(description="class names; a box's class id is its index here")
    images: tuple[LabeledImage, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes holds a name twice")
        known = set(self.classes)
        seen: set[str] = set()
        for image in self.images:
            if image.image in seen:
                raise ValueError(f"image {image.image!r} is listed twice")
            seen.add(image.image)
            for box in image.boxes:
                if box.label not in known:
                    raise ValueError(f"image {image.image!r}: class {box.label!r} is not in classes")
        return self
