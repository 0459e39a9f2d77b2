"""The demo's closing summary, read back from ClickHouse, and its annotated frames."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from framestream.demo.progress import TopicFollower
from framestream.settings import Settings
from processors.annotate import draw_detections
from streams.faces import FaceBlurrer, FaceDetectorClient, PrivacySettings
from streams.inference import DetectorClientSettings
from streams.retry import RetryPolicy
from streams.sinks.clickhouse_db import connect


@dataclass(frozen=True)
class Summary:
    frames: int
    cameras: int
    detections_by_class: list[tuple[str, int]]
    alerts_by_rule: list[tuple[str, str, int]]
    dead_letters_by_stage: list[tuple[str, str, int]]
    latency_ms: dict[str, float]
    classified_by_label: tuple[tuple[str, int], ...] = ()  # cameras with a classifier


def query_summary(settings: Settings) -> Summary:
    """Everything counted with FINAL, so a replayed duplicate would not be counted twice."""
    client = connect(settings.clickhouse, settings.data_dir)
    db = settings.clickhouse.database
    try:
        frames, cameras = client.query(f"SELECT count(), uniqExact(camera_id) FROM {db}.frames FINAL").result_rows[0]
        by_class = client.query(
            f"SELECT class_name, count() AS n FROM {db}.detections FINAL GROUP BY class_name ORDER BY n DESC"
        ).result_rows
        by_rule = client.query(
            f"SELECT rule_id, toString(severity), count() AS n FROM {db}.alerts FINAL "
            "GROUP BY rule_id, severity ORDER BY n DESC"
        ).result_rows
        dead = client.query(
            f"SELECT stage, error_type, count() AS n FROM {db}.dead_letters FINAL GROUP BY stage, error_type"
        ).result_rows
        by_label = client.query(
            f"SELECT label, count() AS n FROM {db}.classifications FINAL GROUP BY label ORDER BY n DESC"
        ).result_rows
        latency = client.query(
            "SELECT quantiles(0.5, 0.95)(detect_latency_ms), quantiles(0.5, 0.95)(store_latency_ms), "
            f"quantiles(0.5, 0.95)(assumeNotNull(triton_ms)) FROM {db}.frames FINAL"
        ).result_rows[0]
    finally:
        client.close()
    names = ["detect_p50", "detect_p95", "store_p50", "store_p95", "triton_p50", "triton_p95"]
    values = [value for pair in latency for value in pair]
    return Summary(
        int(frames),
        int(cameras),
        [(str(c), int(n)) for c, n in by_class],
        [(str(r), str(s), int(n)) for r, s, n in by_rule],
        [(str(s), str(e), int(n)) for s, e, n in dead],
        dict(zip(names, map(float, values), strict=False)),
        tuple((str(label), int(n)) for label, n in by_label),
    )


def write_annotated_frames(
    follower: TopicFollower, out: Path, limit: int, blurrer: FaceBlurrer | None = None
) -> list[Path]:
    """The frames kept by the follower with the most detections, boxes drawn; faces blurred first
    for the cameras ``FRAMESTREAM_PRIVACY_*`` names (``blurrer``: Triton's face detector)."""
    out.mkdir(parents=True, exist_ok=True)
    ranked = sorted(follower.detections.values(), key=lambda frame: len(frame.detections), reverse=True)
    written = []
    for frame in ranked[:limit]:
        jpeg = follower.jpegs[frame.event_id]
        if blurrer is not None:
            jpeg = asyncio.run(blurrer.blur_jpeg(frame.camera_id, jpeg, "annotated"))
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            continue
        path = out / f"{frame.camera_id}_{frame.frame_seq:06d}.jpg"
        cv2.imwrite(str(path), draw_detections(image, frame.detections))
        written.append(path)
    return written


def annotated_frames_blurrer(
    triton: DetectorClientSettings, privacy: PrivacySettings | None = None
) -> FaceBlurrer | None:
    """A blurrer when some camera's annotated frames are to be blurred; None otherwise."""
    privacy = privacy or PrivacySettings()
    if not (privacy.blur_everything or privacy.blur_cameras):
        return None
    faces = FaceDetectorClient(triton.url, timeout_s=triton.timeout_s, tls_ca_file=triton.tls_ca_file)
    return FaceBlurrer(faces, privacy, retry=RetryPolicy(initial_s=0.2, max_s=5.0))


def print_summary(summary: Summary, annotated: list[Path], wall_s: float) -> None:
    print("\nsummary (read back from ClickHouse)")
    print(f"  frames processed     {summary.frames} from {summary.cameras} cameras in {wall_s:.1f} s")
    total = sum(n for _, n in summary.detections_by_class)
    print(f"  detections           {total}: " + ", ".join(f"{c} {n}" for c, n in summary.detections_by_class))
    if summary.classified_by_label:
        classified = sum(n for _, n in summary.classified_by_label)
        print(f"  classified frames    {classified}: " + ", ".join(f"{c} {n}" for c, n in summary.classified_by_label))
    alerts = sum(n for *_, n in summary.alerts_by_rule)
    print(f"  alerts               {alerts}: " + ", ".join(f"{r} ({s}) {n}" for r, s, n in summary.alerts_by_rule))
    dead = sum(n for *_, n in summary.dead_letters_by_stage)
    print(f"  dead letters         {dead}" + ("".join(f", {s}/{e} {n}" for s, e, n in summary.dead_letters_by_stage)))
    lat = summary.latency_ms
    print(f"  latency capture->detections  p50 {lat['detect_p50']:.0f} ms  p95 {lat['detect_p95']:.0f} ms")
    print(f"  latency capture->ClickHouse  p50 {lat['store_p50']:.0f} ms  p95 {lat['store_p95']:.0f} ms")
    print(f"  triton request               p50 {lat['triton_p50']:.0f} ms  p95 {lat['triton_p95']:.0f} ms")
    if annotated:
        print(f"  annotated frames     {len(annotated)} in {annotated[0].parent}")
