"""Alert rules: a pure evaluator with an event-time cooldown (the rules file model is ``schemas.rules``).

The evaluator reads no clock and keeps no state of its own: the caller passes
the camera's cooldown state (rule id -> event time of the last alert, in epoch
seconds) and stores the state it gets back, e.g. in a Faust table. Because
time is the frame's ``captured_at`` and alert ids are deterministic, replaying
frames after a crash gives the same decisions and the same ids.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from processors.zones import PolygonZone
from schemas.alerts import Alert
from schemas.detections import Detection, FrameDetections
from schemas.rules import Rule, RuleSet

CooldownState = dict[str, float]
"""Per camera: rule id -> ``captured_at`` (epoch seconds) of the frame that last raised it."""


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
