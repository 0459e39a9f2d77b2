"""``FrameTracks`` to ClickHouse rows (tables of migration 0005): pure, no I/O.

Kept beside ``rows.py``, which declares the tables and routes a ``FrameTracks`` here. Every row
id is the message's deterministic id (track point, crossing, visit, zone count of a frame), so
a frame tracked again after a restart writes rows the sink skips and the tables collapse.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from schemas.tracks import FrameTracks
from streams.sinks.shared_rows import copy_row


class TrackPointRow(NamedTuple):
    point_id: str
    track_id: str
    camera_id: str
    frame_seq: int
    event_id: str
    captured_at: datetime
    class_name: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float
    anchor_x: float
    anchor_y: float
    speed_px_s: float | None
    age_s: float
    zones: list[str]


class CrossingRow(NamedTuple):
    crossing_id: str
    camera_id: str
    line: str
    direction: str
    track_id: str
    class_name: str
    frame_seq: int
    event_id: str
    captured_at: datetime


class ZoneVisitRow(NamedTuple):
    visit_id: str
    camera_id: str
    zone: str
    track_id: str
    class_name: str
    entered_seq: int
    entered_at: datetime
    last_seen_at: datetime
    dwell_s: float
    ended: str
    frame_seq: int
    captured_at: datetime


class OccupancyRow(NamedTuple):
    occupancy_id: str
    camera_id: str
    zone: str
    frame_seq: int
    event_id: str
    captured_at: datetime
    objects: int


def tracks_message_id(message: FrameTracks) -> str:
    """Not the bare event id: the frame's detections message is known by that one."""
    return f"tracks:{message.event_id}"


def track_point_rows(message: FrameTracks) -> tuple[TrackPointRow, ...]:
    """One row per tracked object; untracked detections stay in ``detections`` only."""
    return tuple(
        copy_row(
            TrackPointRow, obj, obj.box, message, point_id=f"{obj.track_id}:{message.frame_seq}", zones=list(obj.zones)
        )
        for obj in message.objects
        if obj.track_id is not None
    )


def crossing_rows(message: FrameTracks) -> tuple[CrossingRow, ...]:
    return tuple(
        copy_row(CrossingRow, crossing, message, direction=crossing.direction.value) for crossing in message.crossings
    )


def zone_visit_rows(message: FrameTracks) -> tuple[ZoneVisitRow, ...]:
    return tuple(copy_row(ZoneVisitRow, visit, message) for visit in message.visits)


def occupancy_rows(message: FrameTracks) -> tuple[OccupancyRow, ...]:
    # ``objects`` is named: the message has a field of that name too (its tracked objects).
    return tuple(
        copy_row(OccupancyRow, count, message, occupancy_id=f"{message.event_id}:{count.zone}", objects=count.objects)
        for count in message.occupancy
    )
