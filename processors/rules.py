"""Alert rules: a pure evaluator with an event-time cooldown (the rules file model is ``schemas.rules``).

The evaluator reads no clock and keeps no state of its own: the caller passes
the camera's cooldown state (rule id -> event time of the last alert, in epoch
seconds) and stores the state it gets back, e.g. in a Faust table. Because
time is the frame's ``captured_at`` and alert ids are deterministic, replaying
frames after a crash gives the same decisions and the same ids.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from processors.scene import TrackScene
from processors.zones import PolygonZone
from schemas.alerts import Alert
from schemas.detections import BoundingBox, Detection, FrameClassification, FrameDetections
from schemas.rules import ClassRule, CountRule, CrossingRule, DwellRule, Rule, RuleSet
from schemas.tracks import FrameTracks, TrackedObject

CooldownState = dict[str, float]
"""Per camera: rule id -> ``captured_at`` (epoch seconds) of the frame that last raised it."""


class Evaluation(NamedTuple):
    alerts: list[Alert]
    state: CooldownState


class RuleEvaluator:
    """Applies a rule set to one frame at a time. Zones are compiled once, here."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rules = rule_set.rules
        self.class_rules = rule_set.class_rules
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
        for class_rule in self.class_rules:
            if not class_rule.applies_to(frame.camera_id) or not _cooled_down(
                class_rule, state.get(class_rule.id), event_time
            ):
                continue
            if frame.classification is not None and class_matches(class_rule, frame.classification):
                alerts.append(_class_alert(class_rule, frame, frame.classification, raised_at))
                new_state[class_rule.id] = event_time
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


def _cooled_down(rule: Rule | ClassRule, last_fired: float | None, event_time: float) -> bool:
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


def class_matches(rule: ClassRule, verdict: FrameClassification) -> bool:
    """The verdict is the rule's label, from the rule's model if it names one, at or above its score."""
    model_ok = rule.model is None or rule.model == verdict.model_name
    return model_ok and verdict.label == rule.label and verdict.score >= rule.min_score


def _class_alert(rule: ClassRule, frame: FrameDetections, verdict: FrameClassification, raised_at: datetime) -> Alert:
    return Alert(
        alert_id=f"{rule.id}:{frame.camera_id}:{frame.frame_seq}",
        rule_id=rule.id,
        severity=rule.severity,
        camera_id=frame.camera_id,
        frame_seq=frame.frame_seq,
        event_id=frame.event_id,
        captured_at=frame.captured_at,
        raised_at=raised_at,
        class_name=verdict.label,
        score=verdict.score,
        box=BoundingBox(x1=0.0, y1=0.0, x2=float(frame.width), y2=float(frame.height)),  # the whole frame
        message=(
            f"{rule.description}: frame classified {verdict.label} {verdict.score:.2f} "
            f"by {verdict.model_name} v{verdict.model_version}"
        ),
    )


class CountWindow(BaseModel):
    """A count rule's current tumbling window: its start (epoch s), crossings so far, alerted yet."""

    model_config = ConfigDict(extra="forbid")

    start: float
    count: int = 0
    fired: bool = False


class TrackJudgement(NamedTuple):
    alerts: list[Alert]
    scenes: dict[str, TrackScene]
    counts: dict[str, CountWindow]


class TrackRuleEvaluator:
    """The rules file's ``track_rules`` applied to one camera's tracked frame at a time.

    Deduplication is in the ids and the state: a dwell or crossing rule alerts once per track
    (id ``<rule_id>:<track_id>``, the rule remembered in the track's ``fired``), a count rule once
    per window (id ``<rule_id>:<camera_id>:<window start, epoch ms>``). Time is capture time."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rules = rule_set.track_rules

    def evaluate(
        self,
        frame: FrameTracks,
        scenes: dict[str, TrackScene],
        counts: dict[str, CountWindow],
        *,
        raised_at: datetime,
    ) -> TrackJudgement:
        """Alerts for ``frame``, and the tracks' and windows' new state (the arguments are not modified)."""
        scenes = {key: scene.model_copy() for key, scene in scenes.items()}
        counts = {key: window.model_copy() for key, window in counts.items()}
        alerts: list[Alert] = []
        for rule in self.rules:
            if not rule.applies_to(frame.camera_id):
                continue
            if isinstance(rule, CountRule):
                alerts += self._count(rule, frame, counts, raised_at)
                continue
            for obj, detail in self._per_track(rule, frame, scenes):
                scene = scenes[obj.track_id or ""]
                if rule.id in scene.fired:
                    continue
                scene.fired = (*scene.fired, rule.id)
                alerts.append(_track_alert(rule, frame, obj, f"{rule.id}:{obj.track_id}", detail, raised_at))
        return TrackJudgement(alerts, scenes, counts)

    @staticmethod
    def _per_track(
        rule: DwellRule | CrossingRule, frame: FrameTracks, scenes: dict[str, TrackScene]
    ) -> list[tuple[TrackedObject, str]]:
        now = frame.captured_at.timestamp()
        found = []
        if isinstance(rule, DwellRule):
            for obj in frame.objects:
                scene = scenes.get(obj.track_id or "")
                stay = scene.zones.get(rule.zone) if scene is not None else None
                if stay is not None and obj.class_name in rule.classes and now - stay.entered_at >= rule.min_dwell_s:
                    found.append((obj, f"in zone {rule.zone!r} for {now - stay.entered_at:.1f} s"))
            return found
        by_track = {obj.track_id: obj for obj in frame.objects if obj.track_id is not None}
        for crossing in frame.crossings:
            obj = by_track.get(crossing.track_id)
            if obj is None or crossing.line != rule.line or obj.class_name not in rule.classes:
                continue
            if rule.direction.value in ("any", crossing.direction.value) and crossing.track_id in scenes:
                found.append((obj, f"crossed line {rule.line!r} ({crossing.direction.value})"))
        return found

    @staticmethod
    def _count(rule: CountRule, frame: FrameTracks, counts: dict[str, CountWindow], raised_at: datetime) -> list[Alert]:
        now = frame.captured_at.timestamp()
        start = math.floor(now / rule.period_s) * rule.period_s
        window = counts.get(rule.id)
        if window is None or window.start != start:
            window = CountWindow(start=start)
        by_track = {obj.track_id: obj for obj in frame.objects if obj.track_id is not None}
        matching = [
            crossing
            for crossing in frame.crossings
            if crossing.line == rule.line
            and rule.direction.value in ("any", crossing.direction.value)
            and crossing.class_name in rule.classes
        ]
        window.count += len(matching)
        counts[rule.id] = window
        if window.fired or window.count <= rule.above or not matching:
            return []
        window.fired = True
        obj = by_track[matching[-1].track_id]
        alert_id = f"{rule.id}:{frame.camera_id}:{round(start * 1000)}"
        detail = f"{window.count} crossings of line {rule.line!r} since {datetime.fromtimestamp(start, UTC):%H:%M:%S}"
        return [_track_alert(rule, frame, obj, alert_id, detail, raised_at, count=window.count)]


def _track_alert(
    rule: DwellRule | CrossingRule | CountRule,
    frame: FrameTracks,
    obj: TrackedObject,
    alert_id: str,
    detail: str,
    raised_at: datetime,
    count: int = 1,
) -> Alert:
    return Alert(
        alert_id=alert_id,
        rule_id=rule.id,
        severity=rule.severity,
        camera_id=frame.camera_id,
        frame_seq=frame.frame_seq,
        event_id=frame.event_id,
        captured_at=frame.captured_at,
        raised_at=raised_at,
        class_name=obj.class_name,
        score=obj.score,
        box=obj.box,
        zone=rule.zone if isinstance(rule, DwellRule) else None,
        object_count=max(1, count),
        message=f"{rule.description}: {obj.class_name} track {obj.track_id} {detail}",
    )
