"""The Grafana expander mirrors grafana-clickhouse-datasource's macros and Grafana's variable formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from framestream.grafana_sql import TimeRange, expand, expand_macros, expand_variables, format_values, load_dashboards

START = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)  # 1735732800
RANGE = TimeRange(START, START + timedelta(hours=1, milliseconds=500))  # to: 1735736400.5


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        ("$__timeFilter(ts)", "ts >= toDateTime(1735732800) AND ts <= toDateTime(1735736400)"),
        (
            "$__timeFilter_ms(ts)",
            "ts >= fromUnixTimestamp64Milli(1735732800000) AND ts <= fromUnixTimestamp64Milli(1735736400500)",
        ),
        ("$__fromTime AND $__toTime", "toDateTime(1735732800) AND toDateTime(1735736400)"),
        (
            "$__fromTime_ms, $__toTime_ms",
            "fromUnixTimestamp64Milli(1735732800000), fromUnixTimestamp64Milli(1735736400500)",
        ),
        ("$__dateFilter(d)", "d >= toDate('2025-01-01') AND d <= toDate('2025-01-01')"),
        (
            "$__dt(d, t)",
            "(d >= toDate('2025-01-01') AND d <= toDate('2025-01-01')) AND "
            "(t >= toDateTime(1735732800) AND t <= toDateTime(1735736400))",
        ),
        ("$__timeInterval(ts)", "toStartOfInterval(toDateTime(ts), INTERVAL 30 second)"),
        (
            "$__timeInterval(toStartOfMinute(ts))",
            "toStartOfInterval(toDateTime(toStartOfMinute(ts)), INTERVAL 30 second)",
        ),
        ("x / $__interval_s", "x / 30"),
        ("SELECT '$' AS dollar", "SELECT '$' AS dollar"),
    ],
)
def test_macros_expand_as_the_plugin_does(sql: str, expanded: str) -> None:
    assert expand_macros(sql, RANGE, 30) == expanded


def test_interval_is_at_least_one_second() -> None:
    assert expand_macros("$__interval_s", RANGE, 0) == "1"


@pytest.mark.parametrize(
    ("sql", "problem"),
    [("$__timeFilter(a, b)", "expects 1 argument"), ("$__nope", "unknown macro"), ("$__timeFilter(ts", "unbalanced")],
)
def test_bad_macros_are_errors(sql: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        expand_macros(sql, RANGE, 30)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("singlequote", "'cam-1','it\\'s'"),
        ("doublequote", '"cam-1","it\'s"'),
        ("sqlstring", "'cam-1','it''s'"),
        ("csv", "cam-1,it's"),
        ("pipe", "cam-1|it's"),
    ],
)
def test_multi_value_formats(fmt: str, expected: str) -> None:
    assert format_values(["cam-1", "it's"], fmt) == expected


def test_variables_in_every_syntax_and_unknown_names_left_alone() -> None:
    values = {"camera": ["a", "b"], "rule": ["r1"]}
    sql = "c IN (${camera:singlequote}) AND r = '$rule' AND s = '[[rule]]' AND $other AND $__interval_s"
    assert expand_variables(sql, values) == "c IN ('a','b') AND r = 'r1' AND s = 'r1' AND $other AND $__interval_s"


def test_a_multi_value_variable_without_format_is_refused() -> None:
    with pytest.raises(ValueError, match=r"needs an explicit format"):
        expand_variables("camera_id IN ($camera)", {"camera": ["a", "b"]})


def test_a_variable_with_no_value_is_refused() -> None:
    with pytest.raises(ValueError, match="has no value"):
        expand_variables("${camera:singlequote}", {"camera": []})


def test_expand_replaces_variables_before_macros() -> None:
    sql = "SELECT 1 WHERE $__timeFilter(ts) AND camera_id IN (${camera:singlequote})"
    assert expand(sql, RANGE, 10, {"camera": ["x"]}) == (
        "SELECT 1 WHERE ts >= toDateTime(1735732800) AND ts <= toDateTime(1735736400) AND camera_id IN ('x')"
    )


def test_time_range_must_be_ordered_and_aware() -> None:
    with pytest.raises(ValueError):
        TimeRange(START, START)
    with pytest.raises(ValueError):
        TimeRange(START.replace(tzinfo=None), START.replace(tzinfo=None) + timedelta(hours=1))
    assert TimeRange(START, START + timedelta(hours=5)).interval_s(300) == 60


def test_dashboards_load_with_one_sql_target_per_panel_on_the_pinned_datasource() -> None:
    dashboards = load_dashboards()
    assert set(dashboards) == {
        "framestream-operations",
        "framestream-detections",
        "framestream-alerts",
        "framestream-model-health",
        "framestream-scene",
        "framestream-classifier",
    }
    for dashboard in dashboards.values():
        document = json.loads(Path(dashboard.path).read_text())
        assert {variable.name for variable in dashboard.variables} >= {"camera"}
        for raw in document["panels"]:
            assert raw["datasource"]["uid"] == "framestream-clickhouse"
            assert raw["targets"][0]["datasource"]["uid"] == "framestream-clickhouse"
        for panel in dashboard.panels:
            assert panel.format == (0 if panel.type == "timeseries" else 1), panel.title
            assert "$__timeFilter(" in panel.sql, f"{panel.title} ignores the time picker"


def test_a_panel_without_a_sql_target_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text(
        json.dumps({"uid": "x", "title": "x", "panels": [{"type": "stat", "title": "t"}]})
    )
    with pytest.raises(ValueError, match="needs exactly one target with rawSql"):
        load_dashboards(tmp_path)
