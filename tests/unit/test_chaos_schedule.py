"""The chaos harness's pure parts: the seeded schedule, fault-kind and duration parsing, the
reference alert computation and the crash-loop rule."""

from __future__ import annotations

import argparse

import pytest

from framestream.chaos.invariants import reference_alerts
from framestream.chaos.schedule import ALL_KINDS, FaultKind, build_schedule, parse_kinds, parse_workers
from framestream.commands.chaos import parse_duration
from processors.rules import RuleEvaluator
from schemas.rules import RuleSet
from tests import factories


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    one = build_schedule(seed=1, duration_s=1800)
    assert one == build_schedule(seed=1, duration_s=1800)
    assert one != build_schedule(seed=2, duration_s=1800)


def test_thirty_minutes_every_fifteen_seconds_is_over_a_hundred_faults_of_every_kind() -> None:
    schedule = build_schedule(seed=1, duration_s=1800, min_each=10)
    assert len(schedule) >= 100
    assert all(sum(f.kind is kind for f in schedule) >= 10 for kind in ALL_KINDS)
    assert [f.at_s for f in schedule] == sorted(f.at_s for f in schedule)
    assert all(20 <= f.at_s < 1800 for f in schedule)


def test_a_short_run_still_has_every_kind() -> None:
    schedule = build_schedule(seed=7, duration_s=60, mean_interval_s=30)
    assert {f.kind for f in schedule} == set(ALL_KINDS)


def test_pauses_outlast_the_session_timeout() -> None:
    pauses = [f for f in build_schedule(seed=3, duration_s=1800, session_timeout_s=10) if f.kind is FaultKind.PAUSE]
    assert pauses and all(f.down_s > 10 for f in pauses)


@pytest.mark.parametrize(
    ("text", "kinds"),
    [("kill", (FaultKind.KILL,)), ("kill, broker,kill", (FaultKind.KILL, FaultKind.BROKER))],
)
def test_parse_kinds(text: str, kinds: tuple[FaultKind, ...]) -> None:
    assert parse_kinds(text) == kinds


@pytest.mark.parametrize("text", ["", "kill,explode"])
def test_parse_kinds_rejects_unknown(text: str) -> None:
    with pytest.raises(ValueError, match="choose from kill, pause, triton, broker, malformed"):
        parse_kinds(text)


def test_kills_and_pauses_hit_only_the_chosen_workers() -> None:
    schedule = build_schedule(seed=5, duration_s=600, kinds=(FaultKind.KILL, FaultKind.PAUSE), workers=("persist",))
    assert len(schedule) > 10 and {f.target for f in schedule} == {"persist"}
    everyone = build_schedule(seed=5, duration_s=1800, kinds=(FaultKind.KILL,))
    assert {f.target for f in everyone} == {"ingest", "detect", "alert", "persist"}


def test_parse_workers() -> None:
    assert parse_workers("persist, detect,persist") == ("persist", "detect")
    for text in ("", "persist,triton"):
        with pytest.raises(ValueError, match="choose from ingest, detect, alert, persist"):
            parse_workers(text)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600), ("1.5m", 90)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "5d", "-3m", "m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_reference_alerts_follow_cooldowns_in_capture_order_per_camera() -> None:
    """Frames 0.1 s apart, a 0.25 s cooldown: frames 0, 3, 6, 9 alert, whatever order they arrive in."""
    rules = RuleSet.model_validate(
        {"rules": [{"id": "p", "description": "Person", "classes": ["person"], "cooldown_s": 0.25}]}
    )
    frames = {
        f"cam-{camera}:{seq}": factories.make_frame_detections(
            f"cam-{camera}", seq, [factories.make_detection(detection_id=f"cam-{camera}:{seq}:0")]
        )
        for camera in (1, 2)
        for seq in reversed(range(10))
    }
    expected = {f"p:cam-{camera}:{seq}" for camera in (1, 2) for seq in (0, 3, 6, 9)}
    assert reference_alerts(frames, RuleEvaluator(rules)) == expected
