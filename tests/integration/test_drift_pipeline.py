"""Drift and alert reviews through the running pipeline.

Real services throughout (the session's broker, tritonserver, chDB owned by the worker): one
``framestream worker --stages detect,alert,persist,monitor`` process. Three cameras send the
bundled photos (samples/media/photos) with a little brightness jitter on every frame, as a real
camera would; from frame CHANGE_AT on, one camera's frames are darkened and another's blurred
(cv2), the third stays as it was. The monitor stage must raise a drift event for the first two
within DELAY_BOUND frames of the change (20 expected, see below) and none for the stable camera;
the events must reach the model-alerts topic and ClickHouse. Then the worker stops, the real
``framestream review`` command reviews one of the alerts it raised (looked up in chDB) and refuses
an unknown id; a restarted worker stores the review.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from framestream.settings import REPO_ROOT, KafkaSettings
from processors.image_stats import image_stats
from schemas import FrameMeta, ImageStats
from schemas.model_alerts import ModelAlert
from streams.topics import TopicNames, delete_topics
from tests.integration.workers import FrameProducer, WorkerProcess, WorkerStore, read_topic, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~2-3 min on the 2-core machine

PHOTOS = REPO_ROOT / "samples" / "media" / "photos"
CAMERAS = {"cam-stable": "person", "cam-dark": "dog", "cam-blur": "horses"}
REFERENCE, WINDOW, EVERY = 30, 30, 5
CHANGE_AT = 50  # first changed frame (the reference is frames 0-29)
FRAMES_PER_CAMERA = 80
# Darkened/blurred values all fall outside the reference's range, so KS D = changed / WINDOW: with
# 30 + 30 frames p < 1e-4 needs D >= 0.58 (18 frames), and tests run at frames 59, 64, 69, ...:
# the event comes with frame 69, 20 frames after the change. The bound leaves one test of slack.
EXPECTED_DELAY = 20
DELAY_BOUND = EXPECTED_DELAY + EVERY
MONITOR_ENV = {
    "FRAMESTREAM_MONITOR_REFERENCE_FRAMES": str(REFERENCE),
    "FRAMESTREAM_MONITOR_WINDOW_FRAMES": str(WINDOW),
    "FRAMESTREAM_MONITOR_TEST_EVERY": str(EVERY),
    "FRAMESTREAM_MONITOR_MIN_SAMPLES": "20",
}
RULES = """
rules:
  - id: person-seen
    description: Person seen
    severity: warning
    classes: [person]
    min_score: 0.35
    cooldown_s: 3600
"""


def frame_image(camera: str, seq: int, rng: np.random.Generator) -> np.ndarray:
    photo = cv2.imread(str(PHOTOS / f"{CAMERAS[camera]}.jpg"))
    photo = cv2.resize(photo, (480, round(photo.shape[0] * 480 / photo.shape[1])), interpolation=cv2.INTER_AREA)
    jitter = float(rng.uniform(-4, 4))  # light changing a little from frame to frame
    if camera == "cam-dark" and seq >= CHANGE_AT:
        return cv2.convertScaleAbs(photo, alpha=0.35, beta=jitter)
    image = cv2.convertScaleAbs(photo, alpha=1.0, beta=jitter)
    if camera == "cam-blur" and seq >= CHANGE_AT:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=4)
    return image


def push_frames(kafka: KafkaSettings, topics: TopicNames) -> int:
    """Every camera's frames, interleaved, each with the image stats ingest would put in its headers."""
    producer = FrameProducer(kafka)
    rng = np.random.default_rng(2026)
    start = datetime.now(UTC).replace(microsecond=0)
    for seq in range(FRAMES_PER_CAMERA):
        for camera in CAMERAS:
            image = frame_image(camera, seq, rng)
            stats = image_stats(image)
            meta = FrameMeta(
                camera_id=camera,
                frame_seq=seq,
                captured_at=start + timedelta(seconds=seq * 0.5),
                width=image.shape[1],
                height=image.shape[0],
                stats=ImageStats(brightness=stats.brightness, sharpness=stats.sharpness, contrast=stats.contrast),
            )
            jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
            producer.raw(topics.frames, camera.encode(), jpeg, meta.to_headers())
    producer.flush()
    return FRAMES_PER_CAMERA * len(CAMERAS)


def review(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framestream.cli", "review", *argv],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_darkened_and_blurred_cameras_drift_the_stable_one_does_not_and_a_review_is_stored(
    kafka_settings: KafkaSettings, topics: TopicNames, triton_url: str, store: WorkerStore, tmp_path: Path
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
        **MONITOR_ENV,
    )
    worker = WorkerProcess("drift", "detect,alert,persist,monitor", env, tmp_path)
    try:
        worker.start()
        frames = push_frames(kafka_settings, topics)
        worker.wait_for_metric("framestream_persisted_messages_total", frames, 480, kind="detections")
        worker.wait_for_metric("framestream_frames_total", frames, 60, stage="monitor", outcome="ok")
        worker.wait_for_metric("framestream_persisted_messages_total", 2, 60, kind="model_alerts")
        assert worker.metric("framestream_frames_total", stage="monitor", outcome="deadletter") == 0
        assert worker.terminate() == 0, worker.log_tail()

        # chDB is free now: the review command looks the alert up there.
        missing = review(env, "person-seen:cam-nowhere:7", "--verdict", "tp")
        assert missing.returncode == 1 and "no alert 'person-seen:cam-nowhere:7'" in missing.stderr
        reviewed = review(env, "person-seen:cam-stable:0", "--verdict", "fp", "--class", "dog", "--reviewer", "qa")
        assert reviewed.returncode == 0, reviewed.stderr
        assert reviewed.stdout.startswith("person-seen:cam-stable:0:qa: false_positive")

        worker.start()  # same consumer group: only the review is new
        worker.wait_for_metric("framestream_persisted_messages_total", 1, 120, kind="alert_reviews")
        assert worker.terminate() == 0, worker.log_tail()
    finally:
        worker.kill()
        delete_topics(kafka_settings.bootstrap_servers, [topics.cooldowns_changelog])

    on_topic = [
        ModelAlert.model_validate_json(value)
        for _, value in read_topic(kafka_settings, topics.model_alerts, kafka_settings.partitions)
    ]
    check_drift_events(on_topic)
    check_clickhouse(store, {alert.model_alert_id for alert in on_topic})


def first_start(alerts: list[ModelAlert], camera: str, statistic: str) -> ModelAlert:
    starts = [a for a in alerts if (a.camera_id, a.statistic, a.state) == (camera, statistic, "started")]
    assert starts, f"{camera}: no {statistic} drift in {[(a.camera_id, a.statistic, a.frame_seq) for a in alerts]}"
    return min(starts, key=lambda a: a.frame_seq)


def check_drift_events(alerts: list[ModelAlert]) -> None:
    print("drift events:", sorted((a.camera_id, a.statistic, a.state, a.frame_seq) for a in alerts))
    assert not [a for a in alerts if a.camera_id == "cam-stable"], "the stable camera must not drift"
    for camera, statistic in (("cam-dark", "brightness"), ("cam-blur", "sharpness")):
        event = first_start(alerts, camera, statistic)
        delay = event.frame_seq - CHANGE_AT + 1
        print(f"{camera}: {statistic} drift after {delay} changed frames")
        assert 0 < delay <= DELAY_BOUND, f"{camera}: {statistic} drift {delay} frames after the change"
        assert event.p_value < 1e-4 and event.effect_size >= 0.25
        assert event.reference_value > event.current_value and event.reference_first_seq == 0
        assert event.window_frames == WINDOW and event.reference_frames == REFERENCE
    for alert in alerts:  # one event per statistic's start, never one per frame
        same = [
            a for a in alerts if (a.camera_id, a.statistic, a.state) == (alert.camera_id, alert.statistic, "started")
        ]
        assert len(same) == 1, f"{alert.camera_id}/{alert.statistic} started {len(same)} times"


def check_clickhouse(store: WorkerStore, ids_on_topic: set[str]) -> None:
    client = store.connect()
    try:
        stored = {row[0] for row in client.query("SELECT model_alert_id FROM model_alerts FINAL").result_rows}
        assert stored == ids_on_topic
        reviews = client.query(
            "SELECT review_id, alert_id, camera_id, rule_id, event_id, toString(verdict), corrected_class, reviewer "
            "FROM alert_reviews FINAL"
        ).result_rows
        assert reviews == [
            (
                "person-seen:cam-stable:0:qa",
                "person-seen:cam-stable:0",
                "cam-stable",
                "person-seen",
                "cam-stable:0",
                "false_positive",
                "dog",
                "qa",
            )
        ]
    finally:
        client.close()
