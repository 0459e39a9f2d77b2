"""Frame sources, one per camera kind: iterators of (BGR image, UTC capture time).

Every source behaves like a live camera. Replay sources (video file, image
folder, synthetic pattern) are paced in real time: a file plays at its own
frame rate, a folder and a synthetic pattern at the camera's target fps. Live
sources (URL, USB) block on the device and reconnect with backoff when it
fails. Every wait watches the ``stop`` event, so ``close()`` from another
thread ends a source within one frame interval or one stream timeout.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import cv2
import numpy as np

from streams.ingest.cameras import (
    IMAGE_SUFFIXES,
    Camera,
    FileSource,
    FolderSource,
    SyntheticSource,
    UrlSource,
    UsbSource,
)
from streams.retry import Backoff, RetryPolicy, log_retry

log = logging.getLogger(__name__)

# Called with (file path, its raw bytes, reason) for an image file that cannot be decoded.
UndecodableHandler = Callable[[Path, bytes, str], None]

# Fallback when a video file does not state its frame rate (OpenCV reports 0 or nonsense).
DEFAULT_VIDEO_FPS = 25.0


class SourceError(RuntimeError):
    """A camera source that cannot produce frames (missing file, nothing decodable)."""


class CapturedFrame(NamedTuple):
    image: np.ndarray  # BGR, uint8, HxWx3
    captured_at: datetime  # UTC


def utc_now() -> datetime:
    return datetime.now(UTC)


class Pacer:
    """Real-time schedule at ``fps`` ticks per second. When the caller falls more
    than one tick behind, the schedule re-anchors (the replay slows down) rather
    than releasing a burst of frames."""

    def __init__(self, fps: float, stop: threading.Event, clock: Callable[[], float] = time.monotonic) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.interval_s = 1.0 / fps
        self._stop = stop
        self._clock = clock
        self._next: float | None = None

    def wait(self) -> bool:
        """Sleep until the next tick; False when stop was requested meanwhile."""
        now = self._clock()
        if self._next is None or now - self._next > self.interval_s:
            self._next = now
        delay = self._next - now
        if delay > 0 and self._stop.wait(delay):
            return False
        self._next += self.interval_s
        return not self._stop.is_set()


class FrameSource(ABC):
    """Base of every source: iterate for frames, ``close()`` (or ``with``) to release."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop_event = stop or threading.Event()
        # The rate frames come at when known (a replay paces itself); None for a live stream.
        # At or below the camera's target there is nothing to sample away.
        self.rate_fps: float | None = None

    @abstractmethod
    def frames(self) -> Generator[CapturedFrame, None, None]:
        """Frames until the source ends or ``close()``; close the generator to release the device."""

    def __iter__(self) -> Iterator[CapturedFrame]:
        return self.frames()

    def sample_before_decoding(self, keep: Callable[[float], bool], on_skipped: Callable[[], None]) -> bool:
        """Have the source skip the frames ``keep(capture time)`` rejects before converting them
        (calling ``on_skipped`` for each); False when it cannot (the caller samples what it gets)."""
        return False

    def close(self) -> None:
        """Ask the source to stop; the iterator ends at its next wait."""
        self.stop_event.set()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def video_fps(capture: cv2.VideoCapture) -> float:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return float(fps) if 0 < fps <= 1000 else DEFAULT_VIDEO_FPS


class VideoFileSource(FrameSource):
    """A video file played at its own frame rate, optionally looping."""

    def __init__(self, config: FileSource, stop: threading.Event | None = None) -> None:
        super().__init__(stop)
        self.path = config.path
        self.loop = config.loop
        self._keep: Callable[[float], bool] | None = None
        self._on_skipped: Callable[[], None] = _ignore
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)  # the file's rate, known up front
        if capture.isOpened():
            self.rate_fps = video_fps(capture)
        capture.release()

    def sample_before_decoding(self, keep: Callable[[float], bool], on_skipped: Callable[[], None]) -> bool:
        self._keep, self._on_skipped = keep, on_skipped
        return True

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open video file {self.path}")
        return capture

    def frames(self) -> Generator[CapturedFrame, None, None]:
        while not self.stop_event.is_set():
            capture = self._open()
            try:
                self.rate_fps = video_fps(capture)
                pacer = Pacer(self.rate_fps, self.stop_event)
                count = yield from self._play(capture, pacer)
            finally:
                capture.release()
            if count == 0:
                raise SourceError(f"no frame could be decoded from video file {self.path}")
            if not self.loop:
                return

    def _play(self, capture: cv2.VideoCapture, pacer: Pacer) -> Generator[CapturedFrame, None, int]:
        count = 0
        while pacer.wait():
            if not capture.grab():
                break
            captured_at = utc_now()
            count += 1
            if self._keep is not None and not self._keep(captured_at.timestamp()):
                self._on_skipped()  # decoded (later frames depend on it), never converted
                continue
            ok, image = capture.retrieve()
            if not ok:
                break
            yield CapturedFrame(image, captured_at)
        return count


def decode_image_file(path: Path) -> tuple[np.ndarray | None, bytes, str]:
    """(BGR image or None, raw bytes, reason when None)."""
    raw = path.read_bytes()
    try:
        image = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR) if raw else None
    except cv2.error as error:
        return None, raw, f"cannot decode image file {path.name}: {error}"
    if image is None:
        return None, raw, f"cannot decode image file {path.name} ({len(raw)} bytes): not a readable image"
    return image, raw, ""


class ImageFolderSource(FrameSource):
    """Images of a folder in name order, one per tick of the camera's fps.

    A file that cannot be decoded goes to ``on_undecodable`` once and is skipped
    on later passes; the camera carries on with the next file.
    """

    def __init__(
        self,
        config: FolderSource,
        fps: float,
        on_undecodable: UndecodableHandler,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(stop)
        self.path = config.path
        self.loop = config.loop
        self.fps = fps
        self.on_undecodable = on_undecodable
        self.rate_fps = fps
        self.rejected: set[Path] = set()
        self._told_ignored = False

    def image_files(self) -> list[Path]:
        if not self.path.is_dir():
            raise SourceError(f"no such folder: {self.path}")
        files = sorted(p for p in self.path.iterdir() if p.is_file() and not p.name.startswith("."))
        ignored = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if ignored and not self._told_ignored:
            self._told_ignored = True
            log.info("ignoring files without an image suffix", extra={"folder": str(self.path), "files": ignored})
        return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p not in self.rejected]

    def frames(self) -> Generator[CapturedFrame, None, None]:
        pacer = Pacer(self.fps, self.stop_event)
        while True:
            files = self.image_files()
            count = yield from self._pass(files, pacer)
            if not self.loop or self.stop_event.is_set():
                return
            if count == 0:
                raise SourceError(f"no decodable images in folder {self.path}")

    def _pass(self, files: list[Path], pacer: Pacer) -> Generator[CapturedFrame, None, int]:
        count = 0
        for path in files:
            image, raw, reason = decode_image_file(path)
            if image is None:
                self.rejected.add(path)
                self.on_undecodable(path, raw, reason)
                continue
            if not pacer.wait():
                break
            count += 1
            yield CapturedFrame(image, utc_now())
        return count


class SyntheticPatternSource(FrameSource):
    """Generated frames at the camera's fps: coloured boxes moving over a gradient, or noise."""

    def __init__(self, config: SyntheticSource, fps: float, stop: threading.Event | None = None) -> None:
        super().__init__(stop)
        self.config = config
        self.fps = fps
        self.rate_fps = fps
        self._rng = np.random.default_rng(config.seed)
        self._background = self._gradient(config.width, config.height)

    @staticmethod
    def _gradient(width: int, height: int) -> np.ndarray:
        ramp_x = np.linspace(40, 200, width, dtype=np.float32)[None, :]
        ramp_y = np.linspace(30, 120, height, dtype=np.float32)[:, None]
        return np.dstack(
            [
                np.broadcast_to(ramp_x, (height, width)),
                np.broadcast_to(ramp_y, (height, width)),
                np.full((height, width), 90, np.float32),
            ]
        ).astype(np.uint8)

    def render(self, index: int) -> np.ndarray:
        width, height = self.config.width, self.config.height
        if self.config.pattern == "noise":
            return self._rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        image = self._background.copy()
        size = max(8, min(width, height) // 5)
        colours = [(0, 0, 255), (0, 200, 0), (255, 80, 0)]
        for box, colour in enumerate(colours):
            x = _bounce(index * (3 + 2 * box) + box * width // 3, width - size)
            y = _bounce(index * (2 + box) + box * height // 4, height - size)
            cv2.rectangle(image, (x, y), (x + size, y + size), colour, thickness=-1)
        cv2.putText(image, str(index), (8, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
        return image

    def frames(self) -> Generator[CapturedFrame, None, None]:
        pacer = Pacer(self.fps, self.stop_event)
        index = 0
        while pacer.wait():
            yield CapturedFrame(self.render(index), utc_now())
            index += 1


def _bounce(position: int, span: int) -> int:
    """Position moving back and forth over 0..span."""
    if span <= 0:
        return 0
    cycle = position % (2 * span)
    return cycle if cycle <= span else 2 * span - cycle


# OpenCV hands FFmpeg options to its demuxer only through this environment variable, read at
# every open. TCP-interleaved RTSP: no lost or reordered UDP packets (smeared H.264 frames), one
# port through firewalls and NAT. low_delay: the decoder hands out each frame as soon as it is
# complete (no reordering delay). Not fflags;nobuffer: it drops the packets read while the stream
# is probed -- the first key frame -- so the first second after every (re)connect is lost. An
# operator's own value of the variable is kept (README: "Cameras: RTSP, health, scale").
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
FFMPEG_CAPTURE_OPTIONS = "rtsp_transport;tcp|flags;low_delay"
RECONNECT_JITTER = 0.1  # each reconnect wait is its backoff step x (1 +- 0.1)
# This many undecodable frames in a row means the stream is broken: reopen it.
MAX_DECODE_ERRORS_IN_A_ROW = 25


def use_ffmpeg_capture_options(options: str = FFMPEG_CAPTURE_OPTIONS) -> str:
    """Set OpenCV's FFmpeg capture options unless already set; the options in force."""
    return os.environ.setdefault(FFMPEG_OPTIONS_ENV, options)


def _ignore(*args: object) -> None:
    return None


@dataclass(frozen=True)
class StreamEvents:
    """What a live stream tells its owner besides frames (health accounting, metrics). The
    callbacks run on the camera's thread and must not block."""

    on_lost: Callable[[str], None] = _ignore  # the stream ended, failed or could not be opened
    on_reconnect: Callable[[], None] = _ignore  # a reconnect attempt is about to wait its backoff
    on_decode_error: Callable[[str], None] = _ignore  # a frame arrived but could not be decoded


class LiveStreamSource(FrameSource):
    """An OpenCV stream (URL or USB device) that reconnects with exponential backoff.

    ``grab()`` reads and decodes a frame (a failure: the stream is lost), ``retrieve()``
    converts it to BGR (a failure: a decode error, and the stream goes on until too many come in
    a row). The capture time is taken when the frame arrives. A frame sampled away is grabbed
    (H.264 frames depend on earlier ones) but never converted: for a 1080p stream that saves
    about half of the per-frame cost (README, "Cameras: RTSP, health, scale").
    """

    def __init__(
        self,
        config: UrlSource | UsbSource,
        stop: threading.Event | None = None,
        events: StreamEvents | None = None,
    ) -> None:
        super().__init__(stop)
        self.config = config
        self.reconnects = 0
        self.events = events or StreamEvents()
        self._keep: Callable[[float], bool] | None = None
        self._on_skipped: Callable[[], None] = _ignore
        self.target = config.url if isinstance(config, UrlSource) else config.device
        if isinstance(self.target, str):
            use_ffmpeg_capture_options()

    def sample_before_decoding(self, keep: Callable[[float], bool], on_skipped: Callable[[], None]) -> bool:
        self._keep, self._on_skipped = keep, on_skipped
        return True

    def _open(self) -> cv2.VideoCapture | None:
        timeout_ms = int(self.config.timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        if isinstance(self.target, str):
            capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)
        else:
            capture = cv2.VideoCapture(self.target, cv2.CAP_ANY, params)
        if capture.isOpened():
            return capture
        capture.release()
        return None

    def frames(self) -> Generator[CapturedFrame, None, None]:
        # Jitter: many cameras behind one switch that reboots do not all reconnect in step.
        policy = RetryPolicy(
            initial_s=self.config.reconnect_initial_s, max_s=self.config.reconnect_max_s, jitter=RECONNECT_JITTER
        )
        backoff = Backoff(policy)
        while not self.stop_event.is_set():
            capture = self._open()
            reason = "cannot open the stream (closed or unreachable)"
            if capture is not None:
                try:
                    reason = "the stream ended or failed"
                    for frame in self._read(capture):
                        backoff.reset()  # healthy again
                        yield frame
                finally:
                    capture.release()
            if self.stop_event.is_set():
                return
            self.events.on_lost(reason)
            self.reconnects += 1
            self.events.on_reconnect()
            delay = backoff.next_delay()
            log_retry(log, f"camera stream {self.target}", backoff.attempts, delay, reason, source=str(self.target))
            if self.stop_event.wait(delay):
                return

    def _read(self, capture: cv2.VideoCapture) -> Iterator[CapturedFrame]:
        errors_in_a_row = 0
        while not self.stop_event.is_set() and errors_in_a_row < MAX_DECODE_ERRORS_IN_A_ROW:
            if not capture.grab():
                return
            captured_at = utc_now()
            if self._keep is not None and not self._keep(captured_at.timestamp()):
                self._on_skipped()
                continue
            ok, image = capture.retrieve()
            if not ok or image is None or image.size == 0:
                errors_in_a_row += 1
                self.events.on_decode_error(f"undecodable frame from {self.target}")
                continue
            errors_in_a_row = 0
            yield CapturedFrame(image, captured_at)


def open_source(
    camera: Camera,
    on_undecodable: UndecodableHandler,
    stop: threading.Event | None = None,
    events: StreamEvents | None = None,
) -> FrameSource:
    """The frame source for a camera's configured kind; ``events`` reach the owner of a live stream."""
    source = camera.source
    if isinstance(source, FileSource):
        return VideoFileSource(source, stop)
    if isinstance(source, FolderSource):
        return ImageFolderSource(source, camera.fps, on_undecodable, stop)
    if isinstance(source, SyntheticSource):
        return SyntheticPatternSource(source, camera.fps, stop)
    return LiveStreamSource(source, stop, events)
