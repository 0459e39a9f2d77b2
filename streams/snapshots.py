"""Alert snapshots: the frame an alert fired on, faces blurred, zone and boxes drawn, stored; its URL
goes into the alert (``snapshot_url``).

Usage (inside the alert stage):
    snapshots = SnapshotTaker(context, RuleEvaluator(rules))  # reads FRAMESTREAM_SNAPSHOTS_* / _PRIVACY_*
    alerts = await snapshots.attach(frame, evaluation.alerts) # the same alerts, with snapshot_url set

Per frame that raised alerts: read its JPEG back from ``vision.frames.v1`` by partition and offset
(``KafkaFrameFetcher``), find its faces once (Triton ``face_detector``) unless the camera opted out,
blur them, then per alert draw the rule's zone and matching boxes and store
``<camera_id>/<alert_id>.jpg`` (``open_store``: a folder under the data dir by default, S3 in
production). The key is a function of the alert id, so a replayed alert rewrites its own object
and carries the same URL. Transient faults (broker, Triton, S3) are retried for as long as they
last; a frame already gone from the topic (retention) or one that does not decode yields the alert
without a snapshot and a log line saying why -- never a lost alert.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.annotate import draw_detections, draw_zone
from processors.decode import DecodeError, decode_for_size
from processors.faces import DEFAULT_SCORE_THRESHOLD, blur_faces
from processors.rules import RuleEvaluator
from schemas import Alert, FrameDetections
from schemas.detections import Detection
from schemas.rules import Rule, SceneZone, ZoneConfig
from streams.context import WorkerContext
from streams.example_store import ExampleStore, FileStore, S3Store, StoreError, fetch, open_store
from streams.faces import FaceBlurrer, FaceDetectorClient, PrivacySettings
from streams.frame_reader import FrameFetchError, KafkaFrameFetcher
from streams.inference import InferenceRejected
from streams.retry import RetryPolicy, retry_sync

log = logging.getLogger(__name__)
DEFAULT_FOLDER = "snapshots"
REPORT_RETRY = RetryPolicy(initial_s=0.1, max_s=0.1)


class SnapshotSettings(BaseSettings):
    """Alert snapshots (env ``FRAMESTREAM_SNAPSHOTS_*``)."""

    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_SNAPSHOTS_", extra="forbid")

    enabled: bool = Field(True, description="attach a snapshot to every alert of the alert stage")
    store_url: str = Field("", description="file:///path or s3://bucket/prefix; empty: <data_dir>/snapshots")
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint (MinIO, Ceph); empty: AWS")
    public_base_url: str = Field(
        "",
        description="http(s) URL the store is served under (CDN, S3 website, nginx); set, alerts carry "
        "<public_base_url>/<camera_id>/<alert_id>.jpg instead of the file:// or s3:// URI",
    )
    jpeg_quality: int = Field(85, ge=30, le=100)
    fetch_timeout_s: float = Field(10.0, gt=0, description="longest wait for one frame from the frames topic")
    face_model: str = Field("face_detector", description="Triton model that finds faces")
    face_score_threshold: float = Field(DEFAULT_SCORE_THRESHOLD, ge=0, le=1)
    retention_days: float = Field(
        7.0, gt=0, description="`framestream snapshots prune` default; S3: the bucket's lifecycle rule"
    )


def open_snapshot_store(
    settings: SnapshotSettings, data_dir: Path, retry: RetryPolicy, stop: threading.Event, client: object = None
) -> ExampleStore:
    """The configured store; by default the folder ``<data_dir>/snapshots``. ``client``: a boto3 S3 client."""
    if not settings.store_url:
        return FileStore(data_dir / DEFAULT_FOLDER)
    endpoint = settings.s3_endpoint_url or None
    return open_store(settings.store_url, data_dir, retry=retry, stop=stop, endpoint_url=endpoint, client=client)


def snapshot_key(alert: Alert) -> str:
    return f"{alert.camera_id}/{alert.alert_id}.jpg"


def zone_pixels(zone: ZoneConfig | None, width: int, height: int) -> np.ndarray | None:
    if zone is None:
        return None
    points = np.asarray(zone.points, dtype=np.float64)
    return points * np.array([width, height]) if zone.normalized else points


def render_snapshot(
    image: np.ndarray,
    detections: Iterable[Detection],
    zone: np.ndarray | None,
    zone_name: str | None,
    quality: int = 85,
) -> bytes:
    """The annotated JPEG: zone first (under the boxes), then the boxes. ``image`` is BGR, already blurred."""
    canvas = draw_zone(image, zone, zone_name) if zone is not None else image
    canvas = draw_detections(canvas, list(detections))
    ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the snapshot")
    return encoded.tobytes()


class SnapshotTaker:
    def __init__(
        self,
        context: WorkerContext,
        evaluator: RuleEvaluator,
        *,
        settings: SnapshotSettings | None = None,
        privacy: PrivacySettings | None = None,
        store: ExampleStore | None = None,
        fetcher: KafkaFrameFetcher | None = None,
        faces: FaceDetectorClient | None = None,
        scene_zones: Iterable[SceneZone] = (),
    ) -> None:
        self.settings = settings or SnapshotSettings()  # read when the stage starts, not at import
        self.privacy = privacy or PrivacySettings()
        self.context = context
        self.retry = context.retry
        self.evaluator = evaluator
        self.rules = {rule.id: rule for rule in evaluator.rules}
        self.scene_zones: dict[str, ZoneConfig] = {zone.name: zone for zone in scene_zones}
        self.stop = threading.Event()
        triton_url = context.settings.triton.url
        if faces is None and self.privacy.blur_snapshots and not triton_url:
            raise ValueError(
                "alert snapshots blur faces with Triton's face_detector, but FRAMESTREAM_TRITON_URL is empty: set it, "
                "or FRAMESTREAM_PRIVACY_BLUR_SNAPSHOTS=false, or FRAMESTREAM_SNAPSHOTS_ENABLED=false"
            )
        triton = context.settings.triton
        self.faces = faces or FaceDetectorClient(
            triton_url, self.settings.face_model, timeout_s=triton.timeout_s, tls_ca_file=triton.tls_ca_file
        )
        self.blurrer = FaceBlurrer(
            self.faces, self.privacy, retry=self.retry, score_threshold=self.settings.face_score_threshold
        )
        self.store = store or open_snapshot_store(self.settings, context.settings.data_dir, self.retry, self.stop)
        self.fetcher = fetcher or KafkaFrameFetcher(
            context.settings.kafka, context.topics.frames, self.settings.fetch_timeout_s
        )
        # The fetcher's consumer and the store's client block: one thread, off the event loop.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshots")

    async def attach(self, frame: FrameDetections, alerts: list[Alert]) -> list[Alert]:
        """``alerts`` (all of one frame) with ``snapshot_url`` set; unchanged where there is no frame to show."""
        if not alerts:
            return alerts
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        jpeg = await loop.run_in_executor(self.executor, partial(self._fetch, frame))
        if jpeg is None:
            return alerts
        boxes = None
        if self.privacy.blurs(frame.camera_id, "snapshot"):
            boxes = await self._faces(frame, jpeg)
            if boxes is None:
                return alerts
        try:
            urls = await loop.run_in_executor(
                self.executor, partial(self._render_and_store, frame, alerts, jpeg, boxes)
            )
        except (StoreError, ValueError, cv2.error) as error:  # permanent: no bucket, access denied, bad key
            log.error("alert without snapshot: storing it failed for good",
                      extra={"event_id": frame.event_id, "error": str(error)})  # fmt: skip
            return alerts
        if urls is None:
            return alerts
        elapsed = time.perf_counter() - started
        self.context.metrics.latency.labels(stage="alert", step="snapshot").observe(elapsed)
        log.info(
            "alert snapshots stored",
            extra={"event_id": frame.event_id, "alerts": len(alerts), "ms": round(elapsed * 1000, 1)},
        )
        return [alert.model_copy(update={"snapshot_url": url}) for alert, url in zip(alerts, urls, strict=True)]

    def _fetch(self, frame: FrameDetections) -> bytes | None:
        """On the executor thread: the frame's JPEG, or None (logged) when it cannot be had."""
        if frame.frame_partition is None or frame.frame_offset is None:
            log.warning("alert without snapshot: the detections do not say where the frame lies",
                        extra={"event_id": frame.event_id})  # fmt: skip
            return None
        image = retry_sync(
            partial(self.fetcher.fetch, frame.frame_partition, frame.frame_offset, frame.event_id),
            policy=self.retry,
            transient=lambda error: isinstance(error, FrameFetchError),
            what="reading an alert's frame",
            log=log,
            stop=self.stop,
        )
        if image is None:
            log.warning(
                "alert without snapshot: the frame is gone from the frames topic (retention)",
                extra={"event_id": frame.event_id, "partition": frame.frame_partition, "offset": frame.frame_offset},
            )
        return image

    async def _faces(self, frame: FrameDetections, jpeg: bytes) -> np.ndarray | None:
        try:
            return await self.blurrer.face_boxes(jpeg)
        except InferenceRejected as error:
            log.warning("alert without snapshot: Triton refused the frame",
                        extra={"event_id": frame.event_id, "reason": str(error)})  # fmt: skip
            return None

    def _render_and_store(
        self, frame: FrameDetections, alerts: list[Alert], jpeg: bytes, faces: np.ndarray | None
    ) -> list[str] | None:
        """On the executor thread: decode once, blur once, then draw and store one JPEG per alert."""
        try:
            image = decode_for_size(jpeg, None).pixels
        except DecodeError as error:
            log.warning("alert without snapshot: the frame does not decode",
                        extra={"event_id": frame.event_id, "reason": str(error)})  # fmt: skip
            return None
        if faces is not None and len(faces):
            image = blur_faces(image, faces)
        height, width = image.shape[:2]
        urls = []
        for alert in alerts:
            rule = self.rules.get(alert.rule_id)
            shown = self._detections_for(alert, rule, frame)
            zone = zone_pixels(self._zone_of(alert, rule), width, height)
            data = render_snapshot(image, shown, zone, alert.zone, self.settings.jpeg_quality)
            uri = self.store.put(snapshot_key(alert), data, "image/jpeg")
            urls.append(self._public(alert, uri))
        return urls

    def _zone_of(self, alert: Alert, rule: Rule | None) -> ZoneConfig | None:
        """A frame rule's own zone; for a track rule's alert, the scene zone it names (if any)."""
        if rule is not None:
            return rule.zone
        return self.scene_zones.get(alert.zone) if alert.zone is not None else None

    def _detections_for(self, alert: Alert, rule: Rule | None, frame: FrameDetections) -> list[Detection]:
        if rule is not None:
            return self.evaluator.matching_detections(rule, frame)
        return [detection for detection in frame.detections if detection.class_name == alert.class_name]

    def _public(self, alert: Alert, uri: str) -> str:
        base = self.settings.public_base_url.rstrip("/")
        return f"{base}/{quote(snapshot_key(alert))}" if base else uri

    def close(self) -> None:
        """After the worker stopped: stop retrying, close the consumer and the store client."""
        self.stop.set()
        self.executor.submit(self.fetcher.close).result()
        self.executor.submit(self.store.close).result()
        self.executor.shutdown(wait=True)


@dataclass(frozen=True)
class SnapshotReader:
    """How ``framestream report`` reads snapshots back: the S3 endpoint (credentials: boto3's chain)."""

    endpoint_url: str | None = None
    client: object | None = None

    @classmethod
    def from_settings(cls, settings: SnapshotSettings | None = None) -> SnapshotReader:
        return cls((settings or SnapshotSettings()).s3_endpoint_url or None)


def read_snapshot(url: str, reader: SnapshotReader) -> bytes | None:
    """The JPEG behind a file:// or s3:// snapshot URL; None when it is gone (pruned) or unreadable."""
    stop = threading.Event()
    stop.set()  # a report does not wait out an outage: one attempt
    try:
        return fetch(url, retry=REPORT_RETRY, stop=stop, endpoint_url=reader.endpoint_url, client=reader.client)
    except Exception as error:  # missing file, StoreError (NoSuchKey), RetryCancelled (S3 away), bad URL
        log.info("snapshot not readable", extra={"url": url, "error": str(error)})
        return None


def thumbnail(jpeg: bytes, width: int = 240) -> bytes:
    """A ``width``-pixel-wide JPEG of a snapshot, for pages that embed many."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a JPEG snapshot")
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


def prune(store: ExampleStore, older_than: timedelta, now: datetime | None = None) -> int:
    """Delete the snapshots stored before ``now - older_than``; returns how many. For S3, a lifecycle
    rule on the prefix does the same without this (README: Alert snapshots and privacy)."""
    cutoff = (now or datetime.now(UTC)) - older_than
    if isinstance(store, FileStore):
        return _prune_folder(store.root, cutoff)
    if isinstance(store, S3Store):
        return _prune_bucket(store, cutoff)
    raise TypeError(f"cannot prune a {type(store).__name__}")


def _prune_folder(root: Path, cutoff: datetime) -> int:
    removed = 0
    for path in root.rglob("*.jpg") if root.is_dir() else ():
        if datetime.fromtimestamp(path.stat().st_mtime, UTC) < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _prune_bucket(store: S3Store, cutoff: datetime) -> int:
    prefix = f"{store.prefix}/" if store.prefix else ""
    stale = []
    for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix):
        stale += [item["Key"] for item in page.get("Contents", []) if item["LastModified"] < cutoff]
    for start in range(0, len(stale), 1000):  # DeleteObjects takes at most 1,000 keys
        chunk = [{"Key": key} for key in stale[start : start + 1000]]
        store.client.delete_objects(Bucket=store.bucket, Delete={"Objects": chunk, "Quiet": True})
    return len(stale)
