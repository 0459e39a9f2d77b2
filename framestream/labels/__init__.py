"""Label files in and out: CVAT for images 1.1, COCO JSON, YOLO (Ultralytics) and Pascal VOC (LabelImg)."""

from framestream.labels.read import read_labels
from framestream.labels.write import write_labels

__all__ = ["read_labels", "write_labels"]
