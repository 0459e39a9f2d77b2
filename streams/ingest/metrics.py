"""Prometheus metrics of the ingest stage (default registry; served by ``framestream ingest --metrics-port``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
