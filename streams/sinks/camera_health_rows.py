"""``CameraHealth`` to ClickHouse rows (table ``camera_health``, migration 0006): pure, no I/O.

Kept beside ``rows.py``, which declares the table and routes these messages here. The row id is
the report's deterministic ``health_id``, so a replayed report is stored once.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from schemas.camera_health import CameraHealth
from streams.sinks.shared_rows import copy_row


class CameraHealthRow(NamedTuple):
    health_id: str
    camera_id: str
    run_id: str
    report_seq: int
    reported_at: datetime
    trigger: str
    state: str
    target_fps: float
    achieved_fps: float
    window_s: float
    frames: int
    decode_errors: int
    reconnects: int
    frames_total: int
    decode_errors_total: int
    reconnects_total: int
    frame_age_ms_p50: float | None
    frame_age_ms_max: float | None
    last_frame_at: datetime | None
    offline_since: datetime | None
    outage_s: float | None


def camera_health_row(report: CameraHealth) -> CameraHealthRow:
    # Every other column is the report's field of the same name; enums are stored as their text.
    return copy_row(CameraHealthRow, report, trigger=report.trigger.value, state=report.state.value)
