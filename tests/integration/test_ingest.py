"""Camera ingest into a real broker: records, headers, JPEGs, sequence numbers, rate, dead letters."""

from __future__ import annotations

import itertools
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from prometheus_client import REGISTRY

from framestream.settings import REPO_ROOT, KafkaSettings
from schemas import CameraHealth, DeadLetter, FrameMeta, HealthTrigger
from streams.ingest.cameras import Camera, FileSource, FolderSource, SyntheticSource
from streams.ingest.producer import CameraIngest
from streams.kafka_config import consumer_config
from streams.topics import TopicNames

pytestmark = pytest.mark.integration

PHOTOS = REPO_ROOT / "tests" / "data" / "photos"
BROKEN_BYTES = b"\xff\xd8\xff\xe0 truncated: not a decodable JPEG"


def read_all(kafka: KafkaSettings, topic: str, expected: int, timeout_s: float = 30.0) -> list[Message]:
    """Every record of ``topic`` (all partitions, from the start) once ``expected`` have arrived."""
    consumer = Consumer(consumer_config(kafka, "reader"))
    partitions = consumer.list_topics(timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                messages.append(message)
        # Anything beyond the expected count would be a duplicate or a stray record.
        extra = consumer.poll(1.0)
        if extra is not None and not extra.error():
            messages.append(extra)
    finally:
        consumer.close()
    return messages


def read_until_quiet(kafka: KafkaSettings, topic: str, quiet_s: float = 3.0, timeout_s: float = 60.0) -> list[Message]:
    """Every record of ``topic`` from the start, in each partition's order, once none came for ``quiet_s``."""
    consumer = Consumer(consumer_config(kafka, "reader"))
    partitions = consumer.list_topics(timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while time.monotonic() - last < quiet_s and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                messages.append(message)
                last = time.monotonic()
    finally:
        consumer.close()
    return messages


@pytest.fixture
def folder_with_a_broken_file(tmp_path: Path) -> Path:
    folder = tmp_path / "stills"
    folder.mkdir()
    for name in ("person.jpg", "dog.jpg", "horses.jpg"):
        shutil.copy(PHOTOS / name, folder / name)
    (folder / "cracked.jpg").write_bytes(BROKEN_BYTES)  # sorts between dog.jpg and horses.jpg
    return folder


def produced_metric(camera: str) -> float:
    return REGISTRY.get_sample_value("framestream_ingest_frames_produced_total", {"camera": camera}) or 0.0


def frames_by_camera(messages: list[Message]) -> dict[str, list[tuple[FrameMeta, np.ndarray]]]:
    cameras: dict[str, list[tuple[FrameMeta, np.ndarray]]] = defaultdict(list)
    for message in messages:
        meta = FrameMeta.from_headers(message.headers())
        assert message.key() == meta.camera_id.encode()
        image = cv2.imdecode(np.frombuffer(message.value(), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[:2] == (meta.height, meta.width)
        cameras[meta.camera_id].append((meta, image))
    for frames in cameras.values():
        frames.sort(key=lambda item: item[0].frame_seq)
    return cameras


def test_folder_and_synthetic_cameras(
    kafka_settings: KafkaSettings, topics: TopicNames, folder_with_a_broken_file: Path
) -> None:
    cameras = [
        Camera(id="stills", source=FolderSource(kind="folder", path=folder_with_a_broken_file), fps=20),
        Camera(id="pattern", source=SyntheticSource(kind="synthetic", width=320, height=240), fps=10, max_frames=25),
    ]
    produced_before = produced_metric("stills")
    progress = CameraIngest(cameras, kafka_settings, topics, first_seq=1000).run()

    frames = frames_by_camera(read_all(kafka_settings, topics.frames, expected=3 + 25))
    assert {camera: len(items) for camera, items in frames.items()} == {"stills": 3, "pattern": 25}
    for camera, items in frames.items():
        seqs = [meta.frame_seq for meta, _ in items]
        assert seqs == list(range(1000, 1000 + len(items))), camera  # contiguous, no gaps, no repeats
        assert all(meta.stats is not None for meta, _ in items)
    # The folder is read in name order and carries on past the undecodable file.
    assert [meta.width for meta, _ in frames["stills"]] == [768, 773, 640]  # dog, horses, person
    captured = [meta.captured_at.timestamp() for meta, _ in frames["pattern"]]
    rate = (len(captured) - 1) / (captured[-1] - captured[0])
    assert 9.0 <= rate <= 10.5, rate  # target 10 fps; never faster, slower only under heavy load
    assert statistics.median(b - a for a, b in itertools.pairwise(captured)) == pytest.approx(0.1, abs=0.02)

    letters = read_all(kafka_settings, topics.deadletter, expected=1)
    assert len(letters) == 1 and letters[0].key() == b"stills"
    letter = DeadLetter.model_validate_json(letters[0].value())
    assert (letter.stage, letter.original, letter.error_type) == ("ingest", BROKEN_BYTES, "UndecodableImage")
    assert "cracked.jpg" in letter.reason
    assert letter.headers["source-path"] == str(folder_with_a_broken_file / "cracked.jpg")

    assert (progress["stills"].frames_produced, progress["stills"].dead_letters) == (3, 1)
    assert (progress["pattern"].frames_produced, progress["pattern"].last_seq) == (25, 1024)
    assert not any(p.error for p in progress.values())
    assert produced_metric("stills") - produced_before == 3
    assert REGISTRY.get_sample_value("framestream_ingest_dead_letters_total", {"camera": "stills"}) >= 1
    # The undecodable file is a decode error in the camera's health, next to its frames.
    reports = [
        CameraHealth.model_validate_json(m.value()) for m in read_until_quiet(kafka_settings, topics.camera_health)
    ]
    finals = {r.camera_id: r for r in reports if r.trigger is HealthTrigger.FINAL}
    assert (finals["stills"].decode_errors_total, finals["stills"].frames_total) == (1, 3)
    assert (finals["pattern"].decode_errors_total, finals["pattern"].frames_total) == (0, 25)
    assert REGISTRY.get_sample_value("framestream_ingest_decode_errors_total", {"camera": "stills"}) >= 1


def test_a_video_file_is_sampled_down_to_the_target_fps(kafka_settings: KafkaSettings, topics: TopicNames) -> None:
    video = REPO_ROOT / "samples" / "media" / "street.mp4"  # 10 fps
    camera = Camera(id="street", source=FileSource(kind="file", path=video), fps=4, max_frames=6, resize_width=320)
    CameraIngest([camera], kafka_settings, topics).run()
    frames = frames_by_camera(read_all(kafka_settings, topics.frames, expected=6))["street"]
    assert [meta.frame_seq for meta, _ in frames] == list(range(6))
    assert all((meta.width, meta.height) == (320, 240) for meta, _ in frames)
    captured = [meta.captured_at.timestamp() for meta, _ in frames]
    gaps = [b - a for a, b in itertools.pairwise(captured)]
    # At 10 fps in, 4 fps out keeps frames 0.2 or 0.3 s apart (every 2nd or 3rd), 0.25 s on average.
    assert all(0.15 <= gap <= 0.4 for gap in gaps), gaps
    assert statistics.mean(gaps) == pytest.approx(0.25, abs=0.04)


def test_the_ingest_command(kafka_settings: KafkaSettings, topics: TopicNames, tmp_path: Path) -> None:
    cameras_file = tmp_path / "cameras.yaml"
    cameras_file.write_text("cameras:\n  - {id: gen, source: {kind: synthetic, width: 64, height: 48}, fps: 20}\n")
    env = {
        **os.environ,
        "FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "FRAMESTREAM_KAFKA_PROFILE": kafka_settings.profile.value,
        "FRAMESTREAM_KAFKA_TOPIC_PREFIX": topics.prefix,
        "FRAMESTREAM_KAFKA_PARTITIONS": str(kafka_settings.partitions),
    }
    command = [
        sys.executable,
        "-m",
        "framestream.cli",
        "ingest",
        "--cameras",
        str(cameras_file),
        "--max-frames",
        "5",
        "--seq-start",
        "42",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "gen" in result.stdout and " 5 " in result.stdout
    frames = frames_by_camera(read_all(kafka_settings, topics.frames, expected=5))
    assert [meta.frame_seq for meta, _ in frames["gen"]] == [42, 43, 44, 45, 46]


def test_frames_survive_a_broker_outage(tmp_path: Path) -> None:
    """Tansu stops mid-stream and comes back on the same port: every frame not yet
    acknowledged is delivered afterwards, through librdkafka's retries and ours."""
    from framestream.services.broker import LocalBroker
    from streams.topics import create_topics

    broker = LocalBroker(tmp_path / "logs").start()
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, profile="tansu", partitions=4)
    topics = TopicNames(prefix="outage.")
    create_topics(broker.bootstrap_servers, topics, partitions=4, retention_ms=3_600_000)
    camera = Camera(id="gen", source=SyntheticSource(kind="synthetic", width=64, height=48), fps=20, max_frames=60)
    # A 1 s delivery timeout makes librdkafka give up during the outage, so ingest's own retries are exercised.
    ingest = CameraIngest([camera], kafka, topics, producer_overrides={"message.timeout.ms": 1000})
    try:
        ingest.start()
        while ingest.progress()["gen"].frames_produced < 10:
            time.sleep(0.05)
        broker.stop()
        time.sleep(2.5)
        # Counted after the stop: acknowledgements that raced the stop are served by now.
        acknowledged = ingest.progress()["gen"].frames_produced
        broker = LocalBroker(tmp_path / "logs", port=broker.port).start()  # memory store: empty again
        create_topics(broker.bootstrap_servers, topics, partitions=4, retention_ms=3_600_000)
        ingest.wait(timeout_s=60)
        progress = ingest.stop()["gen"]
        messages = read_all(kafka, topics.frames, expected=60 - acknowledged)
        seqs = {FrameMeta.from_headers(message.headers()).frame_seq for message in messages}
    finally:
        broker.stop()
    assert (progress.frames_sent, progress.frames_produced, progress.delivery_failures) == (60, 60, 0)
    assert progress.delivery_retries > 0
    assert set(range(acknowledged, 60)) <= seqs


def test_a_frame_too_large_for_the_broker_is_dead_lettered_and_the_camera_goes_on(
    kafka_settings: KafkaSettings, topics: TopicNames
) -> None:
    # Noise does not compress: each 320x240 frame is far above this producer's 20 kB limit.
    camera = Camera(
        id="noisy",
        source=SyntheticSource(kind="synthetic", width=320, height=240, pattern="noise"),
        fps=20,
        max_frames=3,
        jpeg_quality=95,
    )
    progress = CameraIngest(
        [camera], kafka_settings, topics, first_seq=7, producer_overrides={"message.max.bytes": 20_000}
    ).run()

    letters = [DeadLetter.model_validate_json(m.value()) for m in read_all(kafka_settings, topics.deadletter, 3)]
    assert len(letters) == 3
    assert {letter.error_type for letter in letters} == {"UndeliverableFrame"}
    assert sorted(int(letter.headers["fs-frame-seq"]) for letter in letters) == [7, 8, 9]
    for letter in letters:
        assert letter.original == b"" and int(letter.headers["original-size"]) > 20_000
        assert "lower jpeg_quality or set resize_width" in letter.reason
    assert (progress["noisy"].frames_sent, progress["noisy"].delivery_failures, progress["noisy"].dead_letters) == (
        3,
        3,
        3,
    )
