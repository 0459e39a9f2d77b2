"""Alert rules: the YAML model, and a pure evaluator with an event-time cooldown.

The evaluator reads no clock and keeps no state of its own: the caller passes
the camera's cooldown state (rule id -> event time of the last alert, in epoch
seconds) and stores the state it gets back, e.g. in a Faust table. Because
time is the frame's ``captured_at`` and alert ids are deterministic, replaying
frames after a crash gives the same decisions and the same ids.
"""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import Annotated, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from processors.coco import COCO_CLASSES
from processors.zones import Anchor, PolygonZone, check_polygon
from schemas.alerts import Alert, Severity
from schemas.base import CAMERA_ID_PATTERN
from schemas.detections import Detection, FrameDetections

# Rule ids become part of alert ids ('<rule_id>:<camera_id>:<frame_seq>'), so no ':' here.
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

CameraId = Annotated[str, StringConstraints(pattern=CAMERA_ID_PATTERN)]
# Checked by Rule._known_classes (which suggests the closest name); the enum lets editors complete names.
ClassName = Annotated[str, WithJsonSchema({"type": "string", "enum": list(COCO_CLASSES)})]

Polygon = tuple[tuple[float, float], ...]

CooldownState = dict[str, float]
"""Per camera: rule id -> ``captured_at`` (epoch seconds) of the frame that last raised it."""


class ZoneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=SLUG_PATTERN, title="Zone name", description="Slug copied into each alert's `zone`.")
    normalized: bool = Field(
        True,
        title="Normalized coordinates",
        description="true: points are fractions of the frame's width and height in [0, 1]; "
        "false: points are pixels of the original frame.",
    )
    points: Polygon = Field(
        min_length=3,
        max_length=256,
        title="Polygon",
        description="Corners [x, y] in order; the polygon closes itself and must not cross itself.",
    )
    anchor: Anchor = Field(
        Anchor.BOTTOM_CENTER,
        title="Anchor point",
        description="Point of each box that must lie in the zone; points on the edge count as inside.",
    )

    @field_validator("points")
    @classmethod
    def _simple_polygon(cls, points: Polygon, info: ValidationInfo) -> Polygon:
        if "normalized" in info.data:  # absent only when `normalized` itself failed validation
            check_polygon(points, normalized=info.data["normalized"])
        return points


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=SLUG_PATTERN, title="Rule id", description="Unique slug, part of every alert id.")
    description: str = Field(
        min_length=1, max_length=500, title="Description", description="What the rule means; starts the alert message."
    )
    severity: Severity = Field(Severity.WARNING, title="Severity")
    classes: tuple[ClassName, ...] = Field(
        min_length=1, title="Classes", description="COCO class names that match, e.g. [person] or [car, truck, bus]."
    )
    min_score: float = Field(0.5, ge=0.0, le=1.0, title="Minimum score", description="Detector confidence to count.")
    zone: ZoneConfig | None = Field(
        None, title="Zone", description="Only objects in this polygon count; omit to count them anywhere."
    )
    min_objects: int = Field(
        1, ge=1, le=1000, title="Minimum objects", description="Matching objects one frame needs to raise the alert."
    )
    cooldown_s: float = Field(
        60.0,
        ge=0.0,
        le=7 * 86400,
        title="Cooldown (s)",
        description="Per camera: after an alert, frames captured within this many seconds raise no new one.",
    )
    cameras: tuple[CameraId, ...] | None = Field(
        None, min_length=1, title="Cameras", description="Camera ids the rule applies to; omit for every camera."
    )

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, classes: tuple[str, ...]) -> tuple[str, ...]:
        for name in classes:
            if name not in COCO_CLASSES:
                close = difflib.get_close_matches(name, COCO_CLASSES, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else " (see processors/coco.py)"
                raise ValueError(f"unknown class {name!r}{hint}")
        if len(set(classes)) != len(classes):
            raise ValueError("classes must not repeat")
        return classes

    @field_validator("cameras")
    @classmethod
    def _camera_ids(cls, cameras: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if cameras is not None and len(set(cameras)) != len(cameras):
            raise ValueError("camera ids must not repeat")
        return cameras

    def applies_to(self, camera_id: str) -> bool:
        return self.cameras is None or camera_id in self.cameras


class RuleSet(BaseModel):
    """The rules file: a list of rules with unique ids."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="framestream alert rules")

    rules: tuple[Rule, ...] = Field(title="Rules", description="Evaluated independently on every frame.")

    @field_validator("rules", mode="wrap")
    @classmethod
    def _unique_ids(cls, value: object, handler: ValidatorFunctionWrapHandler) -> tuple[Rule, ...]:
        rules: tuple[Rule, ...] = handler(value)
        first_index: dict[str, int] = {}
        problems = []
        for index, rule in enumerate(rules):
            if rule.id in first_index:
                error = PydanticCustomError(
                    "duplicate_id", "duplicate rule id, already used by rules[{first}]", {"first": first_index[rule.id]}
                )
                # Raised as a ValidationError so the location is the offending rule's id, not the whole list.
                problems.append(InitErrorDetails(type=error, loc=(index, "id"), input=rule.id))
            first_index.setdefault(rule.id, index)
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return rules


class Evaluation(NamedTuple):
    alerts: list[Alert]
    state: CooldownState


class RuleEvaluator:
    """Applies a rule set to one frame at a time. Zones are compiled once, here."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rules = rule_set.rules
        self._zones = {
            rule.id: PolygonZone(rule.zone.points, normalized=rule.zone.normalized, anchor=rule.zone.anchor)
            for rule in self.rules
            if rule.zone is not None
        }

    def evaluate(self, frame: FrameDetections, state: CooldownState, *, raised_at: datetime) -> Evaluation:
        """Alerts raised by ``frame`` and the camera's new cooldown state; ``state`` is not modified.

        Produce the alerts before storing the new state: a crash between the two then
        re-raises the same alert ids on replay (deduplicated downstream) instead of losing them.
        """
        event_time = frame.captured_at.timestamp()
        new_state = dict(state)
        alerts = []
        for rule in self.rules:
            if not rule.applies_to(frame.camera_id) or not _cooled_down(rule, state.get(rule.id), event_time):
                continue
            matches = self.matching_detections(rule, frame)
            if len(matches) >= rule.min_objects:
                alerts.append(_make_alert(rule, frame, matches, raised_at))
                new_state[rule.id] = event_time
        return Evaluation(alerts, new_state)

    def matching_detections(self, rule: Rule, frame: FrameDetections) -> list[Detection]:
        """Detections of the rule's classes, at or above its score, inside its zone if it has one."""
        found = [d for d in frame.detections if d.class_name in rule.classes and d.score >= rule.min_score]
        zone = self._zones.get(rule.id)
        if zone is None or not found:
            return found
        boxes = [(d.box.x1, d.box.y1, d.box.x2, d.box.y2) for d in found]
        inside = zone.contains(boxes, frame.width, frame.height)
        return [detection for detection, keep in zip(found, inside, strict=True) if keep]


# captured_at has microsecond resolution; half a microsecond absorbs float rounding of epoch
# seconds, so a frame exactly one cooldown after the last alert fires whatever the cooldown.
_HALF_MICROSECOND = 5e-7


def _cooled_down(rule: Rule, last_fired: float | None, event_time: float) -> bool:
    # Only frames at or after the end of the window may fire. Frames older than the last
    # alert never do, so a replay from any earlier offset cannot raise an alert twice.
    return last_fired is None or event_time - last_fired >= rule.cooldown_s - _HALF_MICROSECOND


def _make_alert(rule: Rule, frame: FrameDetections, matches: list[Detection], raised_at: datetime) -> Alert:
    best = max(matches, key=lambda detection: detection.score)
    where = f" in zone {rule.zone.name!r}" if rule.zone is not None else ""
    return Alert(
        alert_id=f"{rule.id}:{frame.camera_id}:{frame.frame_seq}",
        rule_id=rule.id,
        severity=rule.severity,
        camera_id=frame.camera_id,
        frame_seq=frame.frame_seq,
        event_id=frame.event_id,
        captured_at=frame.captured_at,
        raised_at=raised_at,
        class_name=best.class_name,
        score=best.score,
        box=best.box,
        zone=rule.zone.name if rule.zone is not None else None,
        object_count=len(matches),
        message=(
            f"{rule.description}: {len(matches)} matching object(s){where}, best {best.class_name} {best.score:.2f}"
        ),
    )
