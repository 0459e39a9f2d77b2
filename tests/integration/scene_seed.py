"""Track-stage messages for the dashboard tests: four cameras, a frame every 4 minutes for 2h40
(like the other seeded messages). Each camera sees a new track every 5 frames (20 minutes); the
track crosses line 'door' on its 3rd frame, 'in' for even tracks and 'out' for odd ones, and
finishes a visit of zone 'queue' on its 5th frame. Speeds and occupancy vary with the frame."""

from __future__ import annotations

from datetime import timedelta

from schemas.detections import BoundingBox
from schemas.tracks import Direction, FrameTracks, LineCrossing, TrackedObject, ZoneCount, ZoneVisit
from tests.factories import BASE_TIME

CAMERAS = ("cam-0", "cam-1", "cam-2", "cam-3")
FRAMES = 40
CLASSES = ("person", "dog")


def track_messages() -> list[FrameTracks]:
    return [frame(camera_index, camera, seq) for camera_index, camera in enumerate(CAMERAS) for seq in range(FRAMES)]


def frame(camera_index: int, camera: str, seq: int) -> FrameTracks:
    captured = BASE_TIME + timedelta(minutes=4 * seq, seconds=camera_index)
    number, step = divmod(seq, 5)
    track_id = f"{camera}:1735732800000:{number}"
    class_name = CLASSES[number % 2]
    box = BoundingBox(x1=100 + 10 * step, y1=100, x2=160 + 10 * step, y2=250)
    obj = TrackedObject(
        track_id=track_id, detection_id=f"{camera}:{seq}:0", class_name=class_name, score=0.8, box=box,
        anchor_x=130 + 10 * step, anchor_y=250, speed_px_s=None if step == 0 else 2.0 + seq % 7, age_s=240.0 * step,
        zones=("queue",) if step < 4 else (),
    )  # fmt: skip
    crossings = ()
    if step == 2:
        direction = Direction.IN if number % 2 == 0 else Direction.OUT
        crossings = (
            LineCrossing(crossing_id=f"{track_id}:door:{direction.value}:{seq}", line="door", direction=direction,
                         track_id=track_id, class_name=class_name),
        )  # fmt: skip
    visits = ()
    if step == 4:
        entered = captured - timedelta(minutes=16)
        visits = (
            ZoneVisit(visit_id=f"{track_id}:queue:{seq - 4}", zone="queue", track_id=track_id, class_name=class_name,
                      entered_seq=seq - 4, entered_at=entered, last_seen_at=captured - timedelta(minutes=4),
                      dwell_s=720.0, ended="left"),
        )  # fmt: skip
    return FrameTracks(
        event_id=f"{camera}:{seq}",
        camera_id=camera,
        frame_seq=seq,
        captured_at=captured,
        tracked_at=captured + timedelta(milliseconds=50),
        width=640,
        height=480,
        objects=(obj,),
        crossings=crossings,
        visits=visits,
        occupancy=(ZoneCount(zone="queue", objects=1 if step < 4 else 0), ZoneCount(zone="door-area", objects=seq % 3)),
    )


def expected_crossings() -> int:
    return sum(len(message.crossings) for message in track_messages())
