"""``CameraHealth`` to ClickHouse rows (table ``camera_health``, migration 0006): pure, no I/O.

Kept beside ``rows.py``, which declares the table and routes these messages here. The row id is
the report's deterministic ``health_id``, so a replayed report is stored once.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from schemas.camera_health import CameraHealth


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
    return CameraHealthRow(
        health_id=report.health_id,
        camera_id=report.camera_id,
        run_id=report.run_id,
        report_seq=report.report_seq,
        reported_at=report.reported_at,
        trigger=report.trigger.value,
        state=report.state.value,
        target_fps=report.target_fps,
        achieved_fps=report.achieved_fps,
        window_s=report.window_s,
        frames=report.frames,
        decode_errors=report.decode_errors,
        reconnects=report.reconnects,
        frames_total=report.frames_total,
        decode_errors_total=report.decode_errors_total,
        reconnects_total=report.reconnects_total,
        frame_age_ms_p50=report.frame_age_ms_p50,
        frame_age_ms_max=report.frame_age_ms_max,
        last_frame_at=report.last_frame_at,
        offline_since=report.offline_since,
        outage_s=report.outage_s,
    )
