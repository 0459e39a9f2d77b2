"""Scene analytics on tracked objects: line crossings with direction, zone occupancy and visits
(dwell), anchor speed. Pure: the per-track state goes in and comes out (``TrackScene``), no clock.

    lines = [CountingLine("door", (0.0, 0.5), (1.0, 0.5), normalized=True)]
    analyzer = SceneAnalyzer(lines, zones=[])
    step = analyzer.observe(frame, observations, scenes, alive)  # step.crossings, step.scenes

A crossing is the anchor's move from its last sighting clearly on one side of the line to a
sighting clearly on the other, through the segment. "Clearly": farther from the line than a
band of ``band`` x the frame's diagonal (default 1 %, 8 px at 640x480). A sighting inside the
band keeps the side it came from, so a box whose bottom jitters by a few pixels around the
line (detector noise on a slow walker) counts once, not at every wobble; touching the line
and going back is no crossing; a crossing is counted on the frame the other side is reached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from processors.zones import PolygonZone, anchor_points
from schemas.detections import BoundingBox
from schemas.rules import Anchor, LineConfig, SceneZone
from schemas.tracks import Direction, LineCrossing, TrackedObject, ZoneCount, ZoneVisit


class CountingLine:
    """A directed segment in pixels or fractions of the frame; ``in`` = left of start -> end to its right."""

    def __init__(
        self,
        name: str,
        start: Sequence[float],
        end: Sequence[float],
        *,
        normalized: bool,
        anchor: Anchor = Anchor.BOTTOM_CENTER,
        band: float = 0.01,
    ) -> None:
        if not 0.0 <= band < 0.5:
            raise ValueError(f"line {name!r}: band must lie in [0, 0.5), got {band}")
        if len(start) != 2 or len(end) != 2:
            raise ValueError(f"line {name!r}: start and end must be [x, y] pairs")
        if not all(math.isfinite(v) for v in (*start, *end)):
            raise ValueError(f"line {name!r}: coordinates must be finite")
        if tuple(start) == tuple(end):
            raise ValueError(f"line {name!r}: start and end must differ")
        if normalized and not all(0.0 <= v <= 1.0 for v in (*start, *end)):
            raise ValueError(f"line {name!r}: normalized coordinates must lie in [0, 1]")
        self.name = name
        self.start = (float(start[0]), float(start[1]))
        self.end = (float(end[0]), float(end[1]))
        self.normalized = normalized
        self.anchor = anchor
        self.band = band

    @classmethod
    def from_config(cls, config: LineConfig, band: float = 0.01) -> CountingLine:
        return cls(config.name, config.start, config.end, normalized=config.normalized, anchor=config.anchor, band=band)

    def pixels(self, width: int, height: int) -> tuple[tuple[float, float], tuple[float, float]]:
        if width < 1 or height < 1:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        if not self.normalized:
            return self.start, self.end
        return (self.start[0] * width, self.start[1] * height), (self.end[0] * width, self.end[1] * height)

    def side(self, point: tuple[float, float], width: int, height: int) -> int:
        """+1 right of start -> end on the screen, -1 left, 0 within the band around the (infinite) line."""
        (sx, sy), (ex, ey) = self.pixels(width, height)
        value = (ex - sx) * (point[1] - sy) - (ey - sy) * (point[0] - sx)
        distance = abs(value) / math.hypot(ex - sx, ey - sy)
        if distance <= self.band * math.hypot(width, height):
            return 0
        return 1 if value > 0 else -1

    def crossing(
        self, previous: tuple[float, float], current: tuple[float, float], width: int, height: int
    ) -> Direction | None:
        """The direction of a move from ``previous`` (off the band) to ``current`` through the segment."""
        before, after = self.side(previous, width, height), self.side(current, width, height)
        if before == 0:
            raise ValueError("previous point must lie off the line's band (keep the last point off it)")
        if after == 0 or after == before:
            return None
        (sx, sy), (ex, ey) = self.pixels(width, height)
        dx, dy = current[0] - previous[0], current[1] - previous[1]
        ux, uy = ex - sx, ey - sy
        denominator = ux * dy - uy * dx
        u = ((previous[0] - sx) * dy - (previous[1] - sy) * dx) / denominator
        if not 0.0 <= u <= 1.0:
            return None  # crossed the line's extension, beside the segment
        return Direction.IN if before < 0 else Direction.OUT


class ZoneStay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entered_seq: int
    entered_at: float  # epoch seconds of capture
    last_inside_at: float


class TrackScene(BaseModel):
    """What the scene remembers of one track between frames (JSON in the track stage's table)."""

    model_config = ConfigDict(extra="forbid")

    first_seq: int
    first_at: float
    class_name: str
    last_x: float
    last_y: float
    last_at: float
    sides: dict[str, tuple[int, float, float]] = {}  # line -> last side off the line, and that point
    zones: dict[str, ZoneStay] = {}
    fired: tuple[str, ...] = ()  # track rules already alerted for this track


@dataclass(frozen=True)
class Observation:
    """One detection of the frame and the track that holds it (None: untracked)."""

    track_id: str | None
    detection_id: str
    class_name: str
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class FrameInfo:
    camera_id: str
    frame_seq: int
    captured_at: datetime
    width: int
    height: int


@dataclass
class SceneStep:
    objects: list[TrackedObject] = field(default_factory=list)
    crossings: list[LineCrossing] = field(default_factory=list)
    visits: list[ZoneVisit] = field(default_factory=list)
    occupancy: list[ZoneCount] = field(default_factory=list)
    scenes: dict[str, TrackScene] = field(default_factory=dict)


class SceneAnalyzer:
    """Lines and zones of one rules file, applied to one camera's frame at a time."""

    def __init__(self, lines: Sequence[LineConfig], zones: Sequence[SceneZone]) -> None:
        self.lines = [(config, CountingLine.from_config(config)) for config in lines]
        self.zones = [
            (config, PolygonZone(config.points, normalized=config.normalized, anchor=config.anchor)) for config in zones
        ]

    def observe(
        self, frame: FrameInfo, observations: Sequence[Observation], scenes: dict[str, TrackScene], alive: set[str]
    ) -> SceneStep:
        """The frame's objects and events, and the new per-track state (``scenes`` is not modified).

        ``alive``: the tracks the tracker still holds; the others are dropped, closing their visits."""
        now = frame.captured_at.timestamp()
        step = SceneStep(scenes={key: value.model_copy(deep=True) for key, value in scenes.items() if key in alive})
        lines = [line for config, line in self.lines if config.applies_to(frame.camera_id)]
        zones = [(config.name, zone) for config, zone in self.zones if config.applies_to(frame.camera_id)]
        boxes = np.array([o.box for o in observations], dtype=np.float64).reshape(-1, 4)
        inside = {name: zone.contains(boxes, frame.width, frame.height) for name, zone in zones}
        anchors = anchor_points(boxes, Anchor.BOTTOM_CENTER)
        occupancy = dict.fromkeys((name for name, _ in zones), 0)
        for index, seen in enumerate(observations):
            in_zones = tuple(name for name, _ in zones if inside[name][index])
            point = (float(anchors[index, 0]), float(anchors[index, 1]))
            speed, age = None, 0.0
            if seen.track_id is not None:
                for name in in_zones:
                    occupancy[name] += 1
                scene = step.scenes.get(seen.track_id)
                if scene is None:
                    scene = TrackScene(
                        first_seq=frame.frame_seq, first_at=now, class_name=seen.class_name,
                        last_x=point[0], last_y=point[1], last_at=now,
                    )  # fmt: skip
                else:
                    speed = anchor_speed(scene, point, now)
                    step.crossings += self._crossings(frame, seen, scene, lines, boxes[index])
                age = now - scene.first_at
                step.visits += self._visits(frame, seen.track_id, scene, in_zones, now)
                scene.class_name, scene.last_x, scene.last_y, scene.last_at = seen.class_name, *point, now
                self._remember_sides(frame, scene, lines, boxes[index])
                step.scenes[seen.track_id] = scene
            step.objects.append(
                TrackedObject(
                    track_id=seen.track_id, detection_id=seen.detection_id, class_name=seen.class_name,
                    score=seen.score, box=_box(seen.box), anchor_x=point[0], anchor_y=point[1],
                    speed_px_s=speed, age_s=age, zones=in_zones,
                )
            )  # fmt: skip
        for track_id, scene in scenes.items():
            if track_id not in alive:
                step.visits += [_visit(track_id, scene, zone, stay, "lost") for zone, stay in scene.zones.items()]
        step.occupancy = [ZoneCount(zone=name, objects=count) for name, count in occupancy.items()]
        return step

    def _crossings(
        self,
        frame: FrameInfo,
        seen: Observation,
        scene: TrackScene,
        lines: list[CountingLine],
        box: npt.NDArray[np.float64],
    ) -> list[LineCrossing]:
        found = []
        for line in lines:
            remembered = scene.sides.get(line.name)
            if remembered is None:
                continue
            point = tuple(anchor_points(box, line.anchor)[0])
            direction = line.crossing(remembered[1:], point, frame.width, frame.height)
            if direction is not None:
                track_id = seen.track_id or ""
                found.append(
                    LineCrossing(
                        crossing_id=f"{track_id}:{line.name}:{direction.value}:{frame.frame_seq}",
                        line=line.name, direction=direction, track_id=track_id, class_name=seen.class_name,
                    )
                )  # fmt: skip
        return found

    def _remember_sides(
        self, frame: FrameInfo, scene: TrackScene, lines: list[CountingLine], box: npt.NDArray[np.float64]
    ) -> None:
        for line in lines:
            point = anchor_points(box, line.anchor)[0]
            side = line.side((float(point[0]), float(point[1])), frame.width, frame.height)
            if side != 0:
                scene.sides[line.name] = (side, float(point[0]), float(point[1]))

    @staticmethod
    def _visits(
        frame: FrameInfo, track_id: str, scene: TrackScene, in_zones: tuple[str, ...], now: float
    ) -> list[ZoneVisit]:
        ended = []
        for zone, stay in list(scene.zones.items()):
            if zone not in in_zones:
                ended.append(_visit(track_id, scene, zone, stay, "left"))
                del scene.zones[zone]
        for zone in in_zones:
            stay = scene.zones.get(zone)
            if stay is None:
                scene.zones[zone] = ZoneStay(entered_seq=frame.frame_seq, entered_at=now, last_inside_at=now)
            else:
                stay.last_inside_at = now
        return ended


def anchor_speed(scene: TrackScene, point: tuple[float, float], now: float) -> float | None:
    """Pixels per second of capture time since the track's previous sighting; None without elapsed time."""
    elapsed = now - scene.last_at
    if elapsed <= 0:
        return None
    return math.hypot(point[0] - scene.last_x, point[1] - scene.last_y) / elapsed


def _visit(track_id: str, scene: TrackScene, zone: str, stay: ZoneStay, ended: str) -> ZoneVisit:
    return ZoneVisit(
        visit_id=f"{track_id}:{zone}:{stay.entered_seq}",
        zone=zone,
        track_id=track_id,
        class_name=scene.class_name,
        entered_seq=stay.entered_seq,
        entered_at=datetime.fromtimestamp(stay.entered_at, UTC),
        last_seen_at=datetime.fromtimestamp(stay.last_inside_at, UTC),
        dwell_s=max(0.0, stay.last_inside_at - stay.entered_at),
        ended=ended,
    )


def _box(xyxy: tuple[float, float, float, float]) -> BoundingBox:
    return BoundingBox(x1=xyxy[0], y1=xyxy[1], x2=xyxy[2], y2=xyxy[3])
