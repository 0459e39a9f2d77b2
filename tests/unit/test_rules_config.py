"""The rules YAML file: the bundled one loads; bad ones fail naming the file, the field and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from framestream.settings import REPO_ROOT
from processors.rules import RuleEvaluator
from schemas.alerts import Severity
from schemas.rules import Anchor
from streams.config_files import ConfigFileError, load_rules

GOOD_RULE = {
    "id": "person-at-door",
    "description": "Person at the door",
    "severity": "critical",
    "classes": ["person"],
    "min_score": 0.6,
    "zone": {"name": "door", "normalized": False, "points": [[10, 10], [200, 10], [200, 300]], "anchor": "center"},
    "min_objects": 2,
    "cooldown_s": 15,
    "cameras": ["front-door"],
}


def write_rules(tmp_path: Path, *rules: dict) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": list(rules)}), encoding="utf-8")
    return path


def with_fields(**changes: object) -> dict:
    return GOOD_RULE | changes


def test_bundled_rules_load() -> None:
    rule_set = load_rules(REPO_ROOT / "samples" / "rules.yaml")
    assert [rule.id for rule in rule_set.rules] == ["person-in-foreground", "vehicle-detected", "crowd"]
    assert rule_set.rules[0].zone is not None and rule_set.rules[0].zone.normalized
    assert rule_set.rules[2].min_objects == 3
    RuleEvaluator(rule_set)  # the zones compile


def test_good_file_reads_every_field(tmp_path: Path) -> None:
    (rule,) = load_rules(write_rules(tmp_path, GOOD_RULE)).rules
    assert (rule.severity, rule.classes, rule.min_score) == (Severity.CRITICAL, ("person",), 0.6)
    assert rule.zone is not None
    assert (rule.zone.name, rule.zone.normalized, rule.zone.anchor) == ("door", False, Anchor.CENTER)
    assert rule.zone.points == ((10.0, 10.0), (200.0, 10.0), (200.0, 300.0))
    assert (rule.min_objects, rule.cooldown_s, rule.cameras) == (2, 15.0, ("front-door",))


def test_defaults(tmp_path: Path) -> None:
    (rule,) = load_rules(write_rules(tmp_path, {"id": "p", "description": "p", "classes": ["person"]})).rules
    assert (rule.severity, rule.min_score, rule.zone, rule.min_objects, rule.cooldown_s, rule.cameras) == (
        Severity.WARNING,
        0.5,
        None,
        1,
        60.0,
        None,
    )


@pytest.mark.parametrize(
    ("rules", "field", "problem"),
    [
        ([with_fields(min_scor=0.5)], "rules[0].min_scor", "unknown field"),
        ([with_fields(zone=GOOD_RULE["zone"] | {"color": "red"})], "rules[0].zone.color", "unknown field"),
        ([with_fields(classes=["person", "persn"])], "rules[0].classes", "class 'persn'; did you mean 'person'?"),
        ([with_fields(classes=["motorbike"])], "rules[0].classes", "did you mean 'motorcycle'?"),
        ([with_fields(classes=[])], "rules[0].classes", "at least 1 item"),
        ([with_fields(classes=["car", "car"])], "rules[0].classes", "must not repeat"),
        (
            [with_fields(zone=GOOD_RULE["zone"] | {"points": [[0, 0], [100, 100], [100, 0], [0, 100]]})],
            "rules[0].zone.points",
            "not simple: Self-intersection",
        ),
        ([with_fields(zone=GOOD_RULE["zone"] | {"points": [[0, 0], [9, 9]]})], "rules[0].zone.points", "at least 3"),
        (
            [with_fields(zone={"name": "z", "points": [[0, 0], [640, 0], [640, 480]]})],
            "rules[0].zone.points",
            "set normalized: false",
        ),
        ([GOOD_RULE, with_fields(description="again")], "rules[1].id", "duplicate rule id, already used by rules[0]"),
        ([with_fields(cooldown_s=-1)], "rules[0].cooldown_s", "greater than or equal to 0"),
        ([with_fields(min_score=1.5)], "rules[0].min_score", "less than or equal to 1"),
        ([with_fields(min_objects=0)], "rules[0].min_objects", "greater than or equal to 1"),
        ([with_fields(id="Person:Door")], "rules[0].id", "should match pattern"),
        ([with_fields(severity="urgent")], "rules[0].severity", "'info', 'warning' or 'critical'"),
        ([with_fields(cameras=[])], "rules[0].cameras", "at least 1 item"),
        ([with_fields(cameras=["bad camera"])], "rules[0].cameras[0]", "should match pattern"),
        ([{"id": "x", "classes": ["person"]}], "rules[0].description", "Field required"),
    ],
)
def test_bad_rules_name_file_field_and_problem(tmp_path: Path, rules: list[dict], field: str, problem: str) -> None:
    path = write_rules(tmp_path, *rules)
    with pytest.raises(ConfigFileError) as caught:
        load_rules(path)
    assert f"{path}: {field}: " in str(caught.value)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "file is empty"),
        ("rules: [\n", "invalid YAML"),
        ("rule: []\n", "rule: unknown field"),
        ("- id: x\n", "Input should be a valid dictionary"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigFileError, match=problem) as caught:
        load_rules(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read file") as caught:
        load_rules(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(caught.value)
