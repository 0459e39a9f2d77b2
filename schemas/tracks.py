"""Per-frame tracks and scene events, the message on ``vision.tracks.v1`` (track stage).

Every id here is deterministic, so a frame processed again after a restart, from the same
tracker state, carries the same ids and downstream stores deduplicate it:

- a track id is ``<camera_id>:<generation>:<n>``: ``generation`` is the capture time (epoch ms)
  of the first frame the camera's tracker state was started on, ``n`` ByteTrack's counter in that
  state. The state is persisted with the counter, so ids never repeat after a restart; a state
  started anew (a camera restarting its sequence, a lost changelog) has a new generation.
- a crossing id is ``<track_id>:<line>:<direction>:<frame_seq>``;
- a zone visit id is ``<track_id>:<zone>:<frame_seq it entered on>``.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field

from schemas.base import CAMERA_ID_PATTERN, SCHEMA_VERSION, Message, UtcDatetime
from schemas.detections import BoundingBox


class Direction(str, Enum):
    """``in``: from the left of the line's start -> end to its right, as seen on the screen (y down)."""

    IN = "in"
    OUT = "out"


class TrackedObject(Message):
    track_id: str | None = Field(
        description="'<camera_id>:<generation>:<n>'; null for a detection no confirmed track holds "
        "(below the tracker's activation score, or unmatched low-score)"
    )
    detection_id: str = Field(description="the detection in vision.detections.v1 this object is")
    class_name: str
    score: float = Field(ge=0.0, le=1.0)
    box: BoundingBox
    anchor_x: float = Field(description="bottom centre of the box, pixels")
    anchor_y: float
    speed_px_s: float | None = Field(None, ge=0, description="anchor speed since the track's previous frame")
    age_s: float = Field(0.0, ge=0, description="capture-time seconds since the track was first seen (dwell so far)")
    zones: tuple[str, ...] = Field((), description="scene zones the anchor is in")


class LineCrossing(Message):
    crossing_id: str = Field(description="'<track_id>:<line>:<direction>:<frame_seq>'")
    line: str
    direction: Direction
    track_id: str
    class_name: str


class ZoneVisit(Message):
    """A finished visit of a track to a zone: it left the zone, or the track was lost inside it."""

    visit_id: str = Field(description="'<track_id>:<zone>:<entered_seq>'")
    zone: str
    track_id: str
    class_name: str
    entered_seq: int = Field(ge=0)
    entered_at: UtcDatetime
    last_seen_at: UtcDatetime = Field(description="capture time of the last frame the track was seen inside")
    dwell_s: float = Field(ge=0, description="last_seen_at - entered_at")
    ended: Literal["left", "lost"]


class ZoneCount(Message):
    zone: str
    objects: int = Field(ge=0, description="tracked objects whose anchor is in the zone")


class FrameTracks(Message):
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(description="the frame's event id: '<camera_id>:<frame_seq>'")
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    frame_seq: int = Field(ge=0)
    captured_at: UtcDatetime
    tracked_at: UtcDatetime
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    objects: tuple[TrackedObject, ...] = ()
    crossings: tuple[LineCrossing, ...] = ()
    visits: tuple[ZoneVisit, ...] = ()
    occupancy: tuple[ZoneCount, ...] = Field((), description="every configured zone of this camera, 0 included")
