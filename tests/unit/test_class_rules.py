"""Class rules: alerts on the camera classifier's verdict, validated like the other rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from processors.rules import RuleEvaluator
from schemas import FrameClassification, FrameDetections
from schemas.rules import RuleSet
from tests.factories import capture_time, make_frame_detections

DEFECT_RULE = {"id": "cell-defect", "description": "Defective solar cell", "label": "defect", "min_score": 0.6}


def verdict(label: str = "defect", score: float = 0.9, model_name: str = "defects") -> FrameClassification:
    return FrameClassification(label=label, class_id=1, score=score, model_name=model_name, model_version="3")


def frame(seq: int, classification: FrameClassification | None, camera_id: str = "line-1") -> FrameDetections:
    return make_frame_detections(camera_id, seq, width=300, height=300, classification=classification)


@pytest.mark.parametrize(
    ("rule", "classification", "alerts"),
    [
        ({}, verdict(), 1),
        ({}, verdict(score=0.59), 0),
        ({}, verdict(label="ok"), 0),
        ({}, None, 0),
        ({"model": "defects"}, verdict(), 1),
        ({"model": "other"}, verdict(), 0),
        ({"cameras": ["line-2"]}, verdict(), 0),
    ],
)
def test_class_rule_matches(rule: dict, classification: FrameClassification | None, alerts: int) -> None:
    evaluator = RuleEvaluator(RuleSet(rules=(), class_rules=[DEFECT_RULE | rule]))
    evaluation = evaluator.evaluate(frame(5, classification), {}, raised_at=capture_time(6))
    assert len(evaluation.alerts) == alerts


def test_class_alert_names_the_label_model_and_whole_frame() -> None:
    evaluator = RuleEvaluator(RuleSet(rules=(), class_rules=[DEFECT_RULE]))
    (alert,) = evaluator.evaluate(frame(7, verdict(score=0.8)), {}, raised_at=capture_time(8)).alerts
    assert alert.alert_id == "cell-defect:line-1:7"
    assert (alert.class_name, alert.score) == ("defect", 0.8)
    assert (alert.box.x1, alert.box.y1, alert.box.x2, alert.box.y2) == (0, 0, 300, 300)
    assert "defects v3" in alert.message


def test_class_rule_cooldown_is_per_camera_in_capture_time() -> None:
    evaluator = RuleEvaluator(RuleSet(rules=(), class_rules=[DEFECT_RULE | {"cooldown_s": 10}]))
    first = evaluator.evaluate(frame(1, verdict()), {}, raised_at=capture_time(1))
    assert len(first.alerts) == 1
    soon = frame(2, verdict()).model_copy(update={"captured_at": frame(1, None).captured_at + timedelta(seconds=5)})
    assert evaluator.evaluate(soon, first.state, raised_at=capture_time(2)).alerts == []
    later = frame(3, verdict()).model_copy(update={"captured_at": frame(1, None).captured_at + timedelta(seconds=10)})
    assert len(evaluator.evaluate(later, first.state, raised_at=capture_time(3)).alerts) == 1


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"label": ""}, "class_rules.0.label"),
        ({"min_score": 1.5}, "class_rules.0.min_score"),
        ({"typo": 1}, "class_rules.0.typo"),
        ({"model": "Bad Name"}, "class_rules.0.model"),
    ],
)
def test_bad_class_rules_are_refused_naming_the_field(change: dict, where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RuleSet(rules=(), class_rules=[DEFECT_RULE | change])
    assert where in {".".join(map(str, error["loc"])) for error in caught.value.errors()}


def test_class_rule_ids_must_not_repeat_any_rule_id() -> None:
    frame_rule = {"id": "cell-defect", "description": "x", "classes": ["person"]}
    with pytest.raises(ValidationError, match="duplicate rule id, already used in rules"):
        RuleSet(rules=[frame_rule], class_rules=[DEFECT_RULE])
    with pytest.raises(ValidationError, match="already used in class_rules\\[0\\]"):
        RuleSet(rules=(), class_rules=[DEFECT_RULE, DEFECT_RULE])
