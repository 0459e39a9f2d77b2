"""Helpers for tests that run ``framestream worker`` processes against the real services.

A ``WorkerProcess`` is the real command in a subprocess (``python -m framestream.cli
worker``), configured only through the environment, as a deployment would be. Tests
read its Prometheus metrics to know what it did, and stop it with SIGTERM (graceful)
or SIGKILL (a crash).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import cv2
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from framestream.child_process import WorkerProcess as ChildWorker
from framestream.services.probes import free_port, metric_value, metrics_text
from framestream.settings import REPO_ROOT, KafkaSettings
from schemas import FrameMeta
from streams.kafka_config import consumer_config, producer_config

PHOTOS = REPO_ROOT / "tests" / "data" / "photos"
# librdkafka's default message.max.bytes is 1 MB; kite.jpg (1.4 MB) is re-encoded below that.
MAX_FRAME_BYTES = 900_000


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


@dataclass
class WorkerProcess:
    """A test's handle on one ``framestream worker``: a name, its stages, and a fresh log per start.
    The process itself is ``framestream.child_process.WorkerProcess``, as in the demo and bench."""

    name: str
    stages: str
    env: dict[str, str]
    log_dir: Path
    worker_id: str = ""
    metrics_port: int = field(default_factory=free_port)
    child: ChildWorker | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self, **extra_env: str) -> WorkerProcess:
        """Start the worker; ``extra_env`` adds settings for this start only."""
        self.starts += 1
        self.child = ChildWorker(
            ["--stages", self.stages],
            worker_id=self.worker_id or self.name,
            metrics_port=self.metrics_port,
            log_path=self.log_path,
            env=self.env | extra_env,
        ).start()
        wait_until(lambda: self._metrics_text() is not None or not self.alive, 60, f"{self.name}'s metrics endpoint")
        assert self.alive, f"{self.name} exited at start:\n{self.log_tail()}"
        return self

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.running

    def _metrics_text(self) -> str | None:
        return metrics_text(self.metrics_port)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 when absent)."""
        return metric_value(self._metrics_text(), name, **labels)

    def wait_for_metric(self, name: str, at_least: float, timeout_s: float, **labels: str) -> None:
        def reached() -> bool:
            assert self.alive, f"{self.name} died:\n{self.log_tail()}"
            return self.metric(name, **labels) >= at_least

        wait_until(reached, timeout_s, f"{self.name}: {name}{labels} >= {at_least}")

    def terminate(self, timeout_s: float = 60) -> int | None:
        """SIGTERM and wait: the graceful path (drain, flush, commit)."""
        assert self.child is not None
        return self.child.stop(grace_s=timeout_s)

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to flush or commit."""
        if self.child is not None:
            self.child.kill()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def worker_env(
    kafka: KafkaSettings,
    *,
    triton_url: str,
    data_dir: Path,
    rules_file: Path,
    clickhouse_dsn: str,
    clickhouse_database: str,
    **extra: str,
) -> dict[str, str]:
    """The environment a worker reads its settings from (nothing else: no FRAMESTREAM_* leaks in)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FRAMESTREAM_")}
    env.update(
        {
            "FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "FRAMESTREAM_KAFKA_PROFILE": kafka.profile.value,
            "FRAMESTREAM_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
            "FRAMESTREAM_KAFKA_PARTITIONS": str(kafka.partitions),
            "FRAMESTREAM_KAFKA_REPLICATION_FACTOR": str(kafka.replication_factor),
            "FRAMESTREAM_KAFKA_RETENTION_MS": str(kafka.retention_ms),
            "FRAMESTREAM_TRITON_URL": triton_url,
            "FRAMESTREAM_DATA_DIR": str(data_dir),
            "FRAMESTREAM_RULES_FILE": str(rules_file),
            "FRAMESTREAM_CLICKHOUSE_DSN": clickhouse_dsn,
            "FRAMESTREAM_CLICKHOUSE_DATABASE": clickhouse_database,
            "FRAMESTREAM_CLICKHOUSE_TTL_DAYS": "3650",
            "FRAMESTREAM_WORKER_LAG_INTERVAL_S": "1",
            "FRAMESTREAM_WORKER_SHUTDOWN_TIMEOUT_S": "30",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def photo_bytes(name: str) -> tuple[bytes, int, int]:
    """A test photo as JPEG bytes, with its width and height; re-encoded only when too big for a record."""
    path = PHOTOS / f"{name}.jpg"
    data = path.read_bytes()
    image = cv2.imread(str(path))
    height, width = image.shape[:2]
    if len(data) > MAX_FRAME_BYTES:
        data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    return data, width, height


@dataclass(frozen=True)
class Frame:
    camera_id: str
    frame_seq: int
    captured_at: datetime
    photo: str

    @property
    def event_id(self) -> str:
        return f"{self.camera_id}:{self.frame_seq}"


def camera_frames(
    cameras: dict[str, str], per_camera: int, spacing_s: float, start: datetime | None = None
) -> list[Frame]:
    """``per_camera`` frames of each camera (camera id -> photo), captured ``spacing_s`` apart, interleaved."""
    start = start or datetime.now(UTC).replace(microsecond=0)
    return [
        Frame(camera, seq, start + timedelta(seconds=seq * spacing_s), photo)
        for seq in range(per_camera)
        for camera, photo in cameras.items()
    ]


class FrameProducer:
    """Produces frames the way ingest does: key camera id, JPEG value, FrameMeta headers."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.producer = Producer(producer_config(kafka, client_id="test-frames"))
        self._photos: dict[str, tuple[bytes, int, int]] = {}

    def frame(self, topic: str, frame: Frame, partition: int | None = None) -> None:
        if frame.photo not in self._photos:
            self._photos[frame.photo] = photo_bytes(frame.photo)
        data, width, height = self._photos[frame.photo]
        meta = FrameMeta(
            camera_id=frame.camera_id,
            frame_seq=frame.frame_seq,
            captured_at=frame.captured_at,
            width=width,
            height=height,
        )
        self.raw(topic, frame.camera_id.encode(), data, meta.to_headers(), partition)

    def raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> None:
        extra = {} if partition is None else {"partition": partition}
        self.producer.produce(topic, key=key, value=value, headers=headers, **extra)
        self.producer.poll(0)

    def flush(self) -> None:
        remaining = self.producer.flush(30)
        assert remaining == 0, f"{remaining} test records not delivered"


class FrameFeed(threading.Thread):
    """A background producer with the production config (acks=all, idempotent): a round of frames,
    one per camera (camera i to partition i), every ``round_s`` until ``finish()`` or ``max_rounds``;
    it records what librdkafka reported delivered or failed, by frame id.

    While more than ``max_backlog`` of its frames are not yet ``stored()`` downstream it waits, so a
    slow machine gets a stream it can keep up with rather than a backlog that only adds minutes.
    Only whole rounds are sent: every camera ends with ``rounds`` frames, sequence 0..rounds-1."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        cameras: dict[str, str],
        *,
        spacing_s: float,
        round_s: float,
        max_rounds: int,
        max_backlog: int,
        stored: Callable[[], float],
        start: datetime | None = None,
        client_id: str = "test-feed",
    ) -> None:
        super().__init__(name="frame-feed", daemon=True)
        self.topic = topic
        self.cameras = dict(cameras)
        self.spacing_s = spacing_s
        self.round_s = round_s
        self.max_rounds = max_rounds
        self.max_backlog = max_backlog
        self.stored = stored
        self.start_at = start or datetime.now(UTC).replace(microsecond=0)
        self.producer = Producer(producer_config(kafka, client_id=client_id))
        self.photos = {photo: photo_bytes(photo) for photo in set(self.cameras.values())}
        self.produced: list[str] = []
        self.delivered: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.rounds = 0
        self.error: BaseException | None = None
        self._stop_requested = threading.Event()
        self._held = threading.Event()

    def run(self) -> None:
        try:
            next_round = time.monotonic()
            while self.rounds < self.max_rounds and not self._stop_requested.is_set():
                for partition, (camera, photo) in enumerate(self.cameras.items()):
                    self._send(camera, photo, self.rounds, partition)
                self.rounds += 1
                next_round += self.round_s
                self._stop_requested.wait(max(0.0, next_round - time.monotonic()))
                self.producer.poll(0)
                while (
                    self._held.is_set() or len(self.produced) - self.stored() > self.max_backlog
                ) and not self._stop_requested.is_set():
                    self._stop_requested.wait(0.2)
                    self.producer.poll(0)
                next_round = max(next_round, time.monotonic())
        except BaseException as error:  # re-raised by finish(), in the test's thread
            self.error = error

    def _send(self, camera: str, photo: str, seq: int, partition: int) -> None:
        data, width, height = self.photos[photo]
        captured_at = self.start_at + timedelta(seconds=seq * self.spacing_s)
        meta = FrameMeta(camera_id=camera, frame_seq=seq, captured_at=captured_at, width=width, height=height)
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    key=camera.encode(),
                    value=data,
                    headers=meta.to_headers(),
                    partition=partition,
                    on_delivery=partial(self._on_delivery, meta.frame_id),
                )
                break
            except BufferError:  # the bounded queue is full (a broker away): wait, never drop
                self.producer.poll(0.5)
        self.produced.append(meta.frame_id)
        self.producer.poll(0)

    def _on_delivery(self, frame_id: str, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.delivered.append(frame_id)
        else:
            self.failed.append((frame_id, error.str()))

    def hold(self) -> None:
        """Send no new round until ``release()`` (e.g. to let the pipeline catch up first)."""
        self._held.set()

    def release(self) -> None:
        self._held.clear()

    def finish(self, timeout_s: float) -> int:
        """Stop after the current round and wait for every delivery report; returns the records
        still undelivered after ``timeout_s``."""
        self._stop_requested.set()
        self.join(timeout_s)
        assert not self.is_alive(), "the frame feed did not stop"
        if self.error is not None:
            raise self.error
        return self.producer.flush(timeout_s)


def low_watermarks(kafka: KafkaSettings, topic: str, partitions: int) -> dict[int, int]:
    """Log-start offsets (low watermarks) of ``topic`` by partition: above 0 once retention deleted a segment."""
    consumer = Consumer(consumer_config(kafka, group_id=f"test-sizer-{time.monotonic_ns()}"))
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in range(partitions)}
    finally:
        consumer.close()


def read_topic(
    kafka: KafkaSettings, topic: str, partitions: int, idle_s: float = 3.0
) -> list[tuple[bytes | None, bytes]]:
    """Every record of ``topic`` (key, value) from the start of each partition, until none came for ``idle_s``.

    Not bounded by high watermarks: Tansu's are too low after multi-record batches
    (streams/kafka_config.py, quirk 1)."""
    consumer = Consumer(consumer_config(kafka, group_id=f"test-reader-{time.monotonic_ns()}"))
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        records: list[tuple[bytes | None, bytes]] = []
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            records.append((message.key(), message.value()))
            last = time.monotonic()
        return records
    finally:
        consumer.close()


def records_in(kafka: KafkaSettings, topic: str, partitions: int) -> int:
    """Records on ``topic`` by its high watermarks; exact for the workers' topics, whose producer
    writes one record per batch on Tansu (see streams/kafka_config.py)."""
    consumer = Consumer(consumer_config(kafka, group_id=f"test-sizer-{time.monotonic_ns()}"))
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        consumer.close()


def committed_offsets(kafka: KafkaSettings, group_id: str, topic: str, partitions: int) -> dict[int, int]:
    """The offsets consumer group ``group_id`` has committed on ``topic``, by partition (-1: none yet).

    Read with a consumer that never joins the group (it only asks the group coordinator), so
    asking does not trigger a rebalance of the workers in it."""
    consumer = Consumer(consumer_config(kafka, group_id=group_id))
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset if tp.offset >= 0 else -1 for tp in committed}
    finally:
        consumer.close()


def end_offsets(kafka: KafkaSettings, topic: str, partitions: int) -> dict[int, int]:
    """High watermarks of ``topic`` by partition (see ``records_in`` for Tansu's)."""
    consumer = Consumer(consumer_config(kafka, group_id=f"test-sizer-{time.monotonic_ns()}"))
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        consumer.close()


def all_samples(workers: Iterable[WorkerProcess], name: str, **labels: str) -> float:
    return sum(worker.metric(name, **labels) for worker in workers)


@dataclass(frozen=True)
class WorkerStore:
    """The ClickHouse a persist worker writes: its own chDB path, or a fresh database on a server.

    chDB allows one process per path, so on chDB the test reads only after the worker has stopped."""

    dsn: str
    database: str

    def connect(self) -> "Client":  # noqa: F821 - clickhouse_connect's Client
        import clickhouse_connect

        client = clickhouse_connect.get_client(dsn=self.dsn)
        client.database = self.database
        return client

    def drop(self) -> None:
        if not self.dsn.startswith("chdb:"):
            client = self.connect()
            try:
                client.command(f"DROP DATABASE IF EXISTS {self.database} SYNC")
            finally:
                client.close()


def worker_store(target_dsn: str, embedded: bool, tmp_path: Path) -> WorkerStore:
    if embedded:
        return WorkerStore(f"chdb://{(tmp_path / 'clickhouse').resolve()}", "framestream")
    return WorkerStore(target_dsn, f"fs_pipeline_{os.urandom(6).hex()}")
