"""``FrameTracks`` to ClickHouse rows (tables of migration 0005): pure, no I/O.

Kept beside ``rows.py``, which declares the tables and routes a ``FrameTracks`` here. Every row
id is the message's deterministic id (track point, crossing, visit, zone count of a frame), so
a frame tracked again after a restart writes rows the sink skips and the tables collapse.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from schemas.tracks import FrameTracks


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
        TrackPointRow(
            point_id=f"{obj.track_id}:{message.frame_seq}",
            track_id=obj.track_id,
            camera_id=message.camera_id,
            frame_seq=message.frame_seq,
            event_id=message.event_id,
            captured_at=message.captured_at,
            class_name=obj.class_name,
            score=obj.score,
            x1=obj.box.x1,
            y1=obj.box.y1,
            x2=obj.box.x2,
            y2=obj.box.y2,
            anchor_x=obj.anchor_x,
            anchor_y=obj.anchor_y,
            speed_px_s=obj.speed_px_s,
            age_s=obj.age_s,
            zones=list(obj.zones),
        )
        for obj in message.objects
        if obj.track_id is not None
    )


def crossing_rows(message: FrameTracks) -> tuple[CrossingRow, ...]:
    return tuple(
        CrossingRow(
            crossing_id=crossing.crossing_id,
            camera_id=message.camera_id,
            line=crossing.line,
            direction=crossing.direction.value,
            track_id=crossing.track_id,
            class_name=crossing.class_name,
            frame_seq=message.frame_seq,
            event_id=message.event_id,
            captured_at=message.captured_at,
        )
        for crossing in message.crossings
    )


def zone_visit_rows(message: FrameTracks) -> tuple[ZoneVisitRow, ...]:
    return tuple(
        ZoneVisitRow(
            visit_id=visit.visit_id,
            camera_id=message.camera_id,
            zone=visit.zone,
            track_id=visit.track_id,
            class_name=visit.class_name,
            entered_seq=visit.entered_seq,
            entered_at=visit.entered_at,
            last_seen_at=visit.last_seen_at,
            dwell_s=visit.dwell_s,
            ended=visit.ended,
            frame_seq=message.frame_seq,
            captured_at=message.captured_at,
        )
        for visit in message.visits
    )


def occupancy_rows(message: FrameTracks) -> tuple[OccupancyRow, ...]:
    return tuple(
        OccupancyRow(
            occupancy_id=f"{message.event_id}:{count.zone}",
            camera_id=message.camera_id,
            zone=count.zone,
            frame_seq=message.frame_seq,
            event_id=message.event_id,
            captured_at=message.captured_at,
            objects=count.objects,
        )
        for count in message.occupancy
    )
