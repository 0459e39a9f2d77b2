"""Camera ingest: sample each camera to its target fps, JPEG-encode, produce to the frames topic.

One thread per camera reads its source, samples, encodes and calls
``Producer.produce``; one delivery thread serves delivery reports and produces
again any record whose delivery failed (with backoff), so no frame is dropped
silently. Records: key = camera id, value = JPEG bytes, headers =
``FrameMeta.to_headers()``. An image file that cannot be decoded becomes a
``DeadLetter`` on the dead-letter topic and the camera carries on.

Camera health (``streams/ingest/health.py``): every produced frame, decode error, lost stream
and reconnect is accounted per camera; a health thread ticks once a second, and every report
(periodic, on a change of state, and a final one at stop) goes to the camera-health topic as a
``CameraHealth`` message, key = camera id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from processors.camera_health import DecodeFailed, FrameProduced, Reconnecting, StreamLost
from processors.sampling import FpsSampler
from schemas.camera_health import CameraHealth
from streams.ingest import metrics
from streams.ingest.cameras import Camera
from streams.ingest.frames import IngestError, dead_letter_for_file, dead_letter_for_frame, encode_frame
from streams.ingest.health import IngestHealth
from streams.ingest.sources import CapturedFrame, FrameSource, SourceError, StreamEvents, open_source
from streams.kafka_config import KafkaSettings, producer_config
from streams.retry import RetryPolicy, log_retry
from streams.topics import TopicNames

log = logging.getLogger(__name__)

# Delivery errors that no retry can fix.
PERMANENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError._INVALID_ARG,
    }
)
# A failed delivery is produced again after 0.2 s, 0.4 s, ... up to 5 s, for as long as it fails.
DELIVERY_RETRY = RetryPolicy(initial_s=0.2, max_s=5.0, multiplier=2.0)
HEALTH_TICK_S = 0.5  # how often the health thread looks for due reports and silent cameras
SAMPLING_MARGIN = 1.01  # a source up to 1 % faster than the target (29.97 vs 30 fps) is not sampled


@dataclass
class CameraProgress:
    """Counters of one camera, readable while ingest runs (``CameraIngest.progress()``)."""

    frames_sent: int = 0  # handed to the producer
    frames_produced: int = 0  # acknowledged by the broker
    bytes_produced: int = 0
    dead_letters: int = 0
    health_reports: int = 0  # acknowledged on the camera-health topic
    delivery_retries: int = 0
    delivery_failures: int = 0  # permanent; each is also logged as an error
    last_seq: int | None = None
    finished: bool = False
    error: str | None = None


@dataclass(frozen=True)
class _Record:
    """Everything needed to produce a record again after a failed delivery."""

    camera_id: str
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    is_frame: bool = True
    is_health: bool = False


class CameraIngest:
    """Runs cameras into the frames topic. ``run()`` blocks; ``start()``/``stop()`` run in the background."""

    def __init__(
        self,
        cameras: Sequence[Camera],
        kafka: KafkaSettings,
        topics: TopicNames,
        *,
        first_seq: int = 0,
        max_frames: int | None = None,
        duration_s: float | None = None,
        client_id: str = "framestream-ingest",
        flush_timeout_s: float = 60.0,
        producer_overrides: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        health_every_s: float = 10.0,
        offline_after_s: float | None = None,
    ) -> None:
        """``producer_overrides``: extra librdkafka settings on top of ``producer_config`` (tuning, tests).
        ``run_id`` names this run in health reports (default: now in epoch milliseconds); a health
        report per camera every ``health_every_s``; ``offline_after_s`` without a frame makes a
        camera offline (default: 5 s or 5 frame intervals, whichever is longer)."""
        if not cameras:
            raise ValueError("no cameras to ingest")
        self.cameras = list(cameras)
        self.topics = topics
        self.first_seq = first_seq
        self.max_frames = max_frames
        self.duration_s = duration_s
        self.flush_timeout_s = flush_timeout_s
        config = {**producer_config(kafka, client_id), **(producer_overrides or {}), "error_cb": self._on_error}
        self._producer = Producer(config)
        self._progress = {camera.id: CameraProgress() for camera in self.cameras}
        self._stops = {camera.id: threading.Event() for camera in self.cameras}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._outstanding = 0
        self._retries: list[tuple[float, int, _Record]] = []  # (due, attempt, record)
        self._delivery_stop = threading.Event()
        self._delivery_thread = threading.Thread(target=self._serve_deliveries, name="ingest-delivery", daemon=True)
        self._fatal: str | None = None
        self._started_at: float | None = None
        self.health = IngestHealth(
            self.cameras,
            run_id or str(int(time.time() * 1000)),
            report_every_s=health_every_s,
            offline_after_s=offline_after_s,
        )
        self._health_stop = threading.Event()
        self._health_thread = threading.Thread(target=self._serve_health, name="ingest-health", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._started_at = time.monotonic()
        self._delivery_thread.start()
        self._health_thread.start()
        for camera in self.cameras:
            thread = threading.Thread(target=self._run_camera, args=(camera,), name=f"camera-{camera.id}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until every camera finished (frame limit, end of file) or the duration is over.

        True when ingest is done and ``stop()`` should be called; False on ``timeout_s``.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        end = self._duration_end()
        if end is not None:
            deadline = end if deadline is None else min(deadline, end)
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        finished = not any(thread.is_alive() for thread in self._threads)
        return finished or (end is not None and time.monotonic() >= end)

    def _duration_end(self) -> float | None:
        if self.duration_s is None or self._started_at is None:
            return None
        return self._started_at + self.duration_s

    def stop(self) -> dict[str, CameraProgress]:
        """Stop every camera, deliver everything outstanding, and return the final counters."""
        for event in self._stops.values():
            event.set()
        for thread in self._threads:
            thread.join()
        self._health_stop.set()
        if self._health_thread.is_alive():
            self._health_thread.join()
        for message in self.health.stop():
            self._send_health(message)
        undelivered = self._drain(self.flush_timeout_s)
        self._delivery_stop.set()
        if self._delivery_thread.is_alive():
            self._delivery_thread.join()
        if undelivered:
            raise IngestError(f"{undelivered} records were not delivered within {self.flush_timeout_s:.0f}s")
        return self.progress()

    def run(self) -> dict[str, CameraProgress]:
        self.start()
        try:
            self.wait()
        finally:
            progress = self.stop()
        return progress

    def __enter__(self) -> CameraIngest:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def progress(self) -> dict[str, CameraProgress]:
        return {camera_id: replace(progress) for camera_id, progress in self._progress.items()}

    @property
    def fatal_error(self) -> str | None:
        return self._fatal

    # -- camera threads --------------------------------------------------------------------

    def _frame_limit(self, camera: Camera) -> int | None:
        limits = [limit for limit in (camera.max_frames, self.max_frames) if limit is not None]
        return min(limits) if limits else None

    def _run_camera(self, camera: Camera) -> None:
        progress = self._progress[camera.id]
        on_undecodable = partial(self._undecodable_file, camera.id)
        events = StreamEvents(
            on_lost=lambda reason: self._observe(camera.id, StreamLost()),
            on_reconnect=partial(self._reconnecting, camera.id),
            on_decode_error=lambda reason: self._decode_error(camera.id),
        )
        source = open_source(camera, on_undecodable, self._stops[camera.id], events=events)
        frames = source.frames()
        try:
            self._camera_loop(camera, frames, source)
        except (SourceError, IngestError) as error:
            progress.error = str(error)
            log.error("camera stopped", extra={"camera": camera.id, "error": str(error)})
        except Exception as error:  # a bug must not pass silently, nor kill the other cameras
            progress.error = f"{type(error).__name__}: {error}"
            log.exception("camera crashed", extra={"camera": camera.id})
        finally:
            frames.close()
            progress.finished = True

    def _camera_loop(self, camera: Camera, frames: Iterator[CapturedFrame], source: FrameSource) -> None:
        progress = self._progress[camera.id]
        sampler = FpsSampler(camera.fps)
        # A source paced at or below the target is not sampled: scheduling jitter would make the
        # sampler drop frames that came a little early, and the camera miss its target.
        paced = source.rate_fps is not None and source.rate_fps <= camera.fps * SAMPLING_MARGIN
        sampled_out = metrics.FRAMES_SAMPLED_OUT.labels(camera.id).inc
        sampled_by_source = not paced and source.sample_before_decoding(sampler.keep, sampled_out)
        needs_sampling = not sampled_by_source and not paced
        limit = self._frame_limit(camera)
        seq = self.first_seq
        for captured in frames:
            if needs_sampling and not sampler.keep(captured.captured_at.timestamp()):
                metrics.FRAMES_SAMPLED_OUT.labels(camera.id).inc()
                continue
            started = time.perf_counter()
            encoded = encode_frame(camera, captured, seq)
            metrics.ENCODE_SECONDS.labels(camera.id).observe(time.perf_counter() - started)
            record = _Record(camera.id, self.topics.frames, camera.id.encode(), encoded.jpeg, encoded.meta.to_headers())
            if not self._produce(record, self._stops[camera.id]):
                return
            self._observe(camera.id, FrameProduced(captured.captured_at.timestamp(), time.time()))
            progress.frames_sent += 1
            progress.last_seq = seq
            seq += 1
            if limit is not None and progress.frames_sent >= limit:
                return

    # -- health ----------------------------------------------------------------------------

    def _observe(self, camera_id: str, observation: DecodeFailed | FrameProduced | Reconnecting | StreamLost) -> None:
        message = self.health.observe(camera_id, observation)
        if message is not None:
            self._send_health(message)

    def _reconnecting(self, camera_id: str) -> None:
        metrics.SOURCE_RECONNECTS.labels(camera_id).inc()
        self._observe(camera_id, Reconnecting())

    def _decode_error(self, camera_id: str) -> None:
        metrics.DECODE_ERRORS.labels(camera_id).inc()
        self._observe(camera_id, DecodeFailed())

    def _undecodable_file(self, camera_id: str, path: Path, raw: bytes, reason: str) -> None:
        self._decode_error(camera_id)
        self._send_dead_letter(camera_id, path, raw, reason)

    def _serve_health(self) -> None:
        while not self._health_stop.wait(HEALTH_TICK_S):
            for message in self.health.tick():
                self._send_health(message)

    def _send_health(self, message: CameraHealth) -> None:
        value = message.model_dump_json().encode()
        record = _Record(
            message.camera_id, self.topics.camera_health, message.camera_id.encode(), value, [], False, True
        )
        try:
            self._produce(record)
        except IngestError as error:  # a health report is not worth stopping a camera for
            log.error("health report not produced", extra={"camera": message.camera_id, "error": str(error)})

    def _send_dead_letter(self, camera_id: str, path: Path, raw: bytes, reason: str) -> None:
        letter = dead_letter_for_file(camera_id, self.topics.frames, path, raw, reason)
        log.warning("undecodable image sent to the dead-letter topic", extra={"camera": camera_id, "reason": reason})
        value = letter.model_dump_json().encode()
        record = _Record(camera_id, self.topics.deadletter, camera_id.encode(), value, [("fs-stage", b"ingest")], False)
        self._produce(record, self._stops[camera_id])

    # -- producing and delivery ------------------------------------------------------------

    def _produce(self, record: _Record, stop: threading.Event | None = None, attempt: int = 0) -> bool:
        """Hand a record to librdkafka, waiting while its queue is full; False if stopped meanwhile."""
        if self._fatal:
            raise IngestError(f"producer failed: {self._fatal}")
        while True:
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                    on_delivery=partial(self._on_delivery, record, attempt),
                )
                break
            except BufferError:
                # librdkafka's queue is full (broker slow or away): serving delivery
                # reports is what frees it, so poll here rather than sleep.
                self._producer.poll(0.05)
                if stop is not None and stop.is_set():
                    return False
            except KafkaException as error:
                if not (record.is_frame and error.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE):
                    raise IngestError(self._describe(record, error.args[0])) from error
                # One oversized frame must not stop the camera: dead-letter it and go on.
                if attempt == 0:
                    with self._lock:
                        self._outstanding += 1  # _failed() settles it
                self._failed(record, self._describe(record, error.args[0]), too_large=True)
                return True
        if attempt == 0:
            with self._lock:
                self._outstanding += 1
        return True

    def _describe(self, record: _Record, error: KafkaError) -> str:
        what = "frame" if record.is_frame else "dead letter"
        hint = ""
        if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
            hint = "; lower jpeg_quality or set resize_width for this camera"
        return f"camera {record.camera_id}: cannot produce {what} of {len(record.value)} bytes: {error.str()}{hint}"

    def _on_delivery(self, record: _Record, attempt: int, error: KafkaError | None, message: Message) -> None:
        """Delivery report (runs in whichever thread polls): count, or schedule a retry."""
        if error is None:
            self._delivered(record)
        elif error.code() in PERMANENT_ERRORS or error.fatal():
            too_large = error.code() in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE)
            self._failed(record, self._describe(record, error), too_large=too_large)
        else:
            delay = DELIVERY_RETRY.delay(attempt)
            metrics.DELIVERY_RETRIES.labels(record.camera_id).inc()
            log_retry(log, f"delivery to {record.topic}", attempt + 1, delay, error.str(), camera=record.camera_id)
            with self._lock:
                self._progress[record.camera_id].delivery_retries += 1
                self._retries.append((time.monotonic() + delay, attempt + 1, record))

    def _delivered(self, record: _Record) -> None:
        with self._lock:
            progress = self._progress[record.camera_id]
            if record.is_frame:
                progress.frames_produced += 1
                progress.bytes_produced += len(record.value)
            elif record.is_health:
                progress.health_reports += 1
            else:
                progress.dead_letters += 1
            self._outstanding -= 1
        if record.is_frame:
            metrics.FRAMES_PRODUCED.labels(record.camera_id).inc()
            metrics.BYTES_PRODUCED.labels(record.camera_id).inc(len(record.value))
        elif not record.is_health:
            metrics.DEAD_LETTERS.labels(record.camera_id).inc()

    def _failed(self, record: _Record, reason: str, too_large: bool = False) -> None:
        """A record no retry can deliver: counted, logged as an error, never silent; a frame
        also goes to the dead-letter topic (without its bytes when they are what is too large)."""
        log.error("record not delivered", extra={"camera": record.camera_id, "error": reason})
        with self._lock:
            if record.is_health:  # logged; the next report carries the totals again
                self._outstanding -= 1
                return
            progress = self._progress[record.camera_id]
            progress.delivery_failures += 1
            progress.error = reason
            self._outstanding -= 1
            if record.is_frame:
                letter = dead_letter_for_frame(
                    record.camera_id, record.topic, record.value, record.headers, reason, too_large=too_large
                )
                value = letter.model_dump_json().encode()
                dead = _Record(
                    record.camera_id,
                    self.topics.deadletter,
                    record.key,
                    value,
                    [("fs-stage", b"ingest")],
                    is_frame=False,
                )
                # Produced by the delivery thread, not from inside this delivery callback;
                # attempt 1 because it is counted as outstanding here already.
                self._outstanding += 1
                self._retries.append((time.monotonic(), 1, dead))

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error.str()
            log.error("producer fatal error", extra={"error": error.str()})
            for event in self._stops.values():
                event.set()

    def _serve_deliveries(self) -> None:
        while not self._delivery_stop.is_set():
            self._producer.poll(0.1)
            self._produce_due_retries()

    def _produce_due_retries(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [item for item in self._retries if item[0] <= now]
            self._retries = [item for item in self._retries if item[0] > now]
        for _, attempt, record in due:
            try:
                self._produce(record, None, attempt)
            except IngestError as error:
                self._failed(record, str(error))

    def _drain(self, timeout_s: float) -> int:
        """Wait until every record is delivered or failed for good; the number still pending."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._fatal:
            with self._lock:
                if self._outstanding == 0:
                    return 0
            time.sleep(0.05)
        with self._lock:
            return self._outstanding
