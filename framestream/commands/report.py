"""``framestream report``: the main dashboard panels rendered from ClickHouse to PNG files and one
self-contained HTML page, plus a few named analyst queries -- for people without Grafana at hand.

The plots run the dashboards' own SQL (``infra/grafana/dashboards``), expanded by the same
expander the dashboard tests use, with every variable on "All". With chDB, run it while no
persist worker holds the data directory (one process per chDB path).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import logging
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402
from clickhouse_connect.driver.client import Client  # noqa: E402
from clickhouse_connect.driver.exceptions import OperationalError  # noqa: E402

from framestream.grafana_sql import (  # noqa: E402
    Dashboard,
    Panel,
    TimeRange,
    all_values,
    column_kind,
    expand,
    load_dashboards,
)
from framestream.settings import Settings  # noqa: E402
from streams.sinks.clickhouse_db import ChdbBusyError, connect  # noqa: E402
from streams.snapshots import SnapshotReader, read_snapshot, thumbnail  # noqa: E402

log = logging.getLogger(__name__)

HEADLINES = (
    ("framestream-operations", "Frames processed"),
    ("framestream-operations", "End-to-end latency p95"),
    ("framestream-detections", "Detections"),
    ("framestream-alerts", "Alerts"),
    ("framestream-operations", "Dead letters"),
    ("framestream-scene", "Tracks"),
    ("framestream-scene", "Line crossings"),
    ("framestream-classifier", "Defect rate"),
)
PLOTS = (
    ("framestream-operations", "Frames per second by camera"),
    ("framestream-operations", "End-to-end latency (capture → stored)"),
    ("framestream-operations", "Triton latency"),
    ("framestream-operations", "Consumer lag (queue time p95) by camera"),
    ("framestream-operations", "Dead letters per minute by stage"),
    ("framestream-detections", "Detections by class"),
    ("framestream-detections", "Top cameras"),
    ("framestream-detections", "Class mix"),
    ("framestream-detections", "Confidence distribution"),
    ("framestream-alerts", "Alerts by rule"),
    ("framestream-alerts", "Alerts by severity"),
    ("framestream-model-health", "Mean confidence per hour by class"),
    ("framestream-model-health", "Frames with no detections per hour"),
    ("framestream-scene", "Line crossings per hour"),
    ("framestream-scene", "Zone occupancy over time"),
    ("framestream-scene", "Dwell time per track"),
    ("framestream-classifier", "Defect rate per camera"),
)
# Analyst queries, in the dashboards' macro dialect so the same expander fills the time range.
ANALYST_QUERIES = {
    "Busiest cameras": """
        SELECT camera_id, uniqExactMerge(frames) AS frames_stored,
               round(frames_stored / greatest(dateDiff('second', $__fromTime, $__toTime), 1), 2) AS mean_fps,
               round(100 * uniqExactIfMerge(empty_frames) / greatest(frames_stored, 1), 1) AS empty_pct
        FROM frames_per_minute WHERE $__timeFilter(minute)
        GROUP BY camera_id ORDER BY frames_stored DESC LIMIT 10""",
    "Hourly class mix": """
        SELECT toStartOfHour(minute) AS hour, class_name, uniqExactMerge(detections) AS detections
        FROM detections_per_minute WHERE $__timeFilter(minute)
        GROUP BY hour, class_name ORDER BY hour DESC, detections DESC LIMIT 48""",
    "Alert counts by rule": """
        SELECT rule_id, toString(severity) AS severity, uniqExact(alert_id) AS alerts,
               uniqExact(camera_id) AS cameras, max(raised_at) AS last_raised
        FROM alerts WHERE $__timeFilter(captured_at)
        GROUP BY rule_id, severity ORDER BY alerts DESC LIMIT 20""",
    "Line crossings per hour, in and out": """
        SELECT hour, camera_id, line,
               uniqExactMergeIf(crossings, direction = 'in') AS crossed_in,
               uniqExactMergeIf(crossings, direction = 'out') AS crossed_out,
               crossed_in - crossed_out AS net_in
        FROM line_crossings_per_hour WHERE $__timeFilter(hour)
        GROUP BY hour, camera_id, line ORDER BY hour DESC, camera_id, line LIMIT 48""",
    "Longest zone visits": """
        SELECT camera_id, zone, track_id, class_name, entered_at, round(dwell_s, 1) AS dwell_s, toString(ended) AS ended
        FROM zone_visits WHERE $__timeFilter(captured_at)
        ORDER BY dwell_s DESC LIMIT 10""",
    "Dwell per track by class": """
        SELECT class_name, count() AS tracks, round(quantile(0.5)(dwell_s), 1) AS median_s,
               round(quantile(0.9)(dwell_s), 1) AS p90_s, round(max(dwell_s), 1) AS max_s
        FROM (SELECT track_id, anyLast(class_name) AS class_name,
                     dateDiff('millisecond', min(first_seen), max(last_seen)) / 1000 AS dwell_s
              FROM track_spans GROUP BY camera_id, track_id HAVING $__timeFilter(min(first_seen)))
        GROUP BY class_name ORDER BY tracks DESC""",
    "Fastest tracks": """
        SELECT track_id, camera_id, anyLast(class_name) AS class_name, round(max(speed_px_s), 1) AS max_px_s,
               round(avg(speed_px_s), 1) AS mean_px_s, count() AS frames
        FROM track_points WHERE $__timeFilter(captured_at) AND speed_px_s IS NOT NULL
        GROUP BY track_id, camera_id ORDER BY max_px_s DESC LIMIT 10""",
    "Defect rate per camera and classifier version": """
        SELECT camera_id, model_name, model_version, count() AS frames, countIf(label = 'defect') AS defects,
               round(100 * defects / frames, 1) AS defect_pct, max(captured_at) AS last_frame
        FROM classifications WHERE $__timeFilter(captured_at)
        GROUP BY camera_id, model_name, model_version ORDER BY defect_pct DESC LIMIT 20""",
    "Slowest frames": """
        SELECT event_id, captured_at, store_latency_ms, detect_latency_ms, queue_ms, batch_wait_ms, triton_ms
        FROM frames WHERE $__timeFilter(captured_at)
        ORDER BY store_latency_ms DESC LIMIT 10""",
}
# The newest alerts with a snapshot, shown as thumbnails under the plots.
SNAPSHOTS_QUERY = """
    SELECT snapshot_url, raised_at, rule_id, camera_id, toString(severity) AS severity
    FROM alerts FINAL WHERE $__timeFilter(captured_at) AND snapshot_url IS NOT NULL
    ORDER BY raised_at DESC LIMIT 12"""
_DURATION = re.compile(r"^(\d+)([smhd])$")


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    kinds: list[str]
    rows: list[tuple]


@dataclass(frozen=True)
class RenderedPlot:
    title: str
    file: Path
    png: bytes


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="render the main dashboards to PNG files and one HTML page")
    parser.add_argument("--out", type=Path, help="output folder (default: <data_dir>/report)")
    parser.add_argument(
        "--since",
        type=parse_duration,
        default=timedelta(hours=24),
        help="how far back, e.g. 90m, 24h, 7d (default 24h)",
    )
    parser.set_defaults(handler=run)


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90m, 24h or 7d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
    return timedelta(**{unit: int(match[1])})


def run(args: argparse.Namespace, settings: Settings) -> int:
    out = args.out or settings.data_dir / "report"
    time_range = TimeRange.last(args.since)
    try:
        client = connect(settings.clickhouse, settings.data_dir)
    except (ChdbBusyError, OperationalError) as error:
        print(f"framestream report: cannot open ClickHouse: {error}", file=sys.stderr)
        return 2
    try:
        page = build_report(client, time_range, out, snapshot_reader=SnapshotReader.from_settings())
    finally:
        client.close()
    print(f"report: {page}")
    return 0


def build_report(
    client: Client, time_range: TimeRange, out: Path, snapshot_reader: SnapshotReader | None = None
) -> Path:
    """Write the PNGs and ``report.html`` into ``out``; return the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    dashboards = load_dashboards()
    interval_s = time_range.interval_s(max_points=120)
    values = {uid: all_values(client, dashboard, time_range, interval_s) for uid, dashboard in dashboards.items()}
    headlines, plots, notes = [], [], []
    for uid, title in HEADLINES:
        result = _run_panel(client, dashboards[uid], dashboards[uid].panel(title), time_range, interval_s, values[uid])
        headlines.append((title, _headline_value(result)))
    for number, (uid, title) in enumerate(PLOTS, start=1):
        panel = dashboards[uid].panel(title)
        result = _run_panel(client, dashboards[uid], panel, time_range, interval_s, values[uid])
        if result is None or not result.rows:
            notes.append(f"{title}: no data in the range")
            continue
        plots.append(_save_plot(panel, result, out / f"{number:02d}-{_slug(title)}.png"))
    tables = {name: _query(client, expand(sql, time_range, interval_s, {})) for name, sql in ANALYST_QUERIES.items()}
    snapshots = _snapshots(client, time_range, interval_s, snapshot_reader or SnapshotReader())
    page = out / "report.html"
    page.write_text(_html(time_range, headlines, plots, tables, notes, snapshots), encoding="utf-8")
    log.info("report written", extra={"path": str(page), "plots": len(plots)})
    return page


def _run_panel(
    client: Client, dashboard: Dashboard, panel: Panel, time_range: TimeRange, interval_s: int, values: dict
) -> QueryResult | None:
    if any(not selected for selected in values.values()):
        return None  # a variable with no value: nothing in the range to plot
    return _query(client, expand(panel.sql, time_range, interval_s, values))


def _query(client: Client, sql: str) -> QueryResult:
    result = client.query(sql)
    kinds = [column_kind(column_type.name) for column_type in result.column_types]
    return QueryResult(list(result.column_names), kinds, list(result.result_rows))


def _headline_value(result: QueryResult | None) -> str:
    if result is None or not result.rows or "number" not in result.kinds:
        return "–"
    value = result.rows[0][result.kinds.index("number")]
    if value is None or value != value:  # NULL or NaN: nothing measured
        return "–"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _save_plot(panel: Panel, result: QueryResult, path: Path) -> RenderedPlot:
    figure, axes = plt.subplots(figsize=(9, 3.6), dpi=100)
    if panel.type == "timeseries":
        _plot_series(axes, panel, result)
    elif panel.type == "piechart":
        _plot_pie(axes, result)
    elif panel.type == "histogram":
        axes.hist([row[0] for row in result.rows], bins=30, color="#3274d9")
        axes.set_xlabel(result.columns[0])
    else:
        _plot_bars(axes, result)
    axes.set_title(panel.title, loc="left", fontsize=11)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    path.write_bytes(buffer.getvalue())
    return RenderedPlot(panel.title, path, buffer.getvalue())


def _plot_series(axes: plt.Axes, panel: Panel, result: QueryResult) -> None:
    """Long format (time, label..., value...) -> one series per label and value column, as Grafana does."""
    series = _series(result)
    if panel.draw_style == "bars":
        _stacked_bars(axes, series)
    else:
        for name, points in sorted(series.items()):
            xs, ys = zip(*sorted(points.items()), strict=False)
            axes.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=name)
    axes.grid(alpha=0.3)
    axes.tick_params(axis="x", labelsize=8)
    if len(series) > 1:
        axes.legend(fontsize=7, ncol=min(4, len(series)), loc="upper left")


def _series(result: QueryResult) -> dict[str, dict]:
    labels = [i for i, kind in enumerate(result.kinds) if kind == "string"]
    numbers = [i for i, kind in enumerate(result.kinds) if kind == "number"]
    series: dict[str, dict] = {}
    for row in result.rows:
        prefix = " ".join(str(row[i]) for i in labels)
        for i in numbers:
            name = f"{prefix} {result.columns[i]}".strip() if len(numbers) > 1 or not prefix else prefix
            series.setdefault(name, {})[row[0]] = row[i] or 0
    return series


def _stacked_bars(axes: plt.Axes, series: dict[str, dict]) -> None:
    times = sorted({moment for points in series.values() for moment in points})
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    width_days = 0.8 * (min(gaps) if gaps else 60.0) / 86400.0  # matplotlib dates are in days
    bottom = [0.0] * len(times)
    for name, points in sorted(series.items()):
        heights = [points.get(moment, 0) for moment in times]
        axes.bar(times, heights, width=width_days, bottom=bottom, label=name)
        bottom = [b + h for b, h in zip(bottom, heights, strict=False)]


def _plot_bars(axes: plt.Axes, result: QueryResult) -> None:
    label, value = result.kinds.index("string"), result.kinds.index("number")
    rows = result.rows[::-1]  # largest first from the top
    axes.barh([str(row[label]) for row in rows], [row[value] for row in rows], color="#3274d9")
    axes.set_xlabel(result.columns[value])
    axes.grid(axis="x", alpha=0.3)


def _plot_pie(axes: plt.Axes, result: QueryResult) -> None:
    label, value = result.kinds.index("string"), result.kinds.index("number")
    rows = sorted(result.rows, key=lambda row: row[value], reverse=True)
    head, tail = rows[:7], rows[7:]
    names = [str(row[label]) for row in head] + (["other"] if tail else [])
    sizes = [row[value] for row in head] + ([sum(row[value] for row in tail)] if tail else [])
    axes.pie(sizes, labels=names, autopct="%1.0f%%", textprops={"fontsize": 8})
    axes.axis("equal")


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _snapshots(client: Client, time_range: TimeRange, interval_s: int, reader: SnapshotReader) -> str:
    """Thumbnails of the newest snapshots: embedded (file://, s3://) or referenced (http(s)://)."""
    result = _query(client, expand(SNAPSHOTS_QUERY, time_range, interval_s, {}))
    figures = []
    for url, raised_at, rule_id, camera_id, severity in result.rows:
        caption = html.escape(f"{raised_at:%Y-%m-%d %H:%M:%S} · {severity} · {rule_id} · {camera_id}")
        if url.startswith(("http://", "https://")):
            source = html.escape(url, quote=True)
        else:
            data = read_snapshot(url, reader)
            if data is None:
                figures.append(f'<figure class="thumb"><p>snapshot gone</p><figcaption>{caption}</figcaption></figure>')
                continue
            source = "data:image/jpeg;base64," + base64.b64encode(thumbnail(data)).decode("ascii")
        figures.append(
            f'<figure class="thumb"><a href="{html.escape(url, quote=True)}"><img alt="{html.escape(rule_id)}" '
            f'src="{source}"></a><figcaption>{caption}</figcaption></figure>'
        )
    return f"<h1>Alert snapshots</h1><div>{''.join(figures)}</div>" if figures else ""


def _html(
    time_range: TimeRange,
    headlines: list,
    plots: list[RenderedPlot],
    tables: dict,
    notes: list[str],
    snapshots: str = "",
) -> str:
    figures = "".join(
        f'<figure><img alt="{html.escape(plot.title)}" src="data:image/png;base64,'
        f'{base64.b64encode(plot.png).decode("ascii")}"></figure>'
        for plot in plots
    )
    cards = "".join(
        f'<div class="card"><b>{html.escape(value)}</b><span>{html.escape(title)}</span></div>'
        for title, value in headlines
    )
    sections = "".join(f"<h2>{html.escape(name)}</h2>{_html_table(result)}" for name, result in tables.items())
    missing = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>framestream report</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}figure{{margin:1em 0}}img{{max-width:100%}}
.card{{display:inline-block;margin:0 1.5em 1em 0}}.card b{{display:block;font-size:1.8em}}
.card span{{color:#666;font-size:.9em}}table{{border-collapse:collapse;font-size:.85em;margin-bottom:1.5em}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}th{{background:#f3f3f3}}
.thumb{{display:inline-block;width:240px;margin:0 1em 1em 0;vertical-align:top;font-size:.8em}}</style></head>
<body><h1>framestream report</h1>
<p>{time_range.start:%Y-%m-%d %H:%M} – {time_range.end:%Y-%m-%d %H:%M} UTC · generated {generated}</p>
<div>{cards}</div>{figures}{f"<ul>{missing}</ul>" if missing else ""}{snapshots}<h1>Analyst queries</h1>{sections}
</body></html>
"""


def _html_table(result: QueryResult) -> str:
    if not result.rows:
        return "<p>no rows</p>"
    head = "".join(f"<th>{html.escape(column)}</th>" for column in result.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row) + "</tr>" for row in result.rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return "" if value is None else str(value)
