"""FrameTracks -> ClickHouse rows (streams/sinks/track_rows.py through rows_for): one row per
tracked object, crossing, finished visit and zone count, with deterministic ids."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.detections import BoundingBox
from schemas.tracks import Direction, FrameTracks, LineCrossing, TrackedObject, ZoneCount, ZoneVisit
from streams.sinks.rows import LINE_CROSSINGS, TRACK_POINTS, ZONE_OCCUPANCY, ZONE_VISITS, RowConversionError, rows_for
from tests.factories import BASE_TIME, make_frame_detections

TRACK = "cam-1:1735732800000:3"


def frame_tracks(frame_seq: int = 7, **changes: object) -> FrameTracks:
    box = BoundingBox(x1=10, y1=20, x2=50, y2=120)
    fields = {
        "event_id": f"cam-1:{frame_seq}",
        "camera_id": "cam-1",
        "frame_seq": frame_seq,
        "captured_at": BASE_TIME,
        "tracked_at": BASE_TIME + timedelta(milliseconds=30),
        "width": 640,
        "height": 480,
        "objects": (
            TrackedObject(track_id=TRACK, detection_id="cam-1:7:0", class_name="person", score=0.8, box=box,
                          anchor_x=30, anchor_y=120, speed_px_s=42.0, age_s=1.5, zones=("queue",)),
            TrackedObject(track_id=None, detection_id="cam-1:7:1", class_name="dog", score=0.4, box=box,
                          anchor_x=30, anchor_y=120),
        ),
        "crossings": (LineCrossing(crossing_id=f"{TRACK}:door:in:7", line="door", direction=Direction.IN,
                                   track_id=TRACK, class_name="person"),),
        "visits": (ZoneVisit(visit_id=f"{TRACK}:queue:2", zone="queue", track_id=TRACK, class_name="person",
                             entered_seq=2, entered_at=BASE_TIME - timedelta(seconds=1), last_seen_at=BASE_TIME,
                             dwell_s=1.0, ended="left"),),
        "occupancy": (ZoneCount(zone="queue", objects=1), ZoneCount(zone="door-area", objects=0)),
    }  # fmt: skip
    return FrameTracks(**(fields | changes))


def test_rows_of_every_table() -> None:
    converted = rows_for(frame_tracks())
    assert converted.message_id == "tracks:cam-1:7"
    parts = {part.table.name: part.rows for part in converted.parts}
    assert set(parts) == {t.name for t in (TRACK_POINTS, LINE_CROSSINGS, ZONE_VISITS, ZONE_OCCUPANCY)}
    (point,) = parts["track_points"]  # the untracked dog is in `detections` only
    assert (point.point_id, point.track_id, point.speed_px_s, point.zones) == (f"{TRACK}:7", TRACK, 42.0, ["queue"])
    (crossing,) = parts["line_crossings"]
    assert (crossing.crossing_id, crossing.direction, crossing.event_id) == (f"{TRACK}:door:in:7", "in", "cam-1:7")
    (visit,) = parts["zone_visits"]
    assert (visit.visit_id, visit.dwell_s, visit.ended, visit.frame_seq) == (f"{TRACK}:queue:2", 1.0, "left", 7)
    assert [(r.occupancy_id, r.objects) for r in parts["zone_occupancy"]] == [
        ("cam-1:7:queue", 1),
        ("cam-1:7:door-area", 0),
    ]


def test_message_id_differs_from_the_frames_detections() -> None:
    assert rows_for(frame_tracks()).message_id != rows_for(make_frame_detections("cam-1", 7)).message_id


def test_a_frame_with_nothing_tracked_writes_only_its_zone_counts() -> None:
    converted = rows_for(frame_tracks(objects=(), crossings=(), visits=()))
    assert {part.table.name: len(part.rows) for part in converted.parts} == {
        "track_points": 0,
        "line_crossings": 0,
        "zone_visits": 0,
        "zone_occupancy": 2,
    }


def test_out_of_range_values_are_refused_with_the_message_id() -> None:
    with pytest.raises(RowConversionError, match="tracks:cam-1:7: zone_occupancy.objects"):
        rows_for(frame_tracks(occupancy=(ZoneCount(zone="q", objects=2**33),)))
