"""HardExampleCapture with a local folder store and a stand-in for the frames topic: what it stores,
what it produces, frames gone from the topic, reviews, and the rows persist writes for it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from schemas.hard_examples import HardExample, HardExampleReason
from streams.context import WorkerContext, WorkerSettings
from streams.example_store import FileStore, StoreError, file_path, open_store
from streams.faces import PrivacySettings
from streams.frame_reader import FrameFetchError
from streams.hard_examples import FrameIndex, HardExampleCapture, HardExampleSettings, store_keys
from streams.inference import DetectorClientSettings
from streams.kafka_config import KafkaSettings
from streams.metrics import WorkerMetrics
from streams.retry import RetryPolicy
from streams.sinks.rows import HARD_EXAMPLES, rows_for
from streams.topics import TopicNames
from tests.factories import make_alert, make_alert_review, make_detection, make_frame_detections

JPEG = b"\xff\xd8\xff\xe0 a frame"


class FramesOnTopic:
    """Stands in for the frames topic: offsets to JPEGs; a missing offset is a frame retention removed."""

    def __init__(self, frames: dict[int, bytes], unavailable_times: int = 0) -> None:
        self.frames = frames
        self.unavailable_times = unavailable_times
        self.reads: list[tuple[int, int, str]] = []
        self.closed = False

    def fetch(self, partition: int, offset: int, event_id: str) -> bytes | None:
        self.reads.append((partition, offset, event_id))
        if self.unavailable_times:
            self.unavailable_times -= 1
            raise FrameFetchError("broker away")
        return self.frames.get(offset)

    def close(self) -> None:
        self.closed = True


def capture(
    tmp_path: Path, fetcher: FramesOnTopic, privacy: PrivacySettings | None = None, **settings: float
) -> HardExampleCapture:
    stream = SimpleNamespace(
        triton=DetectorClientSettings(url="triton:8001", score_threshold=0.35),
        data_dir=tmp_path,
        kafka=KafkaSettings(bootstrap_servers="localhost:1"),
    )
    worker = WorkerSettings(retry_max_backoff_s=0.01)
    context = WorkerContext(stream, worker, TopicNames(""), WorkerMetrics("w", CollectorRegistry()), "w")  # type: ignore[arg-type]
    options = {"min_interval_s": 0.0, "rare_min_history": 0, "rare_fraction": 0.0} | settings
    return HardExampleCapture(
        context,
        topic="hard-examples-topic",  # type: ignore[arg-type]
        settings=HardExampleSettings(**options),
        store=FileStore(tmp_path / "store"),
        fetcher=fetcher,  # type: ignore[arg-type]
        privacy=privacy or PrivacySettings(),
    )


def uncertain_frame(seq: int = 3, **fields: object):  # noqa: ANN201
    detections = [make_detection("dog", 0.38, (10, 10, 50, 60)), make_detection("person", 0.9, (100, 10, 200, 300))]
    return make_frame_detections("cam-1", seq, detections, **({"frame_partition": 2, "frame_offset": seq} | fields))


def run(coroutine):  # noqa: ANN001, ANN201
    return asyncio.run(coroutine)


def test_an_uncertain_frame_is_stored_and_produced(tmp_path: Path) -> None:
    fetcher = FramesOnTopic({3: JPEG}, unavailable_times=2)
    hard = capture(tmp_path, fetcher)
    message = uncertain_frame()
    records = run(hard.on_detections(message, drifting=True))
    assert fetcher.reads == [(2, 3, "cam-1:3")] * 3, "the broker away twice: retried, not skipped"
    examples = [HardExample.model_validate_json(record.value) for record in records]
    assert [e.example_id for e in examples] == ["cam-1:3:uncertain", "cam-1:3:drifting_camera"]
    assert all(record.key == b"cam-1" and record.topic == "hard-examples-topic" for record in records)
    first = examples[0]
    assert first.detail == "dog 0.380 within 0.1 of threshold 0.35"
    assert first.predictions == message.detections and (first.width, first.height) == (640, 480)
    assert file_path(first.image_uri).read_bytes() == JPEG
    assert file_path(first.image_uri) == tmp_path / "store" / "cam-1" / "cam-1_000000000003.jpg"
    stored = json.loads(file_path(first.predictions_uri).read_text())
    assert stored["event_id"] == "cam-1:3" and len(stored["detections"]) == 2
    hard.close()
    assert fetcher.closed


def test_a_plain_frame_is_not_kept(tmp_path: Path) -> None:
    fetcher = FramesOnTopic({0: JPEG})
    message = make_frame_detections("cam-1", 0, [make_detection("person", 0.9)], frame_partition=0, frame_offset=0)
    assert run(capture(tmp_path, fetcher).on_detections(message, drifting=False)) == []
    assert fetcher.reads == [] and not (tmp_path / "store").exists()


def test_a_frame_gone_from_the_topic_is_recorded_without_image(tmp_path: Path) -> None:
    records = run(capture(tmp_path, FramesOnTopic({})).on_detections(uncertain_frame(), drifting=False))
    example = HardExample.model_validate_json(records[0].value)
    assert example.image_uri is None and file_path(example.predictions_uri).is_file()
    legacy = uncertain_frame(frame_partition=None, frame_offset=None)  # detections without the frame's place
    records = run(capture(tmp_path, FramesOnTopic({3: JPEG})).on_detections(legacy, drifting=False))
    assert HardExample.model_validate_json(records[0].value).image_uri is None


def test_a_false_positive_review_brings_its_frame_back(tmp_path: Path) -> None:
    hard = capture(tmp_path, FramesOnTopic({7: JPEG}))
    message = make_frame_detections("cam-1", 7, [make_detection("person", 0.9)], frame_partition=1, frame_offset=7)
    assert run(hard.on_detections(message, drifting=False)) == []
    alert = make_alert("person-seen", "cam-1", 7)
    assert run(hard.on_review(make_alert_review(alert, "true_positive"))) == []
    records = run(hard.on_review(make_alert_review(alert, "false_positive", reviewer="bo")))
    example = HardExample.model_validate_json(records[0].value)
    assert example.example_id == "cam-1:7:reviewed_false" and example.reason is HardExampleReason.REVIEWED_FALSE
    assert example.review_id == "person-seen:cam-1:7:bo" and file_path(example.image_uri).read_bytes() == JPEG
    unknown = make_alert("person-seen", "cam-1", 99)
    assert run(hard.on_review(make_alert_review(unknown, "false_positive"))) == [], "not in the index"


def test_frame_index_is_bounded() -> None:
    index = FrameIndex(2)
    for seq in range(3):
        index.add(make_frame_detections("cam-1", seq))
    assert index.get("cam-1:0") is None and index.get("cam-1:2") is not None


def test_rows_for_a_hard_example(tmp_path: Path) -> None:
    records = run(capture(tmp_path, FramesOnTopic({3: JPEG})).on_detections(uncertain_frame(), drifting=False))
    example = HardExample.model_validate_json(records[0].value)
    parts = rows_for(example)
    assert parts.message_id == "cam-1:3:uncertain"
    (table_rows,) = parts.parts
    row = table_rows.rows[0]
    assert table_rows.table is HARD_EXAMPLES and row.reason == "uncertain" and row.prediction_count == 2
    assert [d["class_name"] for d in json.loads(row.predictions)] == ["dog", "person"]


def test_store_keys_are_unique_stems_per_camera() -> None:
    assert store_keys(make_frame_detections("cam.a", 42)) == (
        "cam.a/cam.a_000000000042.jpg",
        "cam.a/cam.a_000000000042.json",
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "default"),
        ("file:///tmp/examples", "file"),
        ("s3://bucket/prefix", "s3"),
        ("s3:///prefix", StoreError),
        ("ftp://host/x", StoreError),
    ],
)
def test_open_store(tmp_path: Path, url: str, expected: object) -> None:
    import threading

    policy = RetryPolicy(initial_s=0.01, max_s=0.01)
    if isinstance(expected, type):
        with pytest.raises(expected):
            open_store(url, tmp_path, retry=policy, stop=threading.Event())
        return
    store = open_store(url, tmp_path, retry=policy, stop=threading.Event(), endpoint_url="http://127.0.0.1:1")
    if expected == "default":
        assert store.root == tmp_path / "hard-examples"
    elif expected == "file":
        assert store.root == Path("/tmp/examples")
    else:
        assert (store.bucket, store.prefix) == ("bucket", "prefix")


def test_file_store_refuses_keys_outside_its_folder(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    with pytest.raises(StoreError, match="leaves the store folder"):
        store.put("../escape.jpg", JPEG, "image/jpeg")
    uri = store.put("a b/c.jpg", JPEG, "image/jpeg")
    assert store.get(uri) == JPEG, "a key with a space round-trips through its file:// URI"


@pytest.mark.parametrize(("camera", "blurred"), [("cam-1", True), ("cam-2", False)])
def test_hard_examples_of_a_camera_set_to_blur_are_stored_with_faces_blurred(
    tmp_path: Path, camera: str, blurred: bool
) -> None:
    import cv2
    import numpy as np

    from tests.unit.test_snapshots import JPEG as FACE_JPEG
    from tests.unit.test_snapshots import InProcessFaces, face_region, sharpness

    privacy = PrivacySettings(blur_cameras="cam-1")  # type: ignore[arg-type]
    hard = capture(tmp_path, FramesOnTopic({3: FACE_JPEG}), privacy)
    assert hard.blurrer is not None
    hard.blurrer.faces = InProcessFaces()  # the real face model, run in-process instead of on Triton
    detections = [make_detection("dog", 0.38, (10, 10, 50, 60))]
    message = make_frame_detections(camera, 3, detections, frame_partition=2, frame_offset=3)
    [example, *_] = [HardExample.model_validate_json(r.value) for r in run(hard.on_detections(message, drifting=False))]
    stored = file_path(example.image_uri).read_bytes()
    if not blurred:
        assert stored == FACE_JPEG
        return
    original = cv2.imdecode(np.frombuffer(FACE_JPEG, np.uint8), cv2.IMREAD_COLOR)
    image = cv2.imdecode(np.frombuffer(stored, np.uint8), cv2.IMREAD_COLOR)
    assert sharpness(face_region(image)) < 0.1 * sharpness(face_region(original))


def test_no_blurrer_unless_a_camera_asks_for_one(tmp_path: Path) -> None:
    assert capture(tmp_path, FramesOnTopic({})).blurrer is None
