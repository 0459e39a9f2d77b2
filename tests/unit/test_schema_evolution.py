"""The schema evolution rule: within a topic version, a message may only gain optional fields.

``schemas/json/released/`` keeps each topic schema as consumers last received it. The current
file of the same name must keep every property (same type, same constraints), require nothing
new, and may add properties only when they are optional. Anything else is a breaking change:
a new topic (``vision.alerts.v2``) and a new schema file, never an edit of v1. When a compatible
change ships, copy the current file over its released copy.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from schemas import generate

RELEASED = generate.SCHEMA_DIR / "released"
RELEASED_FILES = sorted(RELEASED.glob("*.schema.json"))
ANNOTATIONS = frozenset({"title", "description", "examples", "default"})  # wording may change


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _strip(node: object) -> object:
    """The schema without prose: what a validator checks."""
    if isinstance(node, dict):
        return {key: _strip(value) for key, value in node.items() if key not in ANNOTATIONS}
    if isinstance(node, list):
        return [_strip(value) for value in node]
    return node


def _object_problems(where: str, old: dict, new: dict) -> list[str]:
    problems = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name in sorted(set(old_props) - set(new_props)):
        problems.append(f"{where}.{name}: removed")
    for name in sorted(set(old_props) & set(new_props)):
        if _strip(old_props[name]) != _strip(new_props[name]):
            problems.append(f"{where}.{name}: type or constraints changed")
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        problems.append(f"{where}.{name}: newly required")
    if new.get("additionalProperties", True) is False and old.get("additionalProperties", True) is not False:
        problems.append(f"{where}: now forbids additional properties")
    return problems


def compatibility_problems(old: dict, new: dict) -> list[str]:
    """Why ``new`` cannot replace ``old`` under the same topic version (empty: it can)."""
    problems = _object_problems("$", old, new)
    old_defs, new_defs = old.get("$defs", {}), new.get("$defs", {})
    for name in sorted(old_defs):
        if name not in new_defs:
            problems.append(f"$defs.{name}: removed")
        elif old_defs[name].get("type") == "object" or "properties" in old_defs[name]:
            problems += _object_problems(f"$defs.{name}", old_defs[name], new_defs[name])
        elif _strip(old_defs[name]) != _strip(new_defs[name]):
            problems.append(f"$defs.{name}: changed")
    for key in ("type", "$id"):
        if old.get(key) != new.get(key):
            problems.append(f"$.{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return problems


def test_the_released_topic_schemas_are_kept() -> None:
    names = {path.name for path in RELEASED_FILES}
    assert {"frame-meta.v1.schema.json", "frame-detections.v1.schema.json", "alert.v1.schema.json"} <= names
    assert all((generate.SCHEMA_DIR / name).is_file() for name in names), "a released schema lost its current file"


@pytest.mark.parametrize("released", RELEASED_FILES, ids=lambda path: path.name)
def test_current_schema_only_adds_optional_fields(released: Path) -> None:
    problems = compatibility_problems(load(released), load(generate.SCHEMA_DIR / released.name))
    assert not problems, f"{released.name}: breaking change within v1 (new topic version needed): {problems}"


def test_alert_snapshot_url_is_an_additive_optional_field() -> None:
    old, new = load(RELEASED / "alert.v1.schema.json"), load(generate.SCHEMA_DIR / "alert.v1.schema.json")
    assert "snapshot_url" not in old["properties"] and "snapshot_url" in new["properties"]
    assert "snapshot_url" not in new.get("required", [])


ALERT = load(RELEASED / "alert.v1.schema.json")


def _edited(edit: str) -> dict:
    schema = copy.deepcopy(ALERT)
    if edit == "add optional":
        schema["properties"]["extra"] = {"type": "string"}
    elif edit == "reword a description":
        schema["properties"]["message"]["description"] = "reworded"
    elif edit == "remove a property":
        del schema["properties"]["message"]
    elif edit == "require a new property":
        schema["properties"]["extra"] = {"type": "string"}
        schema["required"].append("extra")
    elif edit == "require an optional property":
        schema["required"].append("zone")
    elif edit == "change a type":
        schema["properties"]["frame_seq"] = {"type": "string"}
    elif edit == "tighten a nested constraint":
        schema["$defs"]["BoundingBox"]["properties"]["x1"]["minimum"] = 0
    elif edit == "remove a definition":
        del schema["$defs"]["Severity"]
    return schema


@pytest.mark.parametrize(
    ("edit", "breaking"),
    [
        ("add optional", False),
        ("reword a description", False),
        ("remove a property", True),
        ("require a new property", True),
        ("require an optional property", True),
        ("change a type", True),
        ("tighten a nested constraint", True),
        ("remove a definition", True),
    ],
)
def test_the_rule_tells_additive_from_breaking(edit: str, breaking: bool) -> None:
    assert bool(compatibility_problems(ALERT, _edited(edit))) is breaking
