"""The end-of-soak checks, on what the topics and ClickHouse hold once every worker stopped.

    found = check_everything(settings, malformed_keys)   # -> Checked: violations and counts

- every frame on the frames topic is in ClickHouse exactly once (the set of ids, count and
  uniqExact agree), and so is every detection and alert row;
- the alert ids (ClickHouse and the alerts topic) are exactly those a fault-free reference
  gives: ``RuleEvaluator`` run in-process over the frames' detections, each camera in
  ``frame_seq`` order, cooldowns in capture time. The reference reads the detections the
  detect stage delivered (deduplicated by frame id): detection is deterministic given the
  model, so these are the detections any run would give, and the check is on alerting;
- every malformed record is a dead letter of each stage that reads its topic, and no other
  record is a dead letter.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from pydantic import ValidationError

from framestream.chaos.malformed import DEAD_LETTER_STAGES, KEY_PREFIX
from framestream.settings import Settings
from processors.rules import CooldownState, RuleEvaluator
from schemas import Alert, FrameDetections, FrameMeta
from schemas.base import utc_now
from streams.config_files import load_rules
from streams.kafka_config import KafkaSettings, consumer_config
from streams.sinks.clickhouse_db import connect
from streams.topics import TopicNames

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


@dataclass
class Violation:
    check: str
    detail: str


@dataclass
class Checked:
    violations: list[Violation] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def expect(self, check: str, ok: bool, detail: str) -> None:
        if not ok:
            self.violations.append(Violation(check, detail))


def read_all(kafka: KafkaSettings, topic: str) -> list[Record]:
    """Every record of ``topic``, from the start of each partition to its end offset now."""
    consumer = Consumer(consumer_config(kafka, group_id=f"chaos-reader-{topic}"))
    try:
        partitions = [TopicPartition(topic, p) for p in range(kafka.partitions)]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p, end in ends.items() if end > 0])
        positions = dict.fromkeys(ends, 0)
        records: list[Record] = []
        while any(positions[p] < end for p, end in ends.items()):
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            positions[message.partition()] = message.offset() + 1
            records.append((message.key(), message.value(), list(message.headers() or [])))
        return records
    finally:
        consumer.close()


def _is_malformed(key: bytes | None) -> bool:
    return key is not None and key.startswith(KEY_PREFIX.encode())


def produced_frames(records: list[Record], found: Checked) -> set[str]:
    ids = set()
    for key, _, headers in records:
        if _is_malformed(key):
            continue
        try:
            ids.add(FrameMeta.from_headers(headers).frame_id)
        except (ValidationError, ValueError) as error:
            found.expect("frames-topic", False, f"an unrecognised record on the frames topic (key {key!r}): {error}")
    return ids


def delivered_detections(records: list[Record], found: Checked) -> dict[str, FrameDetections]:
    """Frame id -> its detections (the first delivered; a replay must carry the same ones)."""
    frames: dict[str, FrameDetections] = {}
    differing = 0
    for key, value, _ in records:
        if _is_malformed(key):
            continue
        frame = FrameDetections.model_validate_json(value or b"")
        first = frames.setdefault(frame.event_id, frame)
        differing += first.detections != frame.detections
    found.counts["replayed_detections_that_differ"] = differing
    return frames


def reference_alerts(frames: dict[str, FrameDetections], evaluator: RuleEvaluator) -> set[str]:
    """The alerts a fault-free run gives: each camera's frames in sequence, one cooldown state per camera."""
    by_camera: dict[str, list[FrameDetections]] = defaultdict(list)
    for frame in frames.values():
        by_camera[frame.camera_id].append(frame)
    alerts: set[str] = set()
    for camera_frames in by_camera.values():
        state: CooldownState = {}
        for frame in sorted(camera_frames, key=lambda f: f.frame_seq):
            evaluation = evaluator.evaluate(frame, state, raised_at=utc_now())
            alerts.update(alert.alert_id for alert in evaluation.alerts)
            state = evaluation.state
    return alerts


def check_everything(settings: Settings, malformed: dict[str, str], unconfirmed: set[str]) -> Checked:
    """``malformed``: key -> harness topic of every bad record the broker acknowledged;
    ``unconfirmed``: keys sent without a delivery report (they may or may not be there)."""
    found = Checked()
    kafka, topics = settings.kafka, TopicNames(settings.kafka.topic_prefix)
    frames = produced_frames(read_all(kafka, topics.frames), found)
    detections = delivered_detections(read_all(kafka, topics.detections), found)
    alert_records = read_all(kafka, topics.alerts)
    on_topic = {Alert.model_validate_json(value or b"").alert_id for key, value, _ in alert_records}
    expected = reference_alerts(detections, RuleEvaluator(load_rules(settings.rules_file)))
    found.counts |= {
        "frames": len(frames),
        "detections": len(detections),
        "alerts_expected": len(expected),
        "alert_records": len(alert_records),
        "malformed": len(malformed),
    }
    found.expect("detections", set(detections) == frames, _diff("frames detected", set(detections), frames))
    found.expect("alerts-topic", on_topic == expected, _diff("alert ids on the topic", on_topic, expected))
    _check_clickhouse(settings, frames, expected, malformed, unconfirmed, found)
    return found


def _check_clickhouse(
    settings: Settings,
    frames: set[str],
    alerts: set[str],
    malformed: dict[str, str],
    unconfirmed: set[str],
    found: Checked,
) -> None:
    client = connect(settings.clickhouse, settings.data_dir)
    db = settings.clickhouse.database
    try:
        for table, key in (("frames", "event_id"), ("detections", "detection_id"), ("alerts", "alert_id")):
            count, unique = client.query(f"SELECT count(), uniqExact({key}) FROM {db}.{table}").result_rows[0]
            found.counts[f"clickhouse_{table}"] = int(count)
            found.expect("exactly-once", count == unique, f"{table}: {count} rows but {unique} distinct {key}s")
        stored = {row[0] for row in client.query(f"SELECT event_id FROM {db}.frames").result_rows}
        found.expect("exactly-once", stored == frames, _diff("frames in ClickHouse", stored, frames))
        stored_alerts = {row[0] for row in client.query(f"SELECT alert_id FROM {db}.alerts").result_rows}
        found.expect("alerts", stored_alerts == alerts, _diff("alert ids in ClickHouse", stored_alerts, alerts))
        letters = client.query(f"SELECT record_key, stage, count() FROM {db}.dead_letters GROUP BY record_key, stage")
        _check_dead_letters(letters.result_rows, malformed, unconfirmed, found)
    finally:
        client.close()


def _check_dead_letters(
    rows: list[tuple[object, str, int]], malformed: dict[str, str], unconfirmed: set[str], found: Checked
) -> None:
    seen: dict[tuple[str, str], int] = {}
    for key, stage, count in rows:
        text = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
        seen[(text, stage)] = int(count)
    expected = {(key, stage) for key, topic in malformed.items() for stage in DEAD_LETTER_STAGES[topic]}
    found.counts["dead_letters"] = sum(seen.values())
    missing = sorted(expected - set(seen))
    others = sorted(pair for pair in set(seen) - expected if pair[0] not in unconfirmed)
    twice = sorted(pair for pair, count in seen.items() if count > 1)
    found.expect(
        "dead-letters", not missing, f"{len(missing)} malformed records without their dead letter: {missing[:5]}"
    )
    found.expect(
        "dead-letters", not others, f"{len(others)} dead letters of records that were not malformed: {others[:5]}"
    )
    found.expect("dead-letters", not twice, f"{len(twice)} records dead-lettered more than once: {twice[:5]}")


def _diff(what: str, got: set[str], wanted: set[str]) -> str:
    missing, extra = sorted(wanted - got), sorted(got - wanted)
    return (
        f"{what}: {len(got)} vs {len(wanted)} expected; "
        f"missing {len(missing)} {missing[:5]}, extra {len(extra)} {extra[:5]}"
    )
