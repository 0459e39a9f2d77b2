"""``framestream report`` on data written by the sink: plots and analyst tables, in one HTML page."""

from __future__ import annotations

import argparse
import base64
import os
import re
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from clickhouse_connect.driver.client import Client

from framestream.commands.report import ANALYST_QUERIES, PLOTS, build_report, parse_duration
from framestream.grafana_sql import TimeRange
from streams.sinks.clickhouse import ClickHouseSink
from tests.factories import BASE_TIME
from tests.integration.test_dashboards import seed_messages

pytestmark = pytest.mark.integration
SEEDED = TimeRange(BASE_TIME - timedelta(minutes=10), BASE_TIME + timedelta(hours=3))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_renders_every_main_panel_and_the_analyst_queries(clickhouse_client: Client, tmp_path: Path) -> None:
    sink = ClickHouseSink(clickhouse_client, clickhouse_client.database)
    for message in seed_messages():
        sink.add(message)
    sink.flush()
    page = build_report(clickhouse_client, SEEDED, tmp_path)
    document = page.read_text()
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == len(PLOTS)
    assert all(path.read_bytes().startswith(PNG_MAGIC) for path in pngs)
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', document)
    assert len(embedded) == len(PLOTS)
    assert {base64.b64decode(data) for data in embedded} == {path.read_bytes() for path in pngs}
    for name in ANALYST_QUERIES:
        assert f"<h2>{name}</h2><table>" in document, f"{name} has no rows"
    assert "<b>160</b><span>Frames processed</span>" in document
    assert "<b>6</b><span>Dead letters</span>" in document
    assert "no data in the range" not in document


def test_report_on_an_empty_range_says_so_instead_of_failing(clickhouse_client: Client, tmp_path: Path) -> None:
    page = build_report(clickhouse_client, SEEDED, tmp_path)
    document = page.read_text()
    assert "no data in the range" in document
    assert not list(tmp_path.glob("*.png"))
    assert "<b>–</b><span>End-to-end latency p95</span>" in document


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("24h", timedelta(days=1)),
        ("7d", timedelta(days=7)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_since_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["24", "1w", "-3h", "h"])
def test_bad_since_durations_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a duration"):
        parse_duration(text)


def test_report_command_end_to_end(tmp_path: Path) -> None:
    """The CLI as an operator runs it, in its own process (it owns its chDB path there)."""
    env = {**os.environ, "FRAMESTREAM_DATA_DIR": str(tmp_path / "data")}
    env.pop("FRAMESTREAM_CLICKHOUSE_DSN", None)
    seed = textwrap.dedent("""
        from streams.sinks.clickhouse_db import connect, migrate
        from framestream.settings import Settings
        from streams.sinks.clickhouse import ClickHouseSink
        from tests.integration.test_dashboards import seed_messages
        settings = Settings()
        client = connect(settings.clickhouse, settings.data_dir)
        migrate(client, settings.clickhouse.database, 3650)
        sink = ClickHouseSink(client, settings.clickhouse.database)
        for message in seed_messages():
            sink.add(message)
        sink.close()
        client.close()
    """)
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", seed], env=env, cwd=repo, check=True, timeout=120)
    since = f"{(SEEDED.end.now(SEEDED.end.tzinfo) - SEEDED.start).days + 2}d"
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "framestream.cli", "report", "--since", since, "--out", str(out)],
        env=env,
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"report: {out / 'report.html'}"
    assert len(list(out.glob("*.png"))) == len(PLOTS)


def test_report_shows_snapshot_thumbnails(clickhouse_client: Client, tmp_path: Path) -> None:
    """Stored snapshots are embedded as thumbnails, http(s) ones referenced, pruned ones named as gone."""
    import cv2

    from tests.factories import make_alert

    photo = cv2.imread(str(Path(__file__).resolve().parents[1] / "data" / "photos" / "dog.jpg"))
    stored = tmp_path / "snapshots" / "cam-9" / "late:cam-9:1.jpg"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(cv2.imencode(".jpg", photo)[1].tobytes())
    late = BASE_TIME + timedelta(minutes=170)
    extra = [
        make_alert("late", "cam-9", 1, captured_at=late, snapshot_url=stored.resolve().as_uri()),
        make_alert("late", "cam-9", 2, captured_at=late, snapshot_url=(tmp_path / "pruned.jpg").as_uri()),
    ]
    sink = ClickHouseSink(clickhouse_client, clickhouse_client.database)
    for message in [*seed_messages(), *extra]:
        sink.add(message)
    sink.flush()
    document = build_report(clickhouse_client, SEEDED, tmp_path / "report").read_text()
    section = document[document.index("<h1>Alert snapshots</h1>") : document.index("<h1>Analyst queries</h1>")]
    assert section.count('<figure class="thumb">') == 12
    [embedded] = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', section)
    thumb = cv2.imdecode(np.frombuffer(base64.b64decode(embedded), np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape[1] == 240 and abs(thumb.shape[0] - 240 * photo.shape[0] / photo.shape[1]) <= 1
    assert section.count("snapshot gone") == 1
    assert section.count('src="https://snapshots.example/') == 10
