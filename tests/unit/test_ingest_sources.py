"""streams.ingest.sources and the pure parts of the producer: frames, pacing, encoding, dead letters."""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from framestream.settings import REPO_ROOT
from schemas import DeadLetter, FrameMeta
from streams.ingest.cameras import Camera, FileSource, FolderSource, SyntheticSource
from streams.ingest.frames import MAX_DEAD_LETTER_ORIGINAL, dead_letter_for_file, encode_frame
from streams.ingest.sources import (
    CapturedFrame,
    ImageFolderSource,
    Pacer,
    SourceError,
    SyntheticPatternSource,
    VideoFileSource,
    open_source,
)

PHOTOS = REPO_ROOT / "tests" / "data" / "photos"
SAMPLE_VIDEO = REPO_ROOT / "samples" / "media" / "street.mp4"


class FakeTime:
    """A clock and a stop event whose waits advance the clock instead of sleeping."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, delay: float) -> bool:
        self.waits.append(round(delay, 6))
        self.now += delay
        return False

    def is_set(self) -> bool:
        return False


def test_pacer_waits_one_interval_per_tick() -> None:
    fake = FakeTime()
    pacer = Pacer(4.0, fake, clock=fake.clock)  # type: ignore[arg-type]
    for _ in range(4):
        assert pacer.wait()
        fake.now += 0.05  # work done per frame
    assert fake.waits == [0.2, 0.2, 0.2]  # 0.25 s per tick at 4 fps, less the 0.05 s of work


def test_pacer_reanchors_when_the_caller_falls_behind() -> None:
    fake = FakeTime()
    pacer = Pacer(10.0, fake, clock=fake.clock)  # type: ignore[arg-type]
    assert pacer.wait()
    fake.now += 1.0  # one frame took a second
    assert pacer.wait()  # no wait, and no burst of catch-up ticks afterwards
    assert pacer.wait()
    assert fake.waits == [0.1]


def test_pacer_stops_when_asked() -> None:
    stop = threading.Event()
    pacer = Pacer(1.0, stop)
    assert pacer.wait()
    stop.set()
    assert not pacer.wait()


def copy_photos(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(PHOTOS / name, folder / name)


def test_folder_source_reads_images_in_name_order_and_reports_undecodable_files(tmp_path: Path) -> None:
    folder = tmp_path / "cam"
    copy_photos(folder, ["person.jpg", "dog.jpg"])
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not an image, ignored")
    rejected: list[tuple[str, bytes, str]] = []
    source = ImageFolderSource(
        FolderSource(kind="folder", path=folder),
        fps=100.0,
        on_undecodable=lambda path, raw, reason: rejected.append((path.name, raw, reason)),
    )
    frames = list(source)
    assert [frame.image.shape for frame in frames] == [(576, 768, 3), (424, 640, 3)]  # dog, then person
    assert all(frame.captured_at.tzinfo is UTC for frame in frames)
    assert frames[0].captured_at <= frames[1].captured_at
    assert rejected == [("broken.jpg", b"\xff\xd8 not really a jpeg", rejected[0][2])]
    assert "broken.jpg" in rejected[0][2]


def test_looping_folder_reports_a_bad_file_once(tmp_path: Path) -> None:
    folder = tmp_path / "cam"
    copy_photos(folder, ["dog.jpg"])
    (folder / "a-broken.png").write_bytes(b"garbage")
    rejected: list[str] = []
    source = ImageFolderSource(
        FolderSource(kind="folder", path=folder, loop=True),
        fps=200.0,
        on_undecodable=lambda path, raw, reason: rejected.append(path.name),
    )
    frames = source.frames()
    images = [next(frames) for _ in range(5)]
    frames.close()
    assert len(images) == 5 and rejected == ["a-broken.png"]


def test_a_folder_without_decodable_images_fails_instead_of_spinning(tmp_path: Path) -> None:
    (tmp_path / "cam").mkdir()
    (tmp_path / "cam" / "x.jpg").write_bytes(b"nope")
    source = ImageFolderSource(FolderSource(kind="folder", path=tmp_path / "cam", loop=True), 100.0, lambda *a: None)
    with pytest.raises(SourceError, match="no decodable images"):
        list(source)


def test_video_file_source_reads_the_bundled_sample() -> None:
    source = VideoFileSource(FileSource(kind="file", path=SAMPLE_VIDEO))
    frames = source.frames()
    first = [next(frames) for _ in range(3)]
    frames.close()
    assert all(frame.image.shape == (480, 640, 3) for frame in first)


def test_video_file_source_rejects_a_file_that_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "fake.mp4"
    path.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match=r"fake\.mp4"):
        list(VideoFileSource(FileSource(kind="file", path=path)))


def test_synthetic_source_draws_moving_boxes_and_stops_on_close() -> None:
    config = SyntheticSource(kind="synthetic", width=160, height=120)
    source = SyntheticPatternSource(config, fps=200.0)
    frames = source.frames()
    first, second = next(frames), next(frames)
    source.close()
    assert list(frames) == []
    assert first.image.shape == (120, 160, 3)
    assert not np.array_equal(first.image, second.image)


def test_open_source_picks_the_class_for_each_kind(tmp_path: Path) -> None:
    copy_photos(tmp_path / "cam", ["dog.jpg"])
    kinds = {
        "file": (FileSource(kind="file", path=SAMPLE_VIDEO), VideoFileSource),
        "folder": (FolderSource(kind="folder", path=tmp_path / "cam"), ImageFolderSource),
        "synthetic": (SyntheticSource(kind="synthetic"), SyntheticPatternSource),
    }
    for source_config, expected in kinds.values():
        camera = Camera(id="c", source=source_config, fps=5)
        assert isinstance(open_source(camera, lambda *a: None), expected)


def test_encode_frame_resizes_encodes_and_describes() -> None:
    image = cv2.imread(str(PHOTOS / "dog.jpg"))
    camera = Camera(id="cam-1", source=SyntheticSource(kind="synthetic"), jpeg_quality=60, resize_width=384)
    captured_at = datetime(2025, 1, 1, tzinfo=UTC)
    encoded = encode_frame(camera, CapturedFrame(image, captured_at), frame_seq=7)
    decoded = cv2.imdecode(np.frombuffer(encoded.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (288, 384, 3)
    assert (encoded.meta.width, encoded.meta.height, encoded.meta.frame_seq) == (384, 288, 7)
    assert encoded.meta.stats is not None and encoded.meta.stats.sharpness > 0
    assert FrameMeta.from_headers(encoded.meta.to_headers()) == encoded.meta


def test_dead_letter_for_an_undecodable_file_keeps_the_bytes_and_names_the_file() -> None:
    path = Path("/x/broken.jpg")
    letter = dead_letter_for_file("cam-1", "vision.frames.v1", path, b"abc", "cannot decode broken.jpg")
    parsed = DeadLetter.model_validate_json(letter.model_dump_json())
    assert (parsed.stage, parsed.original, parsed.key) == ("ingest", b"abc", b"cam-1")
    assert parsed.headers["source-path"] == "/x/broken.jpg"


def test_dead_letter_leaves_out_bytes_too_large_for_a_record() -> None:
    raw = b"x" * (MAX_DEAD_LETTER_ORIGINAL + 1)
    letter = dead_letter_for_file("cam-1", "frames", Path("huge.jpg"), raw, "cannot decode huge.jpg")
    assert letter.original == b""
    assert "left out" in letter.reason and letter.headers["original-size"] == str(len(raw))
