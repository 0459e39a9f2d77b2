"""Every provisioned dashboard panel's SQL, expanded as Grafana would, run against the schema on
data written by the real sink, returning the shape its panel type needs."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from clickhouse_connect.driver.client import Client

from framestream.grafana_sql import Dashboard, Panel, TimeRange, all_values, column_kind, expand, load_dashboards
from schemas import (
    Alert,
    AlertReview,
    FrameClassification,
    FrameDetections,
    HardExample,
    ImageStats,
    ModelAgreement,
    StageTimings,
)
from schemas.alerts import Severity
from schemas.camera_health import CameraState, HealthTrigger
from streams.sinks.clickhouse import ClickHouseSink
from streams.sinks.clickhouse_db import migrate
from tests.factories import (
    BASE_TIME,
    make_alert,
    make_alert_review,
    make_camera_health,
    make_dead_letter,
    make_detection,
    make_frame_detections,
    make_model_alert,
)
from tests.fixtures.clickhouse import TEST_TTL_DAYS, ClickHouseTarget
from tests.integration.scene_seed import track_messages

pytestmark = pytest.mark.integration

DASHBOARDS = load_dashboards()
PANELS = [(dashboard, panel) for dashboard in DASHBOARDS.values() for panel in dashboard.panels]
CAMERAS = ("cam-0", "cam-1", "cam-2", "cam-3")
CLASSES = ("person", "car", "bicycle", "dog")
SEEDED = TimeRange(BASE_TIME - timedelta(minutes=10), BASE_TIME + timedelta(hours=3))
INTERVAL_S = 60


@dataclass(frozen=True)
class Seeded:
    client: Client
    database: str
    frames: int


def seed_messages() -> list:
    """Four cameras, a frame every 4 minutes for 2h40: mixed classes and scores, some empty
    frames, two model versions; alerts of three rules and severities; dead letters of two stages."""
    messages: list = []
    for camera_index, camera in enumerate(CAMERAS):
        for seq in range(40):
            count = (seq + camera_index) % 4  # 0..3 objects, so a quarter of the frames are empty
            detections = [
                make_detection(CLASSES[(seq + i) % len(CLASSES)], 0.36 + ((seq * 7 + i * 13) % 64) / 100)
                for i in range(count)
            ]
            messages.append(
                make_frame_detections(
                    camera,
                    seq,
                    detections,
                    captured_at=BASE_TIME + timedelta(minutes=4 * seq, seconds=camera_index),
                    model_version="1" if seq < 20 else "2",
                    stats=ImageStats(brightness=80.0 + seq, sharpness=100.0 + camera_index),
                    timings=StageTimings(
                        ingest_ms=3.0, queue_ms=5.0 + seq % 7, batch_wait_ms=2.0, triton_ms=20.0 + seq % 11
                    ),
                    classification=verdict(camera_index, seq),
                )
            )
            if count and seq % 3 == 0:
                severity = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)[seq % 9 // 3]
                rule = ("person-in-zone", "vehicle-at-gate", "crowd")[(seq + camera_index) % 3]
                messages.append(
                    make_alert(
                        rule,
                        camera,
                        seq,
                        severity=severity,
                        zone="gate" if seq % 2 else None,
                        captured_at=BASE_TIME + timedelta(minutes=4 * seq, seconds=camera_index),
                        snapshot_url=snapshot_url(rule, camera, seq),
                    )
                )
    for offset in range(6):
        messages.append(
            make_dead_letter(
                "detect" if offset % 2 else "ingest",
                source_offset=offset,
                failed_at=BASE_TIME + timedelta(minutes=15 * offset),
            )
        )
    messages.extend(camera_health_messages())
    messages.extend(model_alert_messages())
    messages.extend(review_messages([m for m in messages if isinstance(m, Alert)]))
    messages.extend(track_messages())  # the scene dashboard's
    messages.extend(hard_example_messages([m for m in messages if isinstance(m, FrameDetections)]))
    messages.extend(agreement_messages([m for m in messages if isinstance(m, FrameDetections)]))
    return messages


def agreement_messages(frames: list) -> list:
    """Shadow mode: every tenth frame compared with candidate detector:2, which finds all but one
    of the served boxes on odd frames and adds one of its own on frames divisible by 20."""
    agreements = []
    for frame in frames:
        if frame.frame_seq % 10:
            continue
        current = len(frame.detections)
        matched = max(0, current - frame.frame_seq // 10 % 2)
        candidate = matched + (frame.frame_seq % 20 == 0)
        agreements.append(
            ModelAgreement(
                agreement_id=f"{frame.event_id}:detector:2",
                event_id=frame.event_id,
                camera_id=frame.camera_id,
                frame_seq=frame.frame_seq,
                captured_at=frame.captured_at,
                current_model=f"detector:{frame.model_version}",
                candidate="detector:2",
                current_objects=current,
                candidate_objects=candidate,
                matched=matched,
                precision=matched / candidate if candidate else 1.0,
                recall=matched / current if current else 1.0,
                mean_iou=0.8 if matched else 0.0,
                iou_threshold=0.5,
                candidate_ms=50.0 + frame.frame_seq,
                compared_at=frame.captured_at + timedelta(seconds=1),
            )
        )
    return agreements


def verdict(camera_index: int, seq: int) -> FrameClassification:
    """A classifier verdict on every seeded frame: every fifth (per camera, shifted) a defect."""
    defect = (seq + camera_index) % 5 == 0
    return FrameClassification(
        label="defect" if defect else "ok",
        class_id=int(defect),
        score=0.6 + (seq % 4) / 10,
        model_name="defects",
        model_version="1",
    )


HARD_REASONS = ("uncertain", "confused", "rare_class", "drifting_camera", "reviewed_false")


def hard_example_messages(frames: list) -> list:
    """Every fifth frame sampled, its reason cycling through all five (frame 0 of each camera twice)."""
    examples = []
    for index, frame in enumerate(f for f in frames if f.frame_seq % 5 == 0):
        reasons = HARD_REASONS[index % 5 : index % 5 + 1] + (("uncertain",) if frame.frame_seq == 0 else ())
        for reason in dict.fromkeys(reasons):
            examples.append(
                HardExample(
                    example_id=f"{frame.event_id}:{reason}",
                    camera_id=frame.camera_id,
                    frame_seq=frame.frame_seq,
                    event_id=frame.event_id,
                    reason=reason,
                    captured_at=frame.captured_at,
                    sampled_at=frame.detected_at,
                    image_uri=None if index % 7 == 0 else f"file:///store/{frame.camera_id}/{frame.frame_seq}.jpg",
                    predictions_uri=f"file:///store/{frame.camera_id}/{frame.frame_seq}.json",
                    width=frame.width,
                    height=frame.height,
                    model_name=frame.model_name,
                    model_version=frame.model_version,
                    predictions=frame.detections,
                )
            )
    return examples


# camera -> (statistic, state, seq of the seeded 4-minute grid): cam-1 and cam-3 end drifting, cam-2 never drifts.
DRIFTS = {
    "cam-0": [("brightness", "started", 10), ("brightness", "ended", 20)],
    "cam-1": [("class_mix", "started", 30)],
    "cam-3": [("sharpness", "started", 5), ("sharpness", "ended", 15), ("sharpness", "started", 35)],
}


def model_alert_messages() -> list:
    return [
        make_model_alert(
            camera,
            statistic,
            1000 + seq,
            state=state,
            captured_at=BASE_TIME + timedelta(minutes=4 * seq, seconds=CAMERAS.index(camera)),
        )
        for camera, events in DRIFTS.items()
        for statistic, state, seq in events
    ]


def review_messages(alerts: list) -> list:
    """Every other alert reviewed by ana (a fifth of them false positives); her first verdict is
    changed an hour later (the latest counts), and bob reviews one alert too."""
    reviews = []
    for index, alert in enumerate(alerts):
        if index % 2 == 0:
            verdict = "false_positive" if index % 5 == 0 else "true_positive"
            reviews.append(
                make_alert_review(alert, verdict, "ana", reviewed_at=alert.raised_at + timedelta(minutes=10))
            )
    first = reviews[0]
    changed = "true_positive" if first.verdict == "false_positive" else "false_positive"
    reviews.append(make_alert_review(alerts[0], changed, "ana", reviewed_at=first.reviewed_at + timedelta(hours=1)))
    reviews.append(make_alert_review(alerts[1], "false_positive", "bob", reviewed_at=alerts[1].raised_at))
    return reviews


def camera_health_messages() -> list:
    """A health report per camera every 4 minutes; each camera goes offline once (report 10) and
    comes back after 100 + 10 * index seconds (report 11); cam-3 ends offline."""
    reports = []
    for camera_index, camera in enumerate(CAMERAS):
        for seq in range(40):
            reported = BASE_TIME + timedelta(minutes=4 * seq, seconds=camera_index)
            fields: dict = {"reported_at": reported, "achieved_fps": 9.0 + camera_index * 0.2}
            state = CameraState.ONLINE
            if seq == 10 or (camera == "cam-3" and seq == 39):
                state = CameraState.OFFLINE
                fields = {"reported_at": reported, "trigger": HealthTrigger.STATE_CHANGE}
            elif seq == 11:
                fields |= {
                    "trigger": HealthTrigger.STATE_CHANGE,
                    "outage_s": 100.0 + 10 * camera_index,
                    "reconnects": 3,
                }
            reports.append(make_camera_health(camera, seq, state=state, **fields))
    return reports


def snapshot_url(rule: str, camera: str, seq: int) -> str | None:
    """Most alerts have a snapshot; every fourth frame's was gone from the topic (NULL)."""
    return None if seq % 4 == 0 else f"https://snapshots.example/{camera}/{rule}:{camera}:{seq}.jpg"


@pytest.fixture(scope="module")
def seeded(clickhouse_target: ClickHouseTarget) -> Iterator[Seeded]:
    """One database for the module, written through ClickHouseSink exactly as the persist stage writes it."""
    database = f"fs_dash_{uuid.uuid4().hex[:10]}"
    client = clickhouse_target.connect()
    migrate(client, database, TEST_TTL_DAYS)
    sink = ClickHouseSink(client, database, max_rows=500)
    for message in seed_messages():
        sink.add(message)
        if sink.should_flush():
            sink.flush()
    sink.flush()
    yield Seeded(client, database, 4 * 40)
    client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    client.close()


def run_panel(
    client: Client, panel: Panel, time_range: TimeRange, values: dict[str, list[str]]
) -> tuple[list[str], list[str], list]:
    result = client.query(expand(panel.sql, time_range, INTERVAL_S, values))
    kinds = [column_kind(column_type.name) for column_type in result.column_types]
    return list(result.column_names), kinds, result.result_rows


def check_shape(panel: Panel, names: list[str], kinds: list[str], rows: list) -> None:
    assert rows, f"{panel.title}: no rows for the seeded data"
    if panel.type in ("timeseries", "heatmap"):
        assert kinds[0] == "time", f"{panel.title}: first column {names[0]} is {kinds[0]}, not a time"
        assert "number" in kinds[1:], f"{panel.title}: no numeric column"
        assert set(kinds[1:]) <= {"number", "string"}, f"{panel.title}: {kinds}"
        if panel.type == "heatmap":
            assert kinds[1:] == ["number"] * (len(kinds) - 1) and len(kinds) >= 3
        times = [row[0] for row in rows]
        assert times == sorted(times), f"{panel.title}: rows not in time order"
    elif panel.type in ("stat", "gauge"):
        assert len(rows) == 1 and "number" in kinds, f"{panel.title}: {len(rows)} rows of {kinds}"
        assert rows[0][kinds.index("number")] is not None
    elif panel.type in ("barchart", "piechart"):
        assert "string" in kinds and "number" in kinds, f"{panel.title}: {kinds}"
    elif panel.type == "histogram":
        assert set(kinds) == {"number"}, f"{panel.title}: {kinds}"
    elif panel.type == "table":
        assert names
    else:
        pytest.fail(f"{panel.title}: no shape rule for panel type {panel.type}")


@pytest.mark.parametrize(("dashboard", "panel"), PANELS, ids=[f"{d.uid}/{p.title}" for d, p in PANELS])
def test_panel_returns_its_shape_with_all_selected(seeded: Seeded, dashboard: Dashboard, panel: Panel) -> None:
    values = all_values(seeded.client, dashboard, SEEDED, INTERVAL_S)
    names, kinds, rows = run_panel(seeded.client, panel, SEEDED, values)
    check_shape(panel, names, kinds, rows)


@pytest.mark.parametrize(("dashboard", "panel"), PANELS, ids=[f"{d.uid}/{p.title}" for d, p in PANELS])
def test_panel_follows_a_multi_value_camera_selection(seeded: Seeded, dashboard: Dashboard, panel: Panel) -> None:
    values = all_values(seeded.client, dashboard, SEEDED, INTERVAL_S)
    values["camera"] = ["cam-1", "cam-3"]
    names, kinds, rows = run_panel(seeded.client, panel, SEEDED, values)
    check_shape(panel, names, kinds, rows)
    if "camera_id" in names:
        assert {row[names.index("camera_id")] for row in rows} <= {"cam-1", "cam-3"}


@pytest.mark.parametrize(("dashboard", "panel"), PANELS, ids=[f"{d.uid}/{p.title}" for d, p in PANELS])
def test_panel_is_bounded_by_the_time_picker(seeded: Seeded, dashboard: Dashboard, panel: Panel) -> None:
    values = all_values(seeded.client, dashboard, SEEDED, INTERVAL_S)
    a_year_before = TimeRange(SEEDED.start - timedelta(days=365), SEEDED.end - timedelta(days=365))
    _, kinds, rows = run_panel(seeded.client, panel, a_year_before, values)
    if panel.type in ("stat", "gauge"):
        value = rows[0][kinds.index("number")]
        assert value is None or value == 0 or math.isnan(value), f"{panel.title}: {value} outside the range"
    else:
        assert rows == []


@pytest.mark.parametrize("dashboard", DASHBOARDS.values(), ids=list(DASHBOARDS))
def test_variable_queries_list_the_seeded_values(seeded: Seeded, dashboard: Dashboard) -> None:
    values = all_values(seeded.client, dashboard, SEEDED, INTERVAL_S)
    assert set(values) == {variable.name for variable in dashboard.variables}
    assert all(variable.multi and variable.include_all for variable in dashboard.variables)
    if "camera" in values:
        assert set(values["camera"]) <= set(CAMERAS) and len(values["camera"]) >= 3
    if "class" in values:
        assert set(values["class"]) == set(CLASSES)
    if "severity" in values:
        assert set(values["severity"]) == {"info", "warning", "critical"}


def test_counts_on_the_dashboards_match_what_was_written(seeded: Seeded) -> None:
    """The headline numbers are the seeded ones, not merely some number."""

    def stat(uid: str, title: str, **selected: list[str]) -> float:
        dashboard = DASHBOARDS[uid]
        values = all_values(seeded.client, dashboard, SEEDED, INTERVAL_S) | selected
        _, kinds, rows = run_panel(seeded.client, dashboard.panel(title), SEEDED, values)
        return rows[0][kinds.index("number")]

    messages = seed_messages()
    frames = [m for m in messages if hasattr(m, "detections")]
    detections = sum(len(frame.detections) for frame in frames)
    empty = sum(1 for frame in frames if not frame.detections)
    assert stat("framestream-operations", "Frames processed") == seeded.frames == len(frames)
    assert stat("framestream-operations", "Frames processed", camera=["cam-2"]) == 40
    assert stat("framestream-operations", "Dead letters") == 6
    assert stat("framestream-classifier", "Classified frames") == len(frames)
    defects = sum(1 for f in frames if f.classification is not None and f.classification.label == "defect")
    assert stat("framestream-classifier", "Defects") == defects
    assert stat("framestream-classifier", "Defect rate") == pytest.approx(100 * defects / len(frames))
    assert stat("framestream-detections", "Detections") == detections
    assert stat("framestream-alerts", "Alerts") == sum(1 for m in messages if isinstance(m, Alert))
    assert stat("framestream-model-health", "Frames with no detections") == pytest.approx(100 * empty / len(frames))
    assert stat("framestream-model-health", "Model versions") == 2


def test_camera_health_on_the_operations_dashboard(seeded: Seeded) -> None:
    dashboard = DASHBOARDS["framestream-operations"]

    def stat(title: str, **selected: list[str]) -> float:
        values = all_values(seeded.client, dashboard, SEEDED, INTERVAL_S) | selected
        _, kinds, rows = run_panel(seeded.client, dashboard.panel(title), SEEDED, values)
        return rows[0][kinds.index("number")]

    assert stat("Cameras online") == 3 and stat("Cameras offline") == 1
    assert stat("Cameras online", camera=["cam-1", "cam-3"]) == 1
    assert stat("Stream reconnects") == sum(r.reconnects for r in camera_health_messages()) == 4 * (2 + 3) + 2
    assert stat("Longest camera outage") == 130.0
    assert stat("Longest camera outage", camera=["cam-0", "cam-1"]) == 110.0
    values = all_values(seeded.client, dashboard, SEEDED, INTERVAL_S)
    names, _, rows = run_panel(seeded.client, dashboard.panel("Camera outages"), SEEDED, values)
    assert sorted(row[names.index("outage_s")] for row in rows) == [100.0, 110.0, 120.0, 130.0]


def test_drift_and_review_precision_on_the_dashboards(seeded: Seeded) -> None:
    def run(uid: str, title: str, **selected: list[str]) -> tuple[list[str], list]:
        dashboard = DASHBOARDS[uid]
        values = all_values(seeded.client, dashboard, SEEDED, INTERVAL_S) | selected
        names, _, rows = run_panel(seeded.client, dashboard.panel(title), SEEDED, values)
        return names, rows

    assert run("framestream-model-health", "Cameras drifting")[1] == [(2,)]
    assert run("framestream-model-health", "Cameras drifting", camera=["cam-0", "cam-2"])[1] == [(0,)]
    assert run("framestream-model-health", "Drifts started")[1] == [(4,)]
    names, rows = run("framestream-model-health", "Drift events")
    assert len(rows) == 6 and {row[names.index("camera_id")] for row in rows} == {"cam-0", "cam-1", "cam-3"}

    reviews = [m for m in seed_messages() if isinstance(m, AlertReview)]
    latest = {r.review_id: r for r in sorted(reviews, key=lambda r: r.reviewed_at)}  # the last verdict wins
    true_positives = sum(r.verdict == "true_positive" for r in latest.values())
    assert run("framestream-alerts", "Reviews")[1] == [(len(latest),)]
    assert run("framestream-alerts", "Precision (reviewed alerts)")[1][0][0] == pytest.approx(
        round(100 * true_positives / len(latest), 1)
    )
    names, rows = run("framestream-alerts", "Precision by rule and camera")
    assert sum(row[names.index("reviewed")] for row in rows) == len(latest)
    assert sum(row[names.index("true_positives")] for row in rows) == true_positives
    cam_1 = [r for r in latest.values() if r.camera_id == "cam-1"]
    _, rows = run("framestream-alerts", "Reviews", camera=["cam-1"])
    assert rows == [(len(cam_1),)]


def test_alert_snapshots_panel_lists_the_stored_urls(seeded: Seeded) -> None:
    dashboard = DASHBOARDS["framestream-alerts"]
    values = all_values(seeded.client, dashboard, SEEDED, INTERVAL_S)
    names, _, rows = run_panel(seeded.client, dashboard.panel("Alert snapshots"), SEEDED, values)
    alerts = [m for m in seed_messages() if isinstance(m, Alert) and m.snapshot_url]
    expected = [a.snapshot_url for a in sorted(alerts, key=lambda a: a.raised_at, reverse=True)][:24]
    assert names[0] == "snapshot" and [row[0] for row in rows] == expected


def test_hard_examples_on_the_model_health_dashboard(seeded: Seeded) -> None:
    dashboard = DASHBOARDS["framestream-model-health"]
    values = all_values(seeded.client, dashboard, SEEDED, INTERVAL_S)
    examples = [m for m in seed_messages() if isinstance(m, HardExample)]
    names, _, rows = run_panel(seeded.client, dashboard.panel("Hard examples per hour by reason"), SEEDED, values)
    by_reason: dict[str, int] = {}
    for row in rows:
        by_reason[row[names.index("reason")]] = by_reason.get(row[names.index("reason")], 0) + row[-1]
    assert by_reason == {r: sum(e.reason.value == r for e in examples) for r in HARD_REASONS}
    names, _, rows = run_panel(seeded.client, dashboard.panel("Hard examples"), SEEDED, values)
    assert len(rows) == len({e.event_id for e in examples})
    first = next(row for row in rows if row[names.index("camera_id")] == "cam-0" and row[names.index("frame_seq")] == 0)
    assert "uncertain" in first[names.index("reasons")].split(", ")


def test_shadow_agreement_on_the_model_health_dashboard(seeded: Seeded) -> None:
    dashboard = DASHBOARDS["framestream-model-health"]
    values = all_values(seeded.client, dashboard, SEEDED, INTERVAL_S)
    agreements = [m for m in seed_messages() if isinstance(m, ModelAgreement)]
    names, _, rows = run_panel(seeded.client, dashboard.panel("Shadow candidates"), SEEDED, values)
    assert sum(row[names.index("frames")] for row in rows) == len(agreements)
    for row in rows:
        mine = [a for a in agreements if a.camera_id == row[names.index("camera_id")]]
        assert row[names.index("precision")] == pytest.approx(sum(a.precision for a in mine) / len(mine), abs=1e-3)
        assert row[names.index("recall")] == pytest.approx(sum(a.recall for a in mine) / len(mine), abs=1e-3)
    names, _, rows = run_panel(seeded.client, dashboard.panel("Shadow candidate agreement per hour"), SEEDED, values)
    assert {row[names.index("candidate")] for row in rows} == {"detector:2"}
