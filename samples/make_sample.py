"""Build the bundled demo media from the darknet test photos (reproducible).

    python samples/make_sample.py [--photos tests/data/photos] [--out samples/media]

Writes
- ``street.mp4``: a "camera" panning and zooming slowly over dog.jpg (bicycle,
  truck, dog) and then kite.jpg (people, kites), 10 fps, 640x480, MPEG-4 Part 2;
- ``park.mp4``: the same over person.jpg (person, horse, dog) and horses.jpg;
- ``photos/``: the four photos as stills, kite.jpg downscaled to 1024 pixels wide.

Each video is read back with OpenCV to check that it decodes to the expected
number of frames, so a codec missing from an OpenCV build fails here, not in the demo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

SAMPLES = Path(__file__).resolve().parent
REPO = SAMPLES.parent
FPS = 10
SIZE = (640, 480)  # width, height (4:3)
SECONDS_PER_PHOTO = 3
STILL_MAX_WIDTH = 1024
# (photo, start view, end view); a view is (centre x, centre y, crop height) as fractions of the photo.
SHOTS: dict[str, list[tuple[str, tuple[float, float, float], tuple[float, float, float]]]] = {
    "street.mp4": [
        ("dog.jpg", (0.50, 0.50, 1.00), (0.55, 0.45, 0.80)),
        ("kite.jpg", (0.55, 0.50, 0.90), (0.30, 0.60, 0.75)),
    ],
    "park.mp4": [
        ("person.jpg", (0.50, 0.50, 1.00), (0.45, 0.52, 0.85)),
        ("horses.jpg", (0.45, 0.50, 0.95), (0.55, 0.50, 0.80)),
    ],
}


def crop_view(photo: np.ndarray, centre_x: float, centre_y: float, height_fraction: float) -> np.ndarray:
    """The 4:3 window of the photo around a centre, clamped inside it, resized to SIZE."""
    photo_h, photo_w = photo.shape[:2]
    crop_h = min(photo_h, photo_h * height_fraction, photo_w * SIZE[1] / SIZE[0])
    crop_w = crop_h * SIZE[0] / SIZE[1]
    x0 = min(max(centre_x * photo_w - crop_w / 2, 0.0), photo_w - crop_w)
    y0 = min(max(centre_y * photo_h - crop_h / 2, 0.0), photo_h - crop_h)
    window = photo[round(y0) : round(y0 + crop_h), round(x0) : round(x0 + crop_w)]
    return cv2.resize(window, SIZE, interpolation=cv2.INTER_AREA)


def shot_frames(photo: np.ndarray, start: tuple[float, ...], end: tuple[float, ...]) -> list[np.ndarray]:
    count = FPS * SECONDS_PER_PHOTO
    frames = []
    for index in range(count):
        t = index / (count - 1)
        smooth = t * t * (3 - 2 * t)  # ease in and out, like a PTZ camera
        view = [a + (b - a) * smooth for a, b in zip(start, end, strict=True)]
        frames.append(crop_view(photo, *view))
    return frames


def read_photo(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read photo {path}")
    return image


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    if not writer.isOpened():
        raise SystemExit(f"this OpenCV build cannot write MPEG-4 video ({path})")
    for frame in frames:
        writer.write(frame)
    writer.release()
    check_video(path, len(frames))


def check_video(path: Path, expected_frames: int) -> None:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if frame.shape[1::-1] != SIZE:
            raise SystemExit(f"{path}: frame size {frame.shape[1::-1]}, expected {SIZE}")
        count += 1
    capture.release()
    if count != expected_frames:
        raise SystemExit(f"{path}: read back {count} frames, expected {expected_frames}")


def write_stills(photos: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("dog.jpg", "person.jpg", "kite.jpg", "horses.jpg"):
        image = read_photo(photos / name)
        if image.shape[1] <= STILL_MAX_WIDTH:
            (out / name).write_bytes((photos / name).read_bytes())  # unchanged copy
            continue
        height = round(image.shape[0] * STILL_MAX_WIDTH / image.shape[1])
        small = cv2.resize(image, (STILL_MAX_WIDTH, height), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(out / name), small, [cv2.IMWRITE_JPEG_QUALITY, 90])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=REPO / "tests" / "data" / "photos")
    parser.add_argument("--out", type=Path, default=SAMPLES / "media")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for video, shots in SHOTS.items():
        frames = [
            frame for name, start, end in shots for frame in shot_frames(read_photo(args.photos / name), start, end)
        ]
        write_video(args.out / video, frames)
        print(f"{args.out / video}: {len(frames)} frames at {FPS} fps, {(args.out / video).stat().st_size} bytes")
    write_stills(args.photos, args.out / "photos")
    print(f"{args.out / 'photos'}: {sorted(p.name for p in (args.out / 'photos').iterdir())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
