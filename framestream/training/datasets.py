"""Labelled image sets for the classifier: the ``elpv-dataset`` package, or a folder.

A folder is either elpv's own layout (``labels.csv`` of ``path probability type`` rows beside
the images) or one subfolder of images per class, named by the class.

Usage::

    data = load_dataset("elpv")          # 2,624 solar cells, labels ("ok", "defect")
    data = load_dataset("path/to/cells") # folder/<label>/*.png
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ELPV_LABELS = ("ok", "defect")
DEFECT_THRESHOLD = 0.5  # elpv's expert defect probabilities are 0, 1/3, 2/3 and 1
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


class DatasetError(ValueError):
    """The data set is missing, empty or malformed."""


@dataclass(frozen=True)
class ImageSet:
    """Image files and their class ids (indices into ``labels``)."""

    paths: tuple[Path, ...]
    targets: np.ndarray  # int64 [n]
    labels: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        if len(self.paths) != self.targets.shape[0]:
            raise DatasetError(f"{len(self.paths)} images but {self.targets.shape[0]} labels")

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: np.ndarray) -> ImageSet:
        return ImageSet(tuple(self.paths[i] for i in indices), self.targets[indices], self.labels, self.name)


def elpv_class(probability: float) -> int:
    """elpv's defect probability to a class id of ELPV_LABELS: ``ok`` below 1/2 (0 and 1/3,
    cells the experts called functional or probably so), ``defect`` from 1/2 (2/3 and 1)."""
    if not 0.0 <= probability <= 1.0:
        raise DatasetError(f"defect probability must be within [0, 1], got {probability}")
    return int(probability >= DEFECT_THRESHOLD)


def elpv_root() -> Path:
    """The folder of the installed ``elpv-dataset`` package's labels.csv and images."""
    try:
        import elpv_dataset
    except ImportError as error:
        raise DatasetError("the elpv-dataset package is not installed: run scripts/setup.sh") from error
    return Path(elpv_dataset.__file__).resolve().parent / "data"


def load_dataset(source: str | Path) -> ImageSet:
    """``elpv`` (the installed package) or a folder; DatasetError if unusable."""
    root = elpv_root() if str(source) == "elpv" else Path(source)
    if (root / "labels.csv").is_file():
        return read_elpv_labels(root / "labels.csv", name="elpv" if str(source) == "elpv" else str(source))
    if not root.is_dir():
        raise DatasetError(f"no data set at {root}: expected 'elpv' or a folder")
    return read_class_folders(root)


def read_elpv_labels(labels_csv: Path, name: str = "elpv") -> ImageSet:
    paths: list[Path] = []
    targets: list[int] = []
    for number, line in enumerate(labels_csv.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise DatasetError(f"{labels_csv}:{number}: expected 'path probability type', got {line!r}")
        try:
            probability = float(fields[1])
        except ValueError as error:
            raise DatasetError(f"{labels_csv}:{number}: probability {fields[1]!r} is not a number") from error
        paths.append(labels_csv.parent / fields[0])
        targets.append(elpv_class(probability))
    if not paths:
        raise DatasetError(f"{labels_csv} lists no images")
    return ImageSet(tuple(paths), np.array(targets, np.int64), ELPV_LABELS, name)


def read_class_folders(root: Path) -> ImageSet:
    labels = tuple(sorted(child.name for child in root.iterdir() if child.is_dir()))
    if len(labels) < 2:
        raise DatasetError(f"{root}: expected labels.csv or at least two class subfolders, found {list(labels)}")
    paths: list[Path] = []
    targets: list[int] = []
    for class_id, label in enumerate(labels):
        images = sorted(p for p in (root / label).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DatasetError(f"{root / label}: no .png/.jpg images")
        paths += images
        targets += [class_id] * len(images)
    return ImageSet(tuple(paths), np.array(targets, np.int64), labels, str(root))


def data_hash(images: ImageSet) -> str:
    """sha256 over the labels, and each image's name, class and bytes: the data's identity,
    stored in the model's metadata and keying the feature cache."""
    digest = hashlib.sha256(repr(images.labels).encode())
    for path, target in zip(images.paths, images.targets, strict=True):
        digest.update(f"{path.name}\t{int(target)}\t".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def stratified_subset(images: ImageSet, size: int, seed: int) -> ImageSet:
    """``size`` images with the classes in the set's proportions (at least 2 per class)."""
    if size >= len(images):
        return images
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for class_id in range(len(images.labels)):
        members = np.flatnonzero(images.targets == class_id)
        take = max(2, round(size * len(members) / len(images)))
        chosen += list(rng.choice(members, size=min(take, len(members)), replace=False))
    return images.subset(np.array(sorted(chosen)))
