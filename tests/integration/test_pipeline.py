"""Known frames through the running pipeline: detections in ClickHouse, alerts on the alert
topic, dead letters for the bad records, and the worker still alive.

Real services throughout: the session's broker (Apache Kafka here), tritonserver serving
triton_models/, and ClickHouse (chDB here, owned by the worker process). The worker is
the real ``framestream worker`` command running all three stages in one process.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import pytest

from framestream.settings import KafkaSettings
from schemas import Alert, DeadLetter, FrameMeta
from streams.topics import TopicNames, delete_topics
from tests.integration.workers import (
    FrameProducer,
    WorkerProcess,
    WorkerStore,
    camera_frames,
    read_topic,
    worker_env,
)

pytestmark = pytest.mark.integration

RULES = """
rules:
  - id: person-seen
    description: Person seen
    severity: warning
    classes: [person]
    min_score: 0.35
    cooldown_s: 60
  - id: dog-seen
    description: Dog seen
    severity: info
    classes: [dog]
    min_score: 0.5
    cooldown_s: 60
  - id: crowd
    description: Three or more people
    severity: critical
    classes: [person]
    min_score: 0.35
    min_objects: 3
    cooldown_s: 60
"""

CAMERAS = {"cam-person": "person", "cam-dog": "dog", "cam-horses": "horses", "cam-kite": "kite"}
FRAMES_PER_CAMERA = 5
# Read off the photos by eye (tests/data/photos/README.md): objects any decent COCO detector finds.
EXPECTED_CLASSES = {
    "cam-person": {"person", "dog"},
    "cam-dog": {"dog", "bicycle"},
    "cam-horses": {"horse"},
    "cam-kite": {"kite", "person"},
}
# Cooldown 60 s over 2 s of frames: each rule fires once per camera, on its first frame.
EXPECTED_ALERTS = {
    "person-seen:cam-person:0",
    "person-seen:cam-kite:0",
    "dog-seen:cam-person:0",
    "dog-seen:cam-dog:0",
    "crowd:cam-kite:0",
}
MALFORMED_VALUE = b"headers say this is frame 'x' of no camera"
UNDECODABLE_VALUE = b"\xff\xd8\xff\xe0 truncated: not a JPEG after all"
# Written straight to the downstream topics, as a misbehaving producer would.
BAD_DETECTIONS_VALUE = b'{"schema_version": 1, "event_id": "cam-x:1"'
BAD_DEAD_LETTER_VALUE = b"\x00not json at all"


def push_frames(kafka: KafkaSettings, topics: TopicNames) -> int:
    producer = FrameProducer(kafka)
    frames = camera_frames(CAMERAS, FRAMES_PER_CAMERA, spacing_s=0.5)
    for frame in frames:
        producer.frame(topics.frames, frame)
    producer.raw(topics.frames, b"cam-bad", MALFORMED_VALUE, [("fs-camera-id", b"cam-bad"), ("fs-frame-seq", b"x")])
    meta = FrameMeta(camera_id="cam-broken", frame_seq=0, captured_at=frames[0].captured_at, width=640, height=480)
    producer.raw(topics.frames, b"cam-broken", UNDECODABLE_VALUE, meta.to_headers())
    producer.raw(topics.detections, b"cam-x", BAD_DETECTIONS_VALUE, [])
    producer.raw(topics.deadletter, b"cam-y", BAD_DEAD_LETTER_VALUE, [])
    producer.flush()
    return len(frames)


def test_known_frames_reach_clickhouse_and_the_alert_topic(
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
    )
    worker = WorkerProcess("all-stages", "detect,alert,persist", env, tmp_path).start()
    try:
        frames = push_frames(kafka_settings, topics)
        worker.wait_for_metric("framestream_persisted_messages_total", frames, 180, kind="detections")
        worker.wait_for_metric("framestream_persisted_messages_total", len(EXPECTED_ALERTS), 30, kind="alerts")
        # detect: 2; alert and persist: the bad detections record each; the bad dead letter, stored as is.
        worker.wait_for_metric("framestream_persisted_messages_total", 5, 30, kind="deadletters")
        assert worker.alive, "the bad records must not stop the worker"
        for stage, count in (("detect", 2), ("alert", 1), ("persist", 2)):
            assert worker.metric("framestream_frames_total", stage=stage, outcome="deadletter") == count, stage
        assert worker.terminate() == 0, worker.log_tail()
    finally:
        worker.kill()
        delete_topics(kafka_settings.bootstrap_servers, [topics.cooldowns_changelog])

    check_alert_topic(kafka_settings, topics)
    check_dead_letter_topic(kafka_settings, topics)
    check_clickhouse(store, topics, frames)


def check_alert_topic(kafka: KafkaSettings, topics: TopicNames) -> None:
    alerts = [Alert.model_validate_json(value) for _, value in read_topic(kafka, topics.alerts, kafka.partitions)]
    assert {alert.alert_id for alert in alerts} == EXPECTED_ALERTS
    assert len(alerts) == len(EXPECTED_ALERTS), "a graceful run produces each alert once"
    for alert in alerts:
        assert alert.event_id == f"{alert.camera_id}:{alert.frame_seq}"
    crowd = next(alert for alert in alerts if alert.rule_id == "crowd")
    assert crowd.object_count >= 3 and crowd.severity.value == "critical"


def check_dead_letter_topic(kafka: KafkaSettings, topics: TopicNames) -> None:
    records = read_topic(kafka, topics.deadletter, kafka.partitions)
    letters = {key: DeadLetter.model_validate_json(value) for key, value in records if key != b"cam-y"}
    assert sorted(letters) == [b"cam-bad", b"cam-broken", b"cam-x"]
    assert len(records) == 5, "3 from detect, 1 each from alert and persist for cam-x, the bad one itself"
    malformed, undecodable = letters[b"cam-bad"], letters[b"cam-broken"]
    assert (malformed.stage, malformed.error_type) == ("detect", "ValidationError")
    assert "frame_seq" in malformed.reason and "captured_at" in malformed.reason
    assert malformed.original == MALFORMED_VALUE
    assert malformed.headers == {"fs-camera-id": "cam-bad", "fs-frame-seq": "x"}
    assert (undecodable.stage, undecodable.error_type) == ("detect", "InferenceRejected")
    assert "JPEG" in undecodable.reason, "the reason is Triton's own message"
    assert undecodable.original == UNDECODABLE_VALUE
    assert undecodable.source_topic == topics.frames and undecodable.source_offset is not None
    bad_detections = [DeadLetter.model_validate_json(value) for key, value in records if key == b"cam-x"]
    assert sorted(letter.stage for letter in bad_detections) == ["alert", "persist"]
    assert all(letter.original == BAD_DETECTIONS_VALUE for letter in bad_detections)


def check_clickhouse(store: WorkerStore, topics: TopicNames, frames: int) -> None:
    client = store.connect()
    try:
        event_ids = {row[0] for row in client.query("SELECT event_id FROM frames FINAL").result_rows}
        expected_ids = {f"{camera}:{seq}" for camera in CAMERAS for seq in range(FRAMES_PER_CAMERA)}
        assert event_ids == expected_ids
        assert client.query("SELECT count() FROM frames").result_rows[0][0] == frames
        classes: dict[str, set[str]] = defaultdict(set)
        for camera, class_name in client.query("SELECT DISTINCT camera_id, class_name FROM detections").result_rows:
            classes[camera].add(class_name)
        for camera, expected in EXPECTED_CLASSES.items():
            assert expected <= classes[camera], f"{camera}: found {sorted(classes[camera])}"
        mismatched = client.query(
            "SELECT f.event_id, f.object_count, countIf(d.detection_id != '') AS rows FROM frames AS f "
            "LEFT JOIN detections AS d ON d.event_id = f.event_id "
            "GROUP BY f.event_id, f.object_count HAVING rows != f.object_count"
        ).result_rows
        assert mismatched == [], "every frame's objects are stored, each once"
        stored_alerts = {row[0] for row in client.query("SELECT alert_id FROM alerts FINAL").result_rows}
        assert stored_alerts == EXPECTED_ALERTS
        letters = client.query(
            "SELECT stage, error_type, source_topic, original_sha256 FROM dead_letters FINAL"
        ).result_rows
        sha = {
            value: hashlib.sha256(value).hexdigest()
            for value in (UNDECODABLE_VALUE, MALFORMED_VALUE, BAD_DETECTIONS_VALUE, BAD_DEAD_LETTER_VALUE)
        }
        assert sorted(letters) == sorted(
            [
                ("detect", "InferenceRejected", topics.frames, sha[UNDECODABLE_VALUE]),
                ("detect", "ValidationError", topics.frames, sha[MALFORMED_VALUE]),
                ("alert", "ValidationError", topics.detections, sha[BAD_DETECTIONS_VALUE]),
                ("persist", "ValidationError", topics.detections, sha[BAD_DETECTIONS_VALUE]),
                # not produced again (that would loop): stored as a dead letter of the dead-letter topic
                ("persist", "ValidationError", topics.deadletter, sha[BAD_DEAD_LETTER_VALUE]),
            ]
        )
    finally:
        client.close()
