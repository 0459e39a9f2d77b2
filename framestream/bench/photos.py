"""The photos every benchmark feeds: the bundled darknet test photos (``tests/data/photos``).

A benchmark without its inputs fails, naming the folder, rather than measuring noise images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2

from framestream.settings import REPO_ROOT

PHOTOS = REPO_ROOT / "tests" / "data" / "photos"
MAX_FRAME_BYTES = 900_000  # under librdkafka's 1 MB message.max.bytes
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class MissingBenchInput(FileNotFoundError):
    """A benchmark's input folder holds no images."""


@dataclass(frozen=True)
class Photo:
    data: bytes
    width: int
    height: int


def image_files(folder: Path) -> list[Path]:
    """The folder's JPEG/PNG files, sorted; ``MissingBenchInput`` if there are none."""
    files = sorted(path for path in Path(folder).glob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MissingBenchInput(
            f"no .jpg/.jpeg/.png images in {folder}: the benchmarks read the bundled test "
            "photos (tests/data/photos, see its README) or a folder given with --images"
        )
    return files


def load_photos(folder: Path = PHOTOS) -> list[Photo]:
    """Each image as frame bytes (re-encoded when over the broker's message size) and its size."""
    photos = []
    for path in image_files(folder):
        image = cv2.imread(str(path))
        data = path.read_bytes()
        if len(data) > MAX_FRAME_BYTES:
            data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
        photos.append(Photo(data, image.shape[1], image.shape[0]))
    return photos
