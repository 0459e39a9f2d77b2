"""The scene dashboard's headline figures are the seeded track messages' (tests/integration/scene_seed.py);
every panel's shape is checked with the others' in test_dashboards.py."""

from __future__ import annotations

import statistics

import pytest

from framestream.commands.report import ANALYST_QUERIES
from framestream.grafana_sql import expand
from tests.integration.scene_seed import CAMERAS, FRAMES, expected_crossings, track_messages
from tests.integration.test_dashboards import DASHBOARDS, INTERVAL_S, SEEDED, Seeded, all_values, run_panel, seeded

pytestmark = pytest.mark.integration
__all__ = ["seeded"]  # the module-scoped fixture, seeded with track messages too


def panel_rows(seeded: Seeded, title: str, **selected: list[str]) -> tuple[list[str], list]:
    dashboard = DASHBOARDS["framestream-scene"]
    values = all_values(seeded.client, dashboard, SEEDED, INTERVAL_S) | selected
    names, _, rows = run_panel(seeded.client, dashboard.panel(title), SEEDED, values)
    return names, rows


def test_scene_headline_figures(seeded: Seeded) -> None:
    tracks_per_camera = FRAMES // 5
    assert panel_rows(seeded, "Tracks")[1] == [(len(CAMERAS) * tracks_per_camera,)]
    assert panel_rows(seeded, "Tracks", camera=["cam-2"])[1] == [(tracks_per_camera,)]
    assert panel_rows(seeded, "Line crossings")[1] == [(expected_crossings(),)] == [(len(CAMERAS) * tracks_per_camera,)]
    assert panel_rows(seeded, "Peak zone occupancy", zone=["door-area"])[1] == [(2,)]
    # every track is seen on 5 frames 4 minutes apart: 16 minutes first to last
    assert panel_rows(seeded, "Median dwell per track")[1] == [(960.0,)]


def test_crossings_per_hour_add_up_per_line_and_direction(seeded: Seeded) -> None:
    names, rows = panel_rows(seeded, "Line crossings per hour")
    totals: dict[str, int] = {}
    for row in rows:
        totals[row[1]] = totals.get(row[1], 0) + row[2]
    messages = track_messages()
    expected = {
        f"door {direction}": sum(1 for m in messages for c in m.crossings if c.direction.value == direction)
        for direction in ("in", "out")
    }
    assert totals == expected and sum(expected.values()) == expected_crossings()


def test_dwell_distributions(seeded: Seeded) -> None:
    _, rows = panel_rows(seeded, "Dwell time per track")
    assert sorted({row[0] for row in rows}) == [960.0]
    _, visits = panel_rows(seeded, "Zone dwell per visit", zone=["queue"])
    assert len(visits) == len(CAMERAS) * FRAMES // 5 and statistics.mean(v[0] for v in visits) == 720.0


@pytest.mark.parametrize(
    "name",
    ["Line crossings per hour, in and out", "Longest zone visits", "Dwell per track by class", "Fastest tracks"],
)
def test_scene_analyst_queries_of_the_report(seeded: Seeded, name: str) -> None:
    result = seeded.client.query(expand(ANALYST_QUERIES[name], SEEDED, INTERVAL_S, {}))
    assert result.result_rows, name
    if name.startswith("Line crossings"):
        rows = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
        assert sum(r["crossed_in"] + r["crossed_out"] for r in rows) == expected_crossings()
    if name == "Longest zone visits":
        assert result.result_rows[0][result.column_names.index("dwell_s")] == 720.0
