"""Alert snapshots through the running pipeline, stored in S3 (moto's S3-protocol server, here).

Real services throughout: the session's broker, tritonserver serving ``detector`` and
``face_detector``, chDB owned by the worker, and an S3 server; the worker is the real
``framestream worker --stages detect,alert,persist``, configured only by its environment. Two
cameras film the same face: ``cam-private`` (blurred, the default) and ``cam-open`` (opted out).
Each alert must carry its deterministic ``s3://`` URL, the object must be the frame with the
rule's zone and the person's box drawn, the face unreadable on ``cam-private`` only, and
ClickHouse's alert rows must hold the same URLs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from framestream.settings import KafkaSettings
from processors.annotate import ZONE_COLOUR, class_colour
from schemas import Alert
from streams.topics import TopicNames, delete_topics
from tests.integration.test_example_store import CREDENTIALS, S3Server, bucket, s3  # noqa: F401 - the fixture
from tests.integration.workers import (
    FrameProducer,
    WorkerProcess,
    WorkerStore,
    camera_frames,
    read_topic,
    worker_env,
)
from tests.unit.test_faces import ASTRONAUT_FACE, PHOTOS, sharpness

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~70 s on the shared 2-core machine

RULES = """
rules:
  - id: person-in-zone
    description: Person standing in the lower half
    classes: [person]
    min_score: 0.35
    zone: {name: lower-half, points: [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}
    cooldown_s: 60
"""
CAMERAS = {"cam-private": "astronaut", "cam-open": "astronaut"}
# Cooldown 60 s over 1 s of frames: one alert per camera, on its first frame.
EXPECTED_ALERTS = {"person-in-zone:cam-private:0", "person-in-zone:cam-open:0"}


def face(image: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in ASTRONAUT_FACE)
    return image[y1 + 15 : y2 - 15, x1 + 12 : x2 - 12]  # the eyes, nose and mouth


def colour_share(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 60) -> float:
    return float((np.abs(pixels.astype(int) - np.array(colour)).sum(axis=-1) < tolerance).mean())


def test_alerts_carry_annotated_blurred_snapshots_in_s3(
    kafka_settings: KafkaSettings,
    topics: TopicNames,
    triton_url: str,
    store: WorkerStore,
    s3: S3Server,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = worker_env(
        kafka_settings,
        triton_url=triton_url,
        data_dir=tmp_path / "data",
        rules_file=rules,
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
        FRAMESTREAM_SNAPSHOTS_STORE_URL=f"s3://{bucket(s3)}/snapshots",
        FRAMESTREAM_SNAPSHOTS_S3_ENDPOINT_URL=s3.endpoint,
        FRAMESTREAM_PRIVACY_UNBLURRED_CAMERAS="cam-open",
        AWS_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
        AWS_DEFAULT_REGION=CREDENTIALS["region"],
    )
    worker = WorkerProcess("snapshots", "detect,alert,persist", env, tmp_path).start()
    frames = camera_frames(CAMERAS, 2, spacing_s=0.5)
    try:
        producer = FrameProducer(kafka_settings)
        for frame in frames:
            producer.frame(topics.frames, frame)
        producer.flush()
        worker.wait_for_metric("framestream_persisted_messages_total", len(frames), 180, kind="detections")
        worker.wait_for_metric("framestream_persisted_messages_total", len(EXPECTED_ALERTS), 120, kind="alerts")
        snapshot_s = worker.metric("framestream_stage_latency_seconds_sum", stage="alert", step="snapshot")
        snapshots = worker.metric("framestream_stage_latency_seconds_count", stage="alert", step="snapshot")
        print(f"snapshot per alerting frame: {1000 * snapshot_s / max(snapshots, 1):.0f} ms (n={snapshots:.0f})")
        assert worker.terminate() == 0, worker.log_tail()
    finally:
        worker.kill()
        delete_topics(kafka_settings.bootstrap_servers, [topics.cooldowns_changelog])

    alerts = [
        Alert.model_validate_json(v) for _, v in read_topic(kafka_settings, topics.alerts, kafka_settings.partitions)
    ]
    assert {alert.alert_id for alert in alerts} == EXPECTED_ALERTS
    original = cv2.imread(str(PHOTOS / "astronaut.jpg"))
    client = s3.client()
    for alert in alerts:
        assert alert.snapshot_url == f"s3://{bucket(s3)}/snapshots/{alert.camera_id}/{alert.alert_id}.jpg"
        key = alert.snapshot_url.split("/", 3)[3]
        stored = client.get_object(Bucket=bucket(s3), Key=key)
        assert stored["ContentType"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(stored["Body"].read(), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == original.shape
        box = alert.box
        top = image[int(round(box.y1)), int(box.x1) + 100 : int(box.x2) - 10]
        assert colour_share(top, class_colour(0)) > 0.7, f"{alert.alert_id}: the person's box is drawn"
        assert colour_share(image[256, 10:500], ZONE_COLOUR) > 0.7, f"{alert.alert_id}: the zone is drawn"
        ratio = sharpness(face(image)) / sharpness(face(original))
        if alert.camera_id == "cam-private":
            assert ratio < 0.1, f"the face must be unreadable (sharpness ratio {ratio:.2f})"
        else:
            assert ratio > 0.5, f"cam-open opted out: the face stays (sharpness ratio {ratio:.2f})"

    rows = store.connect()
    try:
        stored_urls = dict(rows.query("SELECT alert_id, snapshot_url FROM alerts FINAL").result_rows)
    finally:
        rows.close()
    assert stored_urls == {alert.alert_id: alert.snapshot_url for alert in alerts}
