"""The synthetic tracking scene through the real pipeline, with the track worker killed mid-video.

Real services: the session's broker, tritonserver, chDB (owned by the persist worker). Three
workers: ``detect``, ``track``, ``persist``. The scene is framestream/bench/tracking.py's (real
crops of the bundled photos on known paths, 120 frames at 10 fps, line 'mid' crossed twice in
each direction). The track worker does not commit until it is SIGKILLed after half the video,
so its replacement -- under a new worker id, with an EMPTY local store: its tracker state comes
from the changelog alone -- reads every frame again: those before the stored state are skipped
as replays, those after it are tracked again from it.

Checked: the crossings, visits, track points and track alerts in ClickHouse are exactly those of
an uninterrupted in-process run over the same detections (same ids, each stored once), the
crossing counts are the scene's ground truth, and every track alert is one per track.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import cv2
import pytest

from framestream.bench.tracking import START, background, default_scene, expected_crossings, load_crops, render
from framestream.settings import KafkaSettings
from processors.tracking import SceneTracker, TrackerConfig, TrackerState
from schemas import Alert, FrameDetections, FrameMeta, FrameTracks
from schemas.rules import RuleSet
from streams.config_files import load_rules
from streams.example_store import file_path
from streams.topics import TopicNames, delete_topics
from tests.integration.workers import (
    FrameProducer,
    WorkerProcess,
    WorkerStore,
    read_topic,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CAMERA = "cam-scene"
RULES = """
rules: []
lines:
  - name: mid
    start: [0.0, 0.55]
    end: [1.0, 0.55]
zones:
  - name: lower
    points: [[0.0, 0.6], [1.0, 0.6], [1.0, 1.0], [0.0, 1.0]]
track_rules:
  - id: entered
    kind: crossing
    description: Person went in over the middle line
    classes: [person]
    line: mid
    direction: in
  - id: lingering
    kind: dwell
    description: Person in the lower zone for 2 s
    classes: [person, dog]
    zone: lower
    min_dwell_s: 2
  - id: busy
    kind: count
    description: More than two crossings a minute
    classes: [person, dog]
    line: mid
    period_s: 60
    above: 2
"""
NO_COMMITS = {"FRAMESTREAM_WORKER_COMMIT_INTERVAL_S": "60"}


def scene_frames() -> list[tuple[FrameMeta, bytes]]:
    scene = default_scene()
    crops, base = load_crops(), background(scene.width, scene.height)
    frames = []
    for seq in range(scene.frames):
        image, _ = render(scene, crops, seq, base)
        data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        meta = FrameMeta(
            camera_id=CAMERA,
            frame_seq=seq,
            captured_at=START + timedelta(seconds=seq / scene.fps),
            width=scene.width,
            height=scene.height,
        )
        frames.append((meta, data))
    return frames


def produce(kafka: KafkaSettings, topics: TopicNames, frames: list[tuple[FrameMeta, bytes]]) -> None:
    producer = FrameProducer(kafka)
    for meta, data in frames:
        producer.raw(topics.frames, CAMERA.encode(), data, meta.to_headers())
    producer.flush()


def test_a_killed_track_worker_counts_no_crossing_and_raises_no_alert_twice(
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
    detect = WorkerProcess("detect", "detect", env, tmp_path)
    track = WorkerProcess("track", "track", env, tmp_path)
    persist = WorkerProcess("persist", "persist", env, tmp_path)
    frames = scene_frames()
    half = len(frames) // 2
    try:
        detect.start()
        persist.start()
        track.start(**NO_COMMITS)
        produce(kafka_settings, topics, frames)
        track.wait_for_metric("framestream_frames_total", half, 240, stage="track")
        track.kill()  # mid-video, frames in flight; nothing committed: the replacement reads them all again
        track.worker_id = "track-moved"  # an empty local store: the state comes from the changelog
        track.start()
        track.wait_for_metric("framestream_frames_total", len(frames), 300, stage="track")
        replayed = track.metric("framestream_frames_total", stage="track", outcome="replayed")
        persist.wait_for_metric("framestream_persisted_messages_total", len(frames), 120, kind="tracks")
        for process in (detect, track, persist):
            assert process.alive, f"{process.name} died:\n{process.log_tail()}"
            assert process.terminate() == 0, process.log_tail()
    finally:
        for process in (detect, track, persist):
            process.kill()
        delete_topics(kafka_settings.bootstrap_servers, [topics.cooldowns_changelog, topics.tracker_changelog])

    reference = uninterrupted_run(kafka_settings, topics, load_rules(rules))
    on_topic = check_tracks_topic(kafka_settings, topics)
    print(
        f"track worker killed after {half}+ frames; the replacement skipped {replayed:.0f} replayed frames "
        f"and re-tracked {on_topic - len(frames)} whose state was not yet stored"
    )
    assert replayed > 0, "the replacement saw frames the stored state had already consumed"
    check_clickhouse(store, reference)
    check_alerts_topic(kafka_settings, topics, reference["alerts"])


def uninterrupted_run(kafka: KafkaSettings, topics: TopicNames, rules: RuleSet) -> dict[str, set[str]]:
    """The ids one uninterrupted in-process run gives on the detections the pipeline produced."""
    records = read_topic(kafka, topics.detections, kafka.partitions)
    frames = {frame.frame_seq: frame for frame in (FrameDetections.model_validate_json(v) for _, v in records)}
    tracker = SceneTracker(rules, TrackerConfig())
    state: TrackerState | None = None
    ids: dict[str, set[str]] = {"points": set(), "crossings": set(), "visits": set(), "alerts": set()}
    directions: Counter[str] = Counter()
    for seq in sorted(frames):
        step = tracker.update(frames[seq], state, tracked_at=frames[seq].detected_at)
        state = step.state
        assert step.tracks is not None
        ids["points"] |= {f"{o.track_id}:{seq}" for o in step.tracks.objects if o.track_id is not None}
        ids["crossings"] |= {c.crossing_id for c in step.tracks.crossings}
        ids["visits"] |= {v.visit_id for v in step.tracks.visits}
        ids["alerts"] |= {a.alert_id for a in step.alerts}
        directions.update(c.direction.value for c in step.tracks.crossings)
    assert dict(directions) == expected_crossings(default_scene()), "the scene's ground truth: 2 in, 2 out"
    return ids


def check_tracks_topic(kafka: KafkaSettings, topics: TopicNames) -> int:
    """A frame tracked twice (delivered, then the crash before its state was stored) is the same message twice."""
    records = [
        FrameTracks.model_validate_json(value) for _, value in read_topic(kafka, topics.tracks, kafka.partitions)
    ]
    by_event: dict[str, set[str]] = {}
    for message in records:
        body = message.model_dump_json(exclude={"tracked_at"})
        by_event.setdefault(message.event_id, set()).add(body)
    assert len(by_event) == len(scene_frames())
    assert all(len(bodies) == 1 for bodies in by_event.values()), "a re-tracked frame differs from its first run"
    return len(records)


def check_clickhouse(store: WorkerStore, reference: dict[str, set[str]]) -> None:
    client = store.connect()
    try:
        for table, key, name in (
            ("track_points", "point_id", "points"),
            ("line_crossings", "crossing_id", "crossings"),
            ("zone_visits", "visit_id", "visits"),
        ):
            rows = [row[0] for row in client.query(f"SELECT {key} FROM {table}").result_rows]
            assert len(rows) == len(set(rows)), f"{table}: an id stored twice"
            assert set(rows) == reference[name], f"{table}: differs from the uninterrupted run"
        directions = dict(
            client.query("SELECT toString(direction), count() FROM line_crossings GROUP BY 1").result_rows
        )
        assert directions == expected_crossings(default_scene())
        alerts = client.query(
            "SELECT alert_id, rule_id FROM alerts WHERE rule_id IN ('entered', 'lingering', 'busy')"
        ).result_rows
        assert len(alerts) == len({alert_id for alert_id, _ in alerts}) == len(reference["alerts"])
        assert {alert_id for alert_id, _ in alerts} == reference["alerts"]
        per_track = Counter((rule, alert_id.split(":", 1)[1]) for alert_id, rule in alerts if rule != "busy")
        assert max(per_track.values()) == 1, "a track rule alerts once per track"
        print(f"ClickHouse: {directions}, track alerts {sorted(Counter(r for _, r in alerts).items())}")
    finally:
        client.close()


def check_alerts_topic(kafka: KafkaSettings, topics: TopicNames, expected: set[str]) -> None:
    alerts = [Alert.model_validate_json(value) for _, value in read_topic(kafka, topics.alerts, kafka.partitions)]
    assert {alert.alert_id for alert in alerts} == expected
    # Track alerts carry their snapshot like frame-rule alerts: the frame read back, boxes drawn, stored.
    assert all(alert.snapshot_url and alert.snapshot_url.startswith("file://") for alert in alerts)
    assert all(file_path(alert.snapshot_url).read_bytes()[:2] == b"\xff\xd8" for alert in alerts)
    resent = len(alerts) - len(expected)
    print(f"alerts on the topic: {len(alerts)} records, {len(expected)} distinct ({resent} re-sent with their id)")
