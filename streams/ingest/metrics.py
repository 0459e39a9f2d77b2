"""Prometheus metrics of the ingest stage (default registry; served by ``framestream ingest --metrics-port``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FRAMES_PRODUCED = Counter(
    "framestream_ingest_frames_produced",
    "Frames acknowledged by the broker on the frames topic",
    ["camera"],
)
BYTES_PRODUCED = Counter(
    "framestream_ingest_bytes_produced",
    "JPEG bytes acknowledged by the broker on the frames topic",
    ["camera"],
)
FRAMES_SAMPLED_OUT = Counter(
    "framestream_ingest_frames_sampled_out",
    "Source frames skipped to hold the camera's target fps",
    ["camera"],
)
ENCODE_SECONDS = Histogram(
    "framestream_ingest_encode_seconds",
    "Time to resize, JPEG-encode and compute image statistics of one frame",
    ["camera"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
DEAD_LETTERS = Counter(
    "framestream_ingest_dead_letters",
    "Inputs sent to the dead-letter topic by ingest (e.g. undecodable image files)",
    ["camera"],
)
DELIVERY_RETRIES = Counter(
    "framestream_ingest_delivery_retries",
    "Records produced again after a failed delivery report",
    ["camera"],
)
SOURCE_RECONNECTS = Counter(
    "framestream_ingest_source_reconnects",
    "Reconnect attempts of live camera streams (URL, USB)",
    ["camera"],
)

# Camera health (see processors/camera_health.py); also published as events on vision.camera-health.v1.
CAMERA_ONLINE = Gauge(
    "framestream_ingest_camera_online", "1 while the camera delivers frames, 0 while offline", ["camera"]
)
CAMERA_TARGET_FPS = Gauge("framestream_ingest_camera_target_fps", "The camera's configured target fps", ["camera"])
CAMERA_ACHIEVED_FPS = Gauge(
    "framestream_ingest_camera_achieved_fps", "Frames produced per second over the health window", ["camera"]
)
DECODE_ERRORS = Counter(
    "framestream_ingest_decode_errors",
    "Frames of a stream, or image files, that could not be decoded",
    ["camera"],
)
FRAME_AGE_SECONDS = Histogram(
    "framestream_ingest_frame_age_seconds",
    "Capture time to produce time of each frame (decode wait, encoding, producer queue)",
    ["camera"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CAMERA_OFFLINE_SECONDS = Gauge(
    "framestream_ingest_camera_offline_seconds", "How long the camera has been offline so far (0 online)", ["camera"]
)
CAMERA_OUTAGE_SECONDS = Histogram(
    "framestream_ingest_camera_outage_seconds",
    "Length of each ended outage: last frame before it to first frame after",
    ["camera"],
    buckets=(1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
CAMERA_LAST_OUTAGE_SECONDS = Gauge(
    "framestream_ingest_camera_last_outage_seconds", "Length of the camera's most recent ended outage", ["camera"]
)
