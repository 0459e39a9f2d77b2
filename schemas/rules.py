"""The alert rules file (``rules.yaml``): its pydantic model, with validation that names the field.

The JSON Schema ``schemas/json/rules.v1.schema.json`` is generated from ``RuleSet``; the
evaluator that applies these rules to detections is ``processors.rules.RuleEvaluator``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Literal

import shapely
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from schemas.alerts import Severity
from schemas.base import CAMERA_ID_PATTERN
from schemas.coco import COCO_CLASSES

# Rule ids become part of alert ids ('<rule_id>:<camera_id>:<frame_seq>'), so no ':' here.
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

CameraId = Annotated[str, StringConstraints(pattern=CAMERA_ID_PATTERN)]
# Checked by Rule._known_classes (which suggests the closest name); the enum lets editors complete names.
ClassName = Annotated[str, WithJsonSchema({"type": "string", "enum": list(COCO_CLASSES)})]

Polygon = tuple[tuple[float, float], ...]


class Anchor(str, Enum):
    """The point of a box that must lie in the zone."""

    BOTTOM_CENTER = "bottom_center"  # where a person stands or a wheel touches the ground
    CENTER = "center"


def check_polygon(points: Sequence[Sequence[float]], *, normalized: bool) -> None:
    """Raise ``ValueError`` saying what is wrong with a zone polygon, if anything."""
    if any(len(point) != 2 for point in points):
        raise ValueError("every point must be a pair [x, y]")
    if not all(math.isfinite(value) for point in points for value in point):
        raise ValueError("coordinates must be finite numbers")
    _check_range(points, normalized=normalized)
    if len({(float(x), float(y)) for x, y in points}) < 3:
        raise ValueError("a polygon needs at least 3 distinct points")
    polygon = shapely.Polygon(points)
    # Collinear points make a zero-area hull; GEOS would call that a self-intersection.
    if polygon.convex_hull.area == 0.0:
        raise ValueError("polygon is degenerate: its points are collinear (zero area)")
    if not polygon.is_valid:
        reason = shapely.is_valid_reason(polygon).replace("[", " at [", 1)
        raise ValueError(f"polygon is not simple: {reason} (edges may only meet at shared corners)")


def _check_range(points: Sequence[Sequence[float]], *, normalized: bool) -> None:
    values = [value for point in points for value in point]
    if normalized and not all(0.0 <= value <= 1.0 for value in values):
        raise ValueError(
            "normalized coordinates must lie in [0, 1] (fractions of width and height); "
            "for pixel coordinates set normalized: false"
        )
    if not normalized and min(values) < 0.0:
        raise ValueError("pixel coordinates must be >= 0")


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
                hint = f"; did you mean {close[0]!r}?" if close else " (see schemas/coco.py)"
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


LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$"


class ClassRule(BaseModel):
    """An alert on the camera classifier's verdict: the frame classified as ``label`` with at
    least ``min_score``. Per camera, with a cooldown like a frame rule; alert id
    ``<rule_id>:<camera_id>:<frame_seq>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=SLUG_PATTERN, title="Rule id", description="Unique among all rules; part of alert ids.")
    description: str = Field(min_length=1, max_length=500, title="Description", description="Starts the message.")
    severity: Severity = Field(Severity.WARNING, title="Severity")
    label: str = Field(pattern=LABEL_PATTERN, title="Label", description="Classifier label that matches, e.g. defect.")
    min_score: float = Field(0.5, ge=0.0, le=1.0, title="Minimum score", description="Probability of the label.")
    model: str | None = Field(
        None, pattern=SLUG_PATTERN, title="Model", description="Only this classifier's verdicts (e.g. defects)."
    )
    cooldown_s: float = Field(
        0.0, ge=0.0, le=7 * 86400, title="Cooldown (s)", description="Per camera: quiet time after an alert."
    )
    cameras: tuple[CameraId, ...] | None = Field(None, min_length=1, title="Cameras", description="Omit for all.")

    @field_validator("cameras")
    @classmethod
    def _camera_ids(cls, cameras: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return Rule._camera_ids.__func__(cls, cameras)

    def applies_to(self, camera_id: str) -> bool:
        return self.cameras is None or camera_id in self.cameras


class LineConfig(BaseModel):
    """A counting line: a track whose anchor crosses the segment start -> end is counted once per crossing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=SLUG_PATTERN, title="Line name", description="Slug, unique among the lines.")
    normalized: bool = Field(
        True, title="Normalized coordinates", description="true: fractions of width/height in [0, 1]; false: pixels."
    )
    start: tuple[float, float] = Field(title="Start point", description="[x, y] where the line starts.")
    end: tuple[float, float] = Field(
        title="End point",
        description="[x, y] where it ends. 'in' is a crossing from the left of start -> end to its right as seen "
        "on the screen (y grows downwards): for a line drawn left to right, 'in' means moving down the picture.",
    )
    anchor: Anchor = Field(Anchor.BOTTOM_CENTER, title="Anchor point", description="Point of each box that crosses.")
    cameras: tuple[CameraId, ...] | None = Field(None, min_length=1, title="Cameras", description="Omit for all.")

    @model_validator(mode="after")
    def _segment(self) -> LineConfig:
        _check_range([self.start, self.end], normalized=self.normalized)
        if not all(math.isfinite(value) for value in (*self.start, *self.end)):
            raise ValueError("coordinates must be finite numbers")
        if self.start == self.end:
            raise ValueError("start and end must differ (a line needs a length)")
        return self

    def applies_to(self, camera_id: str) -> bool:
        return self.cameras is None or camera_id in self.cameras


class SceneZone(ZoneConfig):
    """A zone of the scene analytics: occupancy per frame and dwell per visiting track."""

    cameras: tuple[CameraId, ...] | None = Field(None, min_length=1, title="Cameras", description="Omit for all.")

    def applies_to(self, camera_id: str) -> bool:
        return self.cameras is None or camera_id in self.cameras


class CrossingDirection(str, Enum):
    IN = "in"
    OUT = "out"
    ANY = "any"


class _TrackRuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=SLUG_PATTERN, title="Rule id", description="Unique among all rules; part of alert ids.")
    description: str = Field(min_length=1, max_length=500, title="Description")
    severity: Severity = Field(Severity.WARNING, title="Severity")
    classes: tuple[ClassName, ...] = Field(min_length=1, title="Classes", description="COCO class names of tracks.")
    cameras: tuple[CameraId, ...] | None = Field(None, min_length=1, title="Cameras", description="Omit for all.")

    _known_classes = field_validator("classes")(Rule._known_classes.__func__)

    def applies_to(self, camera_id: str) -> bool:
        return self.cameras is None or camera_id in self.cameras


class DwellRule(_TrackRuleBase):
    """A track inside a zone for at least ``min_dwell_s``: one alert per track."""

    kind: Literal["dwell"] = Field(title="Kind")
    zone: str = Field(pattern=SLUG_PATTERN, title="Zone", description="Name of an entry of `zones`.")
    min_dwell_s: float = Field(gt=0, le=86400, title="Minimum dwell (s)", description="Capture-time seconds inside.")


class CrossingRule(_TrackRuleBase):
    """A track crossing a line in a direction: one alert per track."""

    kind: Literal["crossing"] = Field(title="Kind")
    line: str = Field(pattern=SLUG_PATTERN, title="Line", description="Name of an entry of `lines`.")
    direction: CrossingDirection = Field(CrossingDirection.ANY, title="Direction", description="in | out | any")


class CountRule(_TrackRuleBase):
    """More than ``above`` crossings of a line within one period (tumbling windows of capture time): one alert
    per window."""

    kind: Literal["count"] = Field(title="Kind")
    line: str = Field(pattern=SLUG_PATTERN, title="Line", description="Name of an entry of `lines`.")
    direction: CrossingDirection = Field(CrossingDirection.ANY, title="Direction", description="in | out | any")
    period_s: float = Field(gt=0, le=7 * 86400, title="Period (s)", description="Window length, aligned to the epoch.")
    above: int = Field(ge=0, le=1_000_000, title="Above", description="Alert when the window's count exceeds this.")


TrackRule = Annotated[DwellRule | CrossingRule | CountRule, Field(discriminator="kind")]


def _reference_problems(
    rules: Sequence[DwellRule | CrossingRule | CountRule], lines: set[str], zones: set[str], taken: set[str]
) -> list[InitErrorDetails]:
    problems = []
    first_index: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if isinstance(rule, DwellRule) and rule.zone not in zones:
            problems.append(_problem(index, "zone", rule.zone, "unknown zone (not in `zones`: {known})", zones))
        if isinstance(rule, CrossingRule | CountRule) and rule.line not in lines:
            problems.append(_problem(index, "line", rule.line, "unknown line (not in `lines`: {known})", lines))
        if rule.id in first_index or rule.id in taken:
            where = f"track_rules[{first_index[rule.id]}]" if rule.id in first_index else "rules"
            problems.append(_problem(index, "id", rule.id, f"duplicate rule id, already used in {where}", set()))
        first_index.setdefault(rule.id, index)
    return problems


def _problem(index: int, field: str, value: str, message: str, known: set[str]) -> InitErrorDetails:
    error = PydanticCustomError("bad_reference", message, {"known": ", ".join(sorted(known)) or "none"})
    return InitErrorDetails(type=error, loc=(index, field), input=value)


def _unique_names(items: Sequence[LineConfig | SceneZone], what: str) -> list[InitErrorDetails]:
    seen: dict[str, int] = {}
    problems = []
    for index, item in enumerate(items):
        if item.name in seen:
            error = PydanticCustomError(
                "duplicate_name",
                "duplicate {what} name, already used by [{first}]",
                {"what": what, "first": seen[item.name]},
            )
            problems.append(InitErrorDetails(type=error, loc=(index, "name"), input=item.name))
        seen.setdefault(item.name, index)
    return problems


class RuleSet(BaseModel):
    """The rules file: a list of rules with unique ids."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="framestream alert rules")

    rules: tuple[Rule, ...] = Field(title="Rules", description="Evaluated independently on every frame.")
    lines: tuple[LineConfig, ...] = Field((), title="Lines", description="Counting lines of the track stage.")
    zones: tuple[SceneZone, ...] = Field((), title="Scene zones", description="Occupancy and dwell zones.")
    track_rules: tuple[TrackRule, ...] = Field(
        (), title="Track rules", description="Rules on tracks (kind: dwell | crossing | count), run by the track stage."
    )
    class_rules: tuple[ClassRule, ...] = Field(
        (), title="Class rules", description="Rules on the classifier's verdict of a frame, run by the alert stage."
    )

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

    @field_validator("lines", "zones", mode="wrap")
    @classmethod
    def _unique_names(cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> tuple:
        items = handler(value)
        problems = _unique_names(items, "line" if info.field_name == "lines" else "zone")
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return items

    @field_validator("class_rules", mode="wrap")
    @classmethod
    def _class_rule_ids(cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> tuple:
        rules = handler(value)
        taken = {rule.id: "rules" for rule in info.data.get("rules", ())}
        taken |= {rule.id: "track_rules" for rule in info.data.get("track_rules", ())}
        problems = []
        for index, rule in enumerate(rules):
            if rule.id in taken:
                error = PydanticCustomError(
                    "duplicate_id", "duplicate rule id, already used in {where}", {"where": taken[rule.id]}
                )
                problems.append(InitErrorDetails(type=error, loc=(index, "id"), input=rule.id))
            taken.setdefault(rule.id, f"class_rules[{index}]")
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return rules

    @field_validator("track_rules", mode="wrap")
    @classmethod
    def _references(cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> tuple:
        rules = handler(value)
        lines = {line.name for line in info.data.get("lines", ())}
        zones = {zone.name for zone in info.data.get("zones", ())}
        taken = {rule.id for rule in info.data.get("rules", ())}
        problems = _reference_problems(rules, lines, zones, taken)
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return rules
