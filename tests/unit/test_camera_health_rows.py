"""CameraHealth messages to camera_health rows: every column, ids, and values the table cannot hold."""

from __future__ import annotations

import pytest

from schemas.camera_health import CameraState
from streams.sinks.rows import CAMERA_HEALTH, RowConversionError, message_id, rows_for
from tests.factories import BASE_TIME, make_camera_health


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (CameraState.ONLINE, {"state": "online", "frames": 98, "outage_s": None, "frame_age_ms_p50": 12.0}),
        (CameraState.OFFLINE, {"state": "offline", "frames": 0, "outage_s": 5.0, "frame_age_ms_p50": None}),
    ],
)
def test_a_report_is_one_row_of_the_camera_health_table(state: CameraState, expected: dict) -> None:
    report = make_camera_health("gate", 3, state=state)
    rows = rows_for(report)
    assert rows.message_id == message_id(report) == "gate:run-1:3"
    [part] = rows.parts
    assert part.table is CAMERA_HEALTH and part.table.columns == part.rows[0]._fields
    row = part.rows[0]._asdict()
    assert row["trigger"] == "periodic" and row["reported_at"] == BASE_TIME.replace(second=30)
    assert {key: row[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"frames": 2**32}, "camera_health.frames"),
        ({"reconnects_total": 2**64}, "camera_health.reconnects_total"),
    ],
)
def test_values_the_table_cannot_hold_are_refused(overrides: dict, problem: str) -> None:
    with pytest.raises(RowConversionError, match=problem):
        rows_for(make_camera_health(**overrides))
