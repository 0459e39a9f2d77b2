"""Lines, scene zones and track rules in the rules YAML: a good file reads every field; a bad
one fails naming the file, the field and the problem, like the frame rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from schemas.rules import CountRule, CrossingDirection, CrossingRule, DwellRule
from streams.config_files import ConfigFileError, load_rules

LINE = {"name": "door", "start": [0.1, 0.5], "end": [0.9, 0.5]}
ZONE = {"name": "queue", "points": [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]}
DWELL = {
    "id": "loiter",
    "kind": "dwell",
    "description": "Loitering",
    "classes": ["person"],
    "zone": "queue",
    "min_dwell_s": 30,
}
CROSS = {
    "id": "entry",
    "kind": "crossing",
    "description": "Entered",
    "classes": ["person"],
    "line": "door",
    "direction": "in",
}
COUNT = {"id": "rush", "kind": "count", "description": "Rush", "classes": ["person"], "line": "door",
         "period_s": 60, "above": 20}  # fmt: skip
FRAME_RULE = {"id": "entry-frame", "description": "Person", "classes": ["person"]}


def write(tmp_path: Path, **sections: object) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": [FRAME_RULE]} | sections), encoding="utf-8")
    return path


def test_good_file_reads_every_field(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, lines=[LINE], zones=[ZONE], track_rules=[DWELL, CROSS, COUNT]))
    assert [line.name for line in rules.lines] == ["door"] and rules.lines[0].start == (0.1, 0.5)
    assert [zone.name for zone in rules.zones] == ["queue"]
    dwell, cross, count = rules.track_rules
    assert isinstance(dwell, DwellRule) and (dwell.zone, dwell.min_dwell_s) == ("queue", 30.0)
    assert isinstance(cross, CrossingRule) and cross.direction is CrossingDirection.IN
    assert isinstance(count, CountRule) and (count.period_s, count.above, count.direction.value) == (60.0, 20, "any")


def test_files_without_track_sections_still_load(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path))
    assert (rules.lines, rules.zones, rules.track_rules) == ((), (), ())


@pytest.mark.parametrize(
    ("sections", "field", "problem"),
    [
        ({"lines": [LINE | {"end": LINE["start"]}]}, "lines[0]", "start and end must differ"),
        ({"lines": [LINE | {"end": [1.5, 0.5]}]}, "lines[0]", "normalized coordinates must lie in [0, 1]"),
        ({"lines": [LINE, LINE]}, "lines[1].name", "duplicate line name, already used by [0]"),
        ({"lines": [LINE | {"colour": "red"}]}, "lines[0].colour", "unknown field"),
        ({"zones": [ZONE, ZONE]}, "zones[1].name", "duplicate zone name"),
        ({"zones": [ZONE | {"points": [[0, 0], [1, 1], [1, 0], [0, 1]]}]}, "zones[0].points", "not simple"),
        ({"track_rules": [DWELL]}, "track_rules[0].zone", "unknown zone (not in `zones`: none)"),
        ({"lines": [LINE], "track_rules": [CROSS | {"line": "gate"}]}, "track_rules[0].line", "unknown line"),
        ({"zones": [ZONE], "track_rules": [DWELL | {"min_dwell_s": 0}]}, "track_rules[0].dwell.min_dwell_s",
         "greater than 0"),
        ({"lines": [LINE], "track_rules": [CROSS | {"direction": "sideways"}]},
         "track_rules[0].crossing.direction", "'in', 'out' or 'any'"),
        ({"lines": [LINE], "track_rules": [COUNT | {"above": -1}]}, "track_rules[0].count.above",
         "greater than or equal to 0"),
        ({"lines": [LINE], "track_rules": [COUNT | {"classes": ["persn"]}]}, "track_rules[0].count.classes",
         "did you mean 'person'?"),
        ({"track_rules": [{"id": "x", "kind": "speeding"}]}, "track_rules[0]", "does not match any of the expected"),
        ({"lines": [LINE], "track_rules": [CROSS, CROSS]}, "track_rules[1].id",
         "duplicate rule id, already used in track_rules[0]"),
        ({"lines": [LINE], "track_rules": [CROSS | {"id": "entry-frame"}]}, "track_rules[0].id",
         "duplicate rule id, already used in rules"),
    ],
)  # fmt: skip
def test_bad_track_sections_name_file_field_and_problem(
    tmp_path: Path, sections: dict, field: str, problem: str
) -> None:
    path = write(tmp_path, **sections)
    with pytest.raises(ConfigFileError) as caught:
        load_rules(path)
    assert f"{path}: {field}: " in str(caught.value)
    assert problem in str(caught.value)
