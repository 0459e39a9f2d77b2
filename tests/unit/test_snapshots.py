"""SnapshotTaker with a local folder store, the real face model in-process and a stand-in for the frames
topic: what it draws, blurs and stores, the URLs it sets, frames that are gone, retries, privacy
settings per camera, and pruning by age."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from processors.annotate import ZONE_COLOUR, class_colour
from processors.faces import INPUT_NAME, OUTPUT_NAMES, FaceDetections, detect_faces_batch
from processors.rules import RuleEvaluator
from schemas import Alert
from schemas.rules import RuleSet
from streams.context import WorkerContext, WorkerSettings
from streams.example_store import FileStore, StoreError, file_path
from streams.faces import PrivacySettings
from streams.frame_reader import FrameFetchError
from streams.inference import DetectorClientSettings, InferenceRejected, InferenceUnavailable
from streams.kafka_config import KafkaSettings
from streams.metrics import WorkerMetrics
from streams.snapshots import SnapshotSettings, SnapshotTaker, prune, snapshot_key
from streams.topics import TopicNames
from tests.factories import make_detection, make_frame_detections
from tests.unit.test_faces import ASTRONAUT_FACE, MODEL, PHOTOS, sharpness

JPEG = (PHOTOS / "astronaut.jpg").read_bytes()
PERSON_BOX = (20.0, 200.0, 480.0, 510.0)  # below the face: its lines add no sharpness there
RULES = RuleSet.model_validate(
    {
        "rules": [
            {
                "id": "person-in-zone",
                "description": "Person in the lower part",
                "classes": ["person"],
                "zone": {"name": "lower", "points": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]},
            },
            {"id": "anyone", "description": "Anyone", "classes": ["person"]},
        ]
    }
)


class FramesOnTopic:
    """Offsets to JPEGs; a missing offset is a frame retention removed."""

    def __init__(self, frames: dict[int, bytes], unavailable_times: int = 0) -> None:
        self.frames = frames
        self.unavailable_times = unavailable_times
        self.reads = 0

    def fetch(self, partition: int, offset: int, event_id: str) -> bytes | None:
        self.reads += 1
        if self.unavailable_times:
            self.unavailable_times -= 1
            raise FrameFetchError("broker away")
        return self.frames.get(offset)

    def close(self) -> None:
        pass


class InProcessFaces:
    """The face model file run in-process (what Triton serves), with a few transient failures first."""

    def __init__(self, unavailable_times: int = 0, reject: bool = False) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
        self.unavailable_times = unavailable_times
        self.reject = reject
        self.calls = 0

    async def detect(self, image: bytes, score_threshold: float = 0.5) -> FaceDetections:
        self.calls += 1
        if self.unavailable_times:
            self.unavailable_times -= 1
            raise InferenceUnavailable("StatusCode.UNAVAILABLE: restarting")
        if self.reject:
            raise InferenceRejected("not a JPEG")

        def infer(batch: np.ndarray) -> dict[str, np.ndarray]:
            return dict(zip(OUTPUT_NAMES, self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch}), strict=True))

        [faces] = detect_faces_batch([image], infer, score_thresholds=[score_threshold])
        assert isinstance(faces, FaceDetections)
        return faces


def taker(
    tmp_path: Path,
    fetcher: FramesOnTopic,
    faces: InProcessFaces,
    privacy: PrivacySettings | None = None,
    **settings: object,
) -> SnapshotTaker:
    stream = SimpleNamespace(
        triton=DetectorClientSettings(url="triton:8001"),
        data_dir=tmp_path,
        kafka=KafkaSettings(bootstrap_servers="localhost:1"),
    )
    worker = WorkerSettings(retry_max_backoff_s=0.01)
    context = WorkerContext(stream, worker, TopicNames(""), WorkerMetrics("w", CollectorRegistry()), "w")  # type: ignore[arg-type]
    return SnapshotTaker(
        context,
        RuleEvaluator(RULES),
        settings=SnapshotSettings(**settings),  # type: ignore[arg-type]
        privacy=privacy or PrivacySettings(),
        store=FileStore(tmp_path / "snapshots"),
        fetcher=fetcher,  # type: ignore[arg-type]
        faces=faces,  # type: ignore[arg-type]
    )


def frame_and_alerts(camera_id: str = "cam-1", seq: int = 7, **fields: object):  # noqa: ANN201
    frame = make_frame_detections(
        camera_id,
        seq,
        [make_detection("person", 0.8, PERSON_BOX)],
        width=512,
        height=512,
        **({"frame_partition": 0, "frame_offset": seq} | fields),
    )
    evaluation = RuleEvaluator(RULES).evaluate(frame, {}, raised_at=datetime.now(UTC))
    assert [alert.rule_id for alert in evaluation.alerts] == ["person-in-zone", "anyone"]
    return frame, evaluation.alerts


def read(url: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(file_path(url).read_bytes(), np.uint8), cv2.IMREAD_COLOR)


def colour_share(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 60) -> float:
    return float((np.abs(pixels.astype(int) - np.array(colour)).sum(axis=-1) < tolerance).mean())


def face_region(image: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in ASTRONAUT_FACE)
    return image[y1 + 15 : y2 - 15, x1 + 12 : x2 - 12]


def test_each_alert_gets_its_own_annotated_blurred_snapshot(tmp_path: Path) -> None:
    snapshots = taker(tmp_path, FramesOnTopic({7: JPEG}), InProcessFaces())
    frame, alerts = frame_and_alerts()
    attached = asyncio.run(snapshots.attach(frame, alerts))
    assert [a.model_copy(update={"snapshot_url": None}) for a in attached] == alerts
    for alert in attached:
        path = file_path(alert.snapshot_url or "")
        assert path == (tmp_path / "snapshots" / snapshot_key(alert)).resolve() and path.is_file()
        assert path.parent.name == "cam-1" and path.name == f"{alert.alert_id}.jpg"
        assert Alert.model_validate_json(alert.model_dump_json()) == alert
    zoned, plain = (read(alert.snapshot_url or "") for alert in attached)
    original = cv2.imdecode(np.frombuffer(JPEG, np.uint8), cv2.IMREAD_COLOR)
    x1, y1, x2, _ = (int(v) for v in PERSON_BOX)
    assert colour_share(zoned[y1, x1 + 60 : x2], class_colour(0)) > 0.8, "the box's top edge"
    assert colour_share(zoned[256, 10:500], ZONE_COLOUR) > 0.8, "the zone's top edge at 0.5 x 512"
    assert colour_share(plain[256, 10:500], ZONE_COLOUR) < 0.1, "no zone on the rule without one"
    for snapshot in (zoned, plain):
        assert sharpness(face_region(snapshot)) < 0.1 * sharpness(face_region(original))
    snapshots.close()


def test_a_camera_that_opted_out_is_not_blurred(tmp_path: Path) -> None:
    faces = InProcessFaces()
    privacy = PrivacySettings(unblurred_cameras="cam-dock")  # type: ignore[arg-type]
    snapshots = taker(tmp_path, FramesOnTopic({7: JPEG}), faces, privacy)
    frame, alerts = frame_and_alerts("cam-dock")
    [zoned, _] = asyncio.run(snapshots.attach(frame, alerts))
    original = cv2.imdecode(np.frombuffer(JPEG, np.uint8), cv2.IMREAD_COLOR)
    assert sharpness(face_region(read(zoned.snapshot_url or ""))) > 0.5 * sharpness(face_region(original))
    assert faces.calls == 0, "no face detection where nothing is blurred"


def test_replay_rewrites_the_same_object_and_url(tmp_path: Path) -> None:
    snapshots = taker(tmp_path, FramesOnTopic({7: JPEG}), InProcessFaces())
    frame, alerts = frame_and_alerts()
    first = asyncio.run(snapshots.attach(frame, alerts))
    second = asyncio.run(snapshots.attach(frame, alerts))
    assert [a.snapshot_url for a in first] == [a.snapshot_url for a in second]
    assert len(list((tmp_path / "snapshots").rglob("*.jpg"))) == 2


def test_transient_faults_are_retried_not_skipped(tmp_path: Path) -> None:
    fetcher, faces = FramesOnTopic({7: JPEG}, unavailable_times=2), InProcessFaces(unavailable_times=2)
    snapshots = taker(tmp_path, fetcher, faces)
    frame, alerts = frame_and_alerts()
    attached = asyncio.run(snapshots.attach(frame, alerts))
    assert all(alert.snapshot_url for alert in attached)
    assert (fetcher.reads, faces.calls) == (3, 3)


@pytest.mark.parametrize(
    ("frames", "fields", "faces", "why"),
    [
        ({}, {}, InProcessFaces, "gone from the topic"),
        ({7: JPEG}, {"frame_partition": None, "frame_offset": None}, InProcessFaces, "place not noted"),
        ({7: b"\xff\xd8\xff broken"}, {}, lambda: InProcessFaces(reject=True), "Triton refuses it"),
    ],
)
def test_no_frame_to_show_keeps_the_alert_without_snapshot(
    tmp_path: Path, frames: dict, fields: dict, faces, why: str
) -> None:  # noqa: ANN001
    snapshots = taker(tmp_path, FramesOnTopic(frames), faces())
    frame, alerts = frame_and_alerts(**fields)
    assert asyncio.run(snapshots.attach(frame, alerts)) == alerts, why


def test_undecodable_frame_without_blurring_keeps_the_alert(tmp_path: Path) -> None:
    privacy = PrivacySettings(blur_snapshots=False)
    snapshots = taker(tmp_path, FramesOnTopic({7: b"\xff\xd8\xff broken"}), InProcessFaces(), privacy)
    frame, alerts = frame_and_alerts()
    assert asyncio.run(snapshots.attach(frame, alerts)) == alerts


def test_public_base_url_gives_http_urls(tmp_path: Path) -> None:
    snapshots = taker(
        tmp_path, FramesOnTopic({7: JPEG}), InProcessFaces(), public_base_url="https://cdn.example/snaps/"
    )
    frame, alerts = frame_and_alerts()
    attached = asyncio.run(snapshots.attach(frame, alerts))
    assert attached[0].snapshot_url == "https://cdn.example/snaps/cam-1/person-in-zone%3Acam-1%3A7.jpg"


@pytest.mark.parametrize(
    ("env", "camera", "what", "blurred"),
    [
        ({}, "cam-1", "snapshot", True),
        ({}, "cam-1", "hard_example", False),
        ({}, "cam-1", "annotated", False),
        ({"FRAMESTREAM_PRIVACY_UNBLURRED_CAMERAS": "cam-2, cam-1"}, "cam-1", "snapshot", False),
        ({"FRAMESTREAM_PRIVACY_UNBLURRED_CAMERAS": "cam-2"}, "cam-1", "snapshot", True),
        ({"FRAMESTREAM_PRIVACY_BLUR_SNAPSHOTS": "false"}, "cam-1", "snapshot", False),
        ({"FRAMESTREAM_PRIVACY_BLUR_CAMERAS": "cam-1"}, "cam-1", "hard_example", True),
        ({"FRAMESTREAM_PRIVACY_BLUR_CAMERAS": "cam-1"}, "cam-2", "annotated", False),
        ({"FRAMESTREAM_PRIVACY_BLUR_EVERYTHING": "true"}, "cam-9", "annotated", True),
    ],
)
def test_privacy_settings_per_camera(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], camera: str, what: str, blurred: bool
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert PrivacySettings().blurs(camera, what) is blurred  # type: ignore[arg-type]


def test_a_typo_in_the_privacy_settings_is_an_error() -> None:
    with pytest.raises(ValueError, match="blur_snapshot"):
        PrivacySettings(blur_snapshot=True)  # type: ignore[call-arg]


def test_blurring_without_triton_stops_the_stage_at_start(tmp_path: Path) -> None:
    stream = SimpleNamespace(
        triton=DetectorClientSettings(url=""), data_dir=tmp_path, kafka=KafkaSettings(bootstrap_servers="x:1")
    )
    context = WorkerContext(stream, WorkerSettings(), TopicNames(""), WorkerMetrics("w", CollectorRegistry()), "w")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="FRAMESTREAM_TRITON_URL is empty"):
        SnapshotTaker(context, RuleEvaluator(RULES), settings=SnapshotSettings(), privacy=PrivacySettings())


@pytest.mark.parametrize(
    ("ages_h", "older_than", "left"),
    [([1, 30, 200], timedelta(days=7), 2), ([1, 30, 200], timedelta(hours=24), 1), ([], timedelta(days=1), 0)],
)
def test_prune_removes_what_is_older_than_the_retention(
    tmp_path: Path, ages_h: list[int], older_than: timedelta, left: int
) -> None:
    store = FileStore(tmp_path / "snapshots")
    now = time.time()
    for index, age in enumerate(ages_h):
        path = file_path(store.put(f"cam-{index}/rule:cam-{index}:{index}.jpg", JPEG, "image/jpeg"))
        os.utime(path, (now - age * 3600, now - age * 3600))
    removed = prune(store, older_than)
    assert removed == len(ages_h) - left
    assert len(list((tmp_path / "snapshots").rglob("*.jpg"))) == left


@pytest.mark.parametrize(
    ("what", "camera", "blurred"), [("hard_example", "cam-1", True), ("annotated", "cam-2", False)]
)
def test_face_blurrer_for_other_exports(what: str, camera: str, blurred: bool) -> None:
    from streams.faces import FaceBlurrer
    from streams.retry import RetryPolicy

    faces = InProcessFaces(unavailable_times=1)
    privacy = PrivacySettings(blur_cameras="cam-1")  # type: ignore[arg-type]
    blurrer = FaceBlurrer(faces, privacy, retry=RetryPolicy(initial_s=0.01, max_s=0.01))  # type: ignore[arg-type]
    result = asyncio.run(blurrer.blur_jpeg(camera, JPEG, what))  # type: ignore[arg-type]
    if not blurred:
        assert result == JPEG and faces.calls == 0
        return
    original = cv2.imdecode(np.frombuffer(JPEG, np.uint8), cv2.IMREAD_COLOR)
    image = cv2.imdecode(np.frombuffer(result, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == original.shape and faces.calls == 2, "retried once, then found the face"
    assert sharpness(face_region(image)) < 0.1 * sharpness(face_region(original))


class RefusingStore(FileStore):
    def put(self, key: str, data: bytes, content_type: str) -> str:
        raise StoreError("s3://nobucket: NoSuchBucket")


def test_a_store_that_refuses_for_good_costs_the_snapshot_not_the_alert(tmp_path: Path) -> None:
    snapshots = taker(tmp_path, FramesOnTopic({7: JPEG}), InProcessFaces())
    snapshots.store = RefusingStore(tmp_path)
    frame, alerts = frame_and_alerts()
    assert asyncio.run(snapshots.attach(frame, alerts)) == alerts
