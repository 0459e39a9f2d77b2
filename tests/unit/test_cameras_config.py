"""streams.ingest.cameras: the cameras file validates strictly and names file, field and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from framestream.settings import REPO_ROOT
from streams.config_files import ConfigFileError
from streams.ingest.cameras import FileSource, FolderSource, SyntheticSource, UrlSource, UsbSource, load_cameras

GOOD = """
cameras:
  - id: street
    source: {kind: file, path: media/street.mp4, loop: true}
    fps: 10
  - id: stills
    source: {kind: folder, path: photos}
    fps: 2
    jpeg_quality: 70
    max_frames: 5
    resize_width: 320
  - id: pattern
    source: {kind: synthetic, width: 320, height: 240, pattern: noise, seed: 3}
  - id: gate.rtsp-1
    source: {kind: url, url: "rtsp://10.0.0.5:554/stream1", reconnect_max_s: 10}
  - id: desk
    source: {kind: usb, device: 2}
"""


def write(tmp_path: Path, text: str, name: str = "cameras.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "street.mp4").write_bytes(b"not checked here")
    (tmp_path / "photos").mkdir()
    return tmp_path


def test_good_file_loads_every_kind_and_resolves_paths_against_the_file(media_dir: Path) -> None:
    cameras = load_cameras(write(media_dir, GOOD))
    by_id = {camera.id: camera for camera in cameras}
    assert [camera.id for camera in cameras] == ["street", "stills", "pattern", "gate.rtsp-1", "desk"]
    assert isinstance(by_id["street"].source, FileSource)
    assert by_id["street"].source.path == media_dir / "media" / "street.mp4"
    assert by_id["street"].source.loop is True
    assert isinstance(by_id["stills"].source, FolderSource)
    assert by_id["stills"].source.path == media_dir / "photos"
    assert (by_id["stills"].jpeg_quality, by_id["stills"].max_frames, by_id["stills"].resize_width) == (70, 5, 320)
    assert isinstance(by_id["pattern"].source, SyntheticSource)
    assert (by_id["pattern"].source.width, by_id["pattern"].source.pattern) == (320, "noise")
    assert by_id["pattern"].fps == 5.0  # the default
    assert isinstance(by_id["gate.rtsp-1"].source, UrlSource)
    assert by_id["gate.rtsp-1"].source.reconnect_max_s == 10
    assert isinstance(by_id["desk"].source, UsbSource)
    assert by_id["desk"].source.device == 2


def test_the_bundled_sample_loads() -> None:
    cameras = load_cameras(REPO_ROOT / "samples" / "cameras.yaml")
    assert len(cameras) >= 2
    assert all(isinstance(camera.source, (FileSource, FolderSource)) for camera in cameras)


BAD_CASES = [
    # (camera entry, field named in the error, words in the message)
    ("{id: a, source: {kind: synthetic}, fps: fast}", "cameras[0].fps", "valid number"),
    ("{id: a, source: {kind: synthetic}, fps: -5}", "cameras[0].fps", "greater than 0"),
    ("{id: a, source: {kind: synthetic}, fps: 121}", "cameras[0].fps", "less than or equal to 120"),
    ("{id: a, source: {kind: synthetic}, fsp: 5}", "cameras[0].fsp", "unknown field"),
    ("{id: a, source: {kind: synthetic, colour: red}}", "cameras[0].source.synthetic.colour", "unknown field"),
    ("{id: a}", "cameras[0].source", "Field required"),
    ("{id: a, source: {kind: vhs}}", "cameras[0].source", "does not match any of the expected tags"),
    ("{id: a, source: {path: x.mp4}}", "cameras[0].source", "discriminator 'kind'"),
    ("{id: 'a b', source: {kind: synthetic}}", "cameras[0].id", "pattern"),
    ("{id: a, source: {kind: synthetic}, jpeg_quality: 0}", "cameras[0].jpeg_quality", "greater than or equal to 1"),
    ("{id: a, source: {kind: synthetic}, max_frames: 0}", "cameras[0].max_frames", "greater than or equal to 1"),
    ("{id: a, source: {kind: url, url: 'camera-1'}}", "cameras[0].source.url.url", "pattern"),
    ("{id: a, source: {kind: usb, device: -1}}", "cameras[0].source.usb.device", "greater than or equal to 0"),
    (
        "{id: a, source: {kind: url, url: 'rtsp://x/y', reconnect_initial_s: 5, reconnect_max_s: 1}}",
        "cameras[0].source.url",
        "reconnect_max_s must be >= reconnect_initial_s",
    ),
    ("{id: a, source: {kind: file, path: missing.mp4}}", "cameras[0].source.path", "no such video file"),
    ("{id: a, source: {kind: folder, path: nowhere}}", "cameras[0].source.path", "no such folder"),
]


@pytest.mark.parametrize(("entry", "field", "words"), BAD_CASES)
def test_bad_file_names_file_field_and_problem(tmp_path: Path, entry: str, field: str, words: str) -> None:
    path = write(tmp_path, f"cameras:\n  - {entry}\n")
    with pytest.raises(ConfigFileError) as caught:
        load_cameras(path)
    fields = [problem_field for problem_field, _ in caught.value.problems]
    assert field in fields, caught.value.problems
    line = next(line for line in str(caught.value).splitlines() if line.startswith(f"{path}: {field}: "))
    assert words in line


def test_duplicate_camera_ids_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras:\n  - {id: a, source: {kind: synthetic}}\n  - {id: a, source: {kind: synthetic}}\n")
    with pytest.raises(ConfigFileError, match=r"cameras: .*repeated: a"):
        load_cameras(path)


@pytest.mark.parametrize(
    ("text", "words"),
    [("", "file is empty"), ("cameras: []\n", "at least 1 item"), ("cameras: [\n", "invalid YAML")],
)
def test_empty_or_broken_files_are_rejected(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError, match=words) as caught:
        load_cameras(path)
    assert str(path) in str(caught.value)


def test_a_missing_file_is_reported_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read file") as caught:
        load_cameras(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(caught.value)
