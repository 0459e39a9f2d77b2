"""Zones and the alert-rule evaluator: pure functions, tested as tables."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from processors.rules import RuleEvaluator
from processors.zones import PolygonZone, anchor_points
from schemas.alerts import Severity
from schemas.rules import Anchor, Rule, RuleSet, ZoneConfig
from tests.factories import BASE_TIME, make_detection, make_frame_detections

SQUARE = [(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)]
# An L shape: the square [0, 1]^2 without its top-right quarter (y grows downwards).
L_SHAPE = [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]
RAISED_AT = BASE_TIME + timedelta(hours=1)


def at(seconds: float) -> datetime:
    return BASE_TIME + timedelta(seconds=seconds)


def rule(**fields: Any) -> Rule:
    defaults: dict[str, Any] = {"id": "person-seen", "description": "Person seen", "classes": ["person"]}
    return Rule.model_validate(defaults | fields)


def evaluator(*rules: Rule) -> RuleEvaluator:
    return RuleEvaluator(RuleSet(rules=rules))


# --- zones -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        (Anchor.BOTTOM_CENTER, [[15.0, 40.0], [5.0, 5.0]]),
        (Anchor.CENTER, [[15.0, 30.0], [5.0, 2.5]]),
    ],
)
def test_anchor_points(anchor: Anchor, expected: list[list[float]]) -> None:
    boxes = np.array([[10.0, 20.0, 20.0, 40.0], [0.0, 0.0, 10.0, 5.0]])
    np.testing.assert_allclose(anchor_points(boxes, anchor), expected)


@pytest.mark.parametrize(
    ("points", "normalized", "anchor", "box", "size", "inside"),
    [
        # normalised square, 100x100 frame: interior, edge, vertex, just outside
        (SQUARE, True, Anchor.BOTTOM_CENTER, (40, 30, 60, 50), (100, 100), True),
        (SQUARE, True, Anchor.BOTTOM_CENTER, (40, 30, 60, 75), (100, 100), True),
        (SQUARE, True, Anchor.BOTTOM_CENTER, (15, 10, 35, 25), (100, 100), True),
        (SQUARE, True, Anchor.BOTTOM_CENTER, (40, 30, 60, 75.01), (100, 100), False),
        (SQUARE, True, Anchor.BOTTOM_CENTER, (0, 0, 10, 10), (100, 100), False),
        # the anchor decides: feet below the zone, centre inside it
        (SQUARE, True, Anchor.BOTTOM_CENTER, (40, 40, 60, 90), (100, 100), False),
        (SQUARE, True, Anchor.CENTER, (40, 40, 60, 90), (100, 100), True),
        # normalised coordinates scale with a non-square frame: x is a fraction of 200
        (SQUARE, True, Anchor.BOTTOM_CENTER, (90, 10, 110, 50), (200, 100), True),
        (SQUARE, True, Anchor.BOTTOM_CENTER, (150, 10, 170, 50), (200, 100), False),
        # the same square in pixels ignores the frame size
        ([(25, 25), (75, 25), (75, 75), (25, 75)], False, Anchor.BOTTOM_CENTER, (40, 30, 60, 50), (200, 100), True),
        ([(25, 25), (75, 25), (75, 75), (25, 75)], False, Anchor.BOTTOM_CENTER, (90, 10, 110, 50), (200, 100), False),
        # concave polygon: the missing quarter is outside, the inner corner's edges are inside
        (L_SHAPE, True, Anchor.CENTER, (70, 10, 80, 20), (100, 100), False),
        (L_SHAPE, True, Anchor.CENTER, (20, 10, 30, 20), (100, 100), True),
        (L_SHAPE, True, Anchor.CENTER, (70, 45, 80, 55), (100, 100), True),
        # a zone along the image border catches an object touching it
        ([(0, 0), (1, 0), (1, 1), (0, 1)], True, Anchor.BOTTOM_CENTER, (0, 0, 100, 100), (100, 100), True),
    ],
)
def test_zone_contains(
    points: list[tuple[float, float]],
    normalized: bool,
    anchor: Anchor,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    inside: bool,
) -> None:
    zone = PolygonZone(points, normalized=normalized, anchor=anchor)
    assert zone.contains([box], *size).tolist() == [inside]


def test_zone_contains_many_boxes_and_none() -> None:
    zone = PolygonZone(SQUARE, normalized=True)
    boxes = [(40, 30, 60, 50), (0, 0, 10, 10), (40, 30, 60, 75)]
    assert zone.contains(boxes, 100, 100).tolist() == [True, False, True]
    assert zone.contains(np.empty((0, 4)), 100, 100).tolist() == []


@pytest.mark.parametrize(
    ("points", "normalized", "message"),
    [
        ([(0, 0), (1, 1), (1, 0), (0, 1)], True, "not simple"),  # bow tie
        ([(0, 0), (2, 0), (1, 0), (1, 1)], False, "not simple"),  # an edge folds back on another
        ([(0, 0), (0.5, 0.5), (1, 1)], True, "collinear"),
        ([(0, 0), (1, 0), (0, 0)], True, "at least 3 distinct"),
        ([(0, 0), (1.5, 0), (1, 1)], True, "for pixel coordinates set normalized: false"),
        ([(0, 0), (-5, 0), (10, 10)], False, "pixel coordinates must be >= 0"),
        ([(0, 0), (math.nan, 0), (1, 1)], True, "finite"),
        ([(0, 0, 0), (1, 0, 0), (1, 1, 0)], True, "pair"),
    ],
)
def test_bad_polygons_are_rejected(points: list[tuple[float, ...]], normalized: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolygonZone(points, normalized=normalized)


def test_zone_rejects_empty_frame_size() -> None:
    with pytest.raises(ValueError, match="frame size"):
        PolygonZone(SQUARE, normalized=True).contains([(0, 0, 1, 1)], 0, 100)


# --- matching: classes, scores, zones, counts ------------------------------------------------


@pytest.mark.parametrize(
    ("rule_fields", "detections", "expected_count"),
    [
        ({}, [("person", 0.9)], 1),
        ({}, [("dog", 0.9)], 0),
        ({"min_score": 0.5}, [("person", 0.5)], 1),  # the threshold itself counts
        ({"min_score": 0.5}, [("person", 0.49)], 0),
        ({"classes": ["car", "truck"]}, [("car", 0.8), ("truck", 0.7), ("person", 0.9)], 2),
        ({"classes": ["car"], "min_score": 0.75}, [("car", 0.8), ("car", 0.7)], 1),
        ({}, [], 0),
    ],
)
def test_class_and_score_filters(
    rule_fields: dict[str, Any], detections: list[tuple[str, float]], expected_count: int
) -> None:
    the_rule = rule(**rule_fields)
    frame = make_frame_detections(detections=[make_detection(name, score) for name, score in detections])
    assert len(evaluator(the_rule).matching_detections(the_rule, frame)) == expected_count


def test_zone_filters_matches() -> None:
    zone = ZoneConfig(name="door", points=SQUARE)
    the_rule = rule(zone=zone)
    inside = make_detection("person", 0.9, (300, 100, 340, 300))  # feet at (320, 300) of 640x480
    outside = make_detection("person", 0.9, (10, 10, 50, 50))
    frame = make_frame_detections(detections=[inside, outside], width=640, height=480)
    assert [d.box for d in evaluator(the_rule).matching_detections(the_rule, frame)] == [inside.box]


@pytest.mark.parametrize(
    ("min_objects", "people", "fires"),
    [(1, 0, False), (1, 1, True), (3, 2, False), (3, 3, True), (3, 5, True)],
)
def test_min_objects(min_objects: int, people: int, fires: bool) -> None:
    frame = make_frame_detections(detections=[make_detection("person", 0.9)] * people)
    alerts, _ = evaluator(rule(min_objects=min_objects, cooldown_s=0)).evaluate(frame, {}, raised_at=RAISED_AT)
    assert [alert.object_count for alert in alerts] == ([people] if fires else [])


def test_alert_carries_the_best_match_and_the_frame() -> None:
    whole_frame = {"name": "all", "points": [(0, 0), (1, 0), (1, 1), (0, 1)]}
    the_rule = rule(id="crowd", min_objects=2, severity="critical", zone=whole_frame)
    detections = [
        make_detection("person", 0.6),
        make_detection("person", 0.95, (1, 2, 3, 4)),
        make_detection("dog", 0.99),
    ]
    frame = make_frame_detections(camera_id="gate", frame_seq=42, detections=detections)
    (alert,), _ = evaluator(the_rule).evaluate(frame, {}, raised_at=RAISED_AT)
    assert (alert.alert_id, alert.rule_id, alert.event_id) == ("crowd:gate:42", "crowd", "gate:42")
    assert (alert.severity, alert.zone, alert.object_count) == (Severity.CRITICAL, "all", 2)
    assert (alert.class_name, alert.score, alert.box) == ("person", 0.95, detections[1].box)
    assert (alert.captured_at, alert.raised_at) == (frame.captured_at, RAISED_AT)
    assert alert.message.startswith("Person seen: 2 matching object(s) in zone 'all'")


# --- cooldown in event time ------------------------------------------------------------------


def run_frames(
    the_evaluator: RuleEvaluator, times: list[float], state: dict[str, float] | None = None, first_seq: int = 0
) -> tuple[list[str], dict[str, float]]:
    """Feed one matching frame per capture time; return the alert ids raised and the final state."""
    state = dict(state or {})
    raised = []
    for seq, seconds in enumerate(times, start=first_seq):
        frame = make_frame_detections(frame_seq=seq, captured_at=at(seconds), detections=[make_detection()])
        alerts, state = the_evaluator.evaluate(frame, state, raised_at=RAISED_AT)
        raised += [alert.alert_id for alert in alerts]
    return raised, state


@pytest.mark.parametrize(
    ("cooldown_s", "times", "fired_at"),
    [
        (10, [0, 5, 9.999, 10, 12, 19.9, 25], [0, 10, 25]),
        (0, [0, 0.1, 0.2], [0, 0.1, 0.2]),  # no cooldown: every matching frame
        (0.1, [0.1, 0.15, 0.2, 0.3, 0.7], [0.1, 0.2, 0.3, 0.7]),  # windows end exactly, despite float rounding
        (10, [0, 5, 3, -50], [0]),  # out of order: older than the last alert never fires again
        (10, [20, 10.5, 29, 30], [20, 30]),
        (3600, [0, 1800, 3599, 3600], [0, 3600]),
    ],
)
def test_cooldown_uses_capture_time(cooldown_s: float, times: list[float], fired_at: list[float]) -> None:
    raised, state = run_frames(evaluator(rule(cooldown_s=cooldown_s)), times)
    expected_seqs = [times.index(seconds) for seconds in fired_at]
    assert raised == [f"person-seen:cam-1:{seq}" for seq in expected_seqs]
    assert state == {"person-seen": at(fired_at[-1]).timestamp()}


@pytest.mark.parametrize("crash_after", [1, 3, 5, 7])
def test_replay_after_crash_raises_no_second_alert(crash_after: int) -> None:
    """The state was saved after frame ``crash_after``; the offsets were not, so frames replay from 0."""
    the_evaluator = evaluator(rule(cooldown_s=10))
    times = [0, 4, 8, 12, 16, 20, 24, 28]
    uninterrupted, final_state = run_frames(the_evaluator, times)
    before_crash, saved = run_frames(the_evaluator, times[: crash_after + 1])
    after_restart, restored = run_frames(the_evaluator, times, state=saved)
    assert uninterrupted == ["person-seen:cam-1:0", "person-seen:cam-1:3", "person-seen:cam-1:6"]
    assert before_crash + after_restart == uninterrupted
    assert restored == final_state


def test_alerts_are_deterministic() -> None:
    the_evaluator = evaluator(rule(), rule(id="crowd", min_objects=2))
    frame = make_frame_detections(frame_seq=7, detections=[make_detection(), make_detection(score=0.7)])
    first = the_evaluator.evaluate(frame, {}, raised_at=RAISED_AT)
    second = the_evaluator.evaluate(frame, {}, raised_at=RAISED_AT)
    assert first == second
    assert [alert.alert_id for alert in first.alerts] == ["person-seen:cam-1:7", "crowd:cam-1:7"]


def test_evaluate_leaves_the_given_state_alone() -> None:
    state = {"person-seen": at(-100).timestamp(), "removed-rule": 123.5}
    frame = make_frame_detections(detections=[make_detection()])
    _, new_state = evaluator(rule(cooldown_s=10)).evaluate(frame, state, raised_at=RAISED_AT)
    assert state == {"person-seen": at(-100).timestamp(), "removed-rule": 123.5}
    assert new_state == {"person-seen": at(0).timestamp(), "removed-rule": 123.5}


def test_rules_keep_separate_cooldowns() -> None:
    the_evaluator = evaluator(rule(id="a", cooldown_s=10), rule(id="b", cooldown_s=2))
    raised, state = run_frames(the_evaluator, [0, 3, 6, 10])
    assert raised == ["a:cam-1:0", "b:cam-1:0", "b:cam-1:1", "b:cam-1:2", "a:cam-1:3", "b:cam-1:3"]
    assert state == {"a": at(10).timestamp(), "b": at(10).timestamp()}


# --- cameras ---------------------------------------------------------------------------------


def test_cameras_are_isolated_by_their_own_state() -> None:
    the_evaluator = evaluator(rule(cooldown_s=60))
    states: dict[str, dict[str, float]] = {}
    raised = []
    for camera_id, seq in [("a", 0), ("b", 0), ("a", 1), ("b", 1)]:
        frame = make_frame_detections(camera_id=camera_id, frame_seq=seq, detections=[make_detection()])
        alerts, states[camera_id] = the_evaluator.evaluate(frame, states.get(camera_id, {}), raised_at=RAISED_AT)
        raised += [alert.alert_id for alert in alerts]
    assert raised == ["person-seen:a:0", "person-seen:b:0"]


@pytest.mark.parametrize(
    ("cameras", "camera_id", "fires"), [(None, "x", True), (["x", "y"], "y", True), (["x"], "y", False)]
)
def test_rule_cameras(cameras: list[str] | None, camera_id: str, fires: bool) -> None:
    frame = make_frame_detections(camera_id=camera_id, detections=[make_detection()])
    alerts, state = evaluator(rule(cameras=cameras)).evaluate(frame, {}, raised_at=RAISED_AT)
    assert (len(alerts), bool(state)) == (int(fires), fires)


# --- state survives JSON (a Faust table stores it as JSON) ------------------------------------


def test_state_round_trips_through_json() -> None:
    the_evaluator = evaluator(rule(cooldown_s=5), rule(id="car-seen", classes=["car"], cooldown_s=5))
    times = [0.123456, 2.5, 5.123456, 7.777777]
    _, state = run_frames(the_evaluator, times[:3])
    restored = json.loads(json.dumps(state))
    assert restored == state
    assert all(isinstance(value, float) for value in restored.values())
    # The boundary frame (exactly one cooldown after the last alert) decides the same either way.
    boundary = make_frame_detections(frame_seq=9, captured_at=at(0.123456 + 5), detections=[make_detection()])
    assert the_evaluator.evaluate(boundary, restored, raised_at=RAISED_AT) == the_evaluator.evaluate(
        boundary, state, raised_at=RAISED_AT
    )
