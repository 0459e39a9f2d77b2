"""SceneTracker (processors/tracking.py): ids per detection, restart semantics (a stored state
resumes to the same ids; replays are skipped; a renumbered camera gets a new generation), the
state codec's allowlist, and the track rules' per-track deduplication."""

from __future__ import annotations

import base64
import pickle
import zlib
from datetime import timedelta

import pytest

from processors.tracking import SceneTracker, TrackerConfig, TrackerState, load_tracker
from schemas.base import utc_now
from schemas.detections import FrameDetections
from schemas.rules import RuleSet
from tests.factories import BASE_TIME, make_detection, make_frame_detections

RULES = {
    "rules": [],
    "lines": [{"name": "mid", "start": [0, 0.5], "end": [1, 0.5]}],
    "zones": [{"name": "bottom", "points": [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]}],
    "track_rules": [
        {"id": "down", "kind": "crossing", "description": "Went in", "classes": ["person"], "line": "mid",
         "direction": "in"},
        {"id": "linger", "kind": "dwell", "description": "Lingers", "classes": ["person"], "zone": "bottom",
         "min_dwell_s": 0.5},
        {"id": "busy", "kind": "count", "description": "Busy", "classes": ["person"], "line": "mid",
         "period_s": 60, "above": 1},
    ],
}  # fmt: skip


def walk(seq: int, camera: str = "cam-1", offset_s: float = 0.0) -> FrameDetections:
    """Two people: A walks down across the middle line (in), B walks up across it (out)."""
    a = (100, 50 + seq * 12, 160, 150 + seq * 12)
    b = (400, 400 - seq * 10, 460, 470 - seq * 10)
    return make_frame_detections(
        camera,
        seq,
        [make_detection("person", 0.9, a), make_detection("person", 0.85, b)],
        captured_at=BASE_TIME + timedelta(seconds=offset_s + seq * 0.1),
    )


def run(frames: list[FrameDetections], tracker: SceneTracker | None = None, state: TrackerState | None = None):
    tracker = tracker or SceneTracker(RuleSet.model_validate(RULES))
    steps = []
    for frame in frames:
        step = tracker.update(frame, state, tracked_at=utc_now())
        state = TrackerState.model_validate_json(step.state.model_dump_json())  # as stored in the table
        steps.append(step)
    return steps, state


def outputs(steps: list) -> list[tuple]:
    """What a step publishes, without the wall-clock fields."""
    return [
        (
            [(o.track_id, o.detection_id) for o in s.tracks.objects],
            [c.crossing_id for c in s.tracks.crossings],
            [v.visit_id for v in s.tracks.visits],
            [a.alert_id for a in s.alerts],
        )
        for s in steps
        if s.tracks is not None
    ]


def test_every_detection_gets_a_stable_track_id() -> None:
    steps, _ = run([walk(seq) for seq in range(30)])
    ids = [[o.track_id for o in s.tracks.objects] for s in steps]
    generation = round(BASE_TIME.timestamp() * 1000)
    assert all(row == [f"cam-1:{generation}:0", f"cam-1:{generation}:1"] for row in ids[:27])


def test_crossings_and_alerts_once_per_track() -> None:
    steps, _ = run([walk(seq) for seq in range(30)])
    crossings = [c.crossing_id.split(":", 2)[2] for s in steps for c in s.tracks.crossings]
    assert crossings == ["0:mid:in:9", "1:mid:out:24"]  # past the 8 px band: bottoms 258 and 230
    g = round(BASE_TIME.timestamp() * 1000)
    alerts = [(s.tracks.frame_seq, a.alert_id) for s in steps for a in s.alerts]
    assert alerts == [
        (5, f"linger:cam-1:{g}:1"),  # B starts in the zone: 0.5 s there on frame 5
        (9, f"down:cam-1:{g}:0"),  # A crosses in; B's crossing is 'out': no alert
        (17, f"linger:cam-1:{g}:0"),  # A enters the zone on frame 12
        (24, f"busy:cam-1:{g}"),  # the minute's 2nd crossing (> 1); the window starts at BASE_TIME
    ]


def test_a_restart_from_the_stored_state_gives_the_same_ids() -> None:
    frames = [walk(seq) for seq in range(30)]
    straight, _ = run(frames)
    first, state = run(frames[:13])
    resumed, _ = run(frames[13:], SceneTracker(RuleSet.model_validate(RULES)), state)  # a new process
    assert outputs(first + resumed) == outputs(straight)


def test_frames_after_a_lagging_state_are_tracked_again_identically() -> None:
    """Outputs delivered but the state not stored: the frames are tracked again from the older state."""
    frames = [walk(seq) for seq in range(20)]
    straight, _ = run(frames)
    first, state = run(frames[:10])
    run(frames[10:13], SceneTracker(RuleSet.model_validate(RULES)), state)  # delivered, then a crash
    again, _ = run(frames[10:], SceneTracker(RuleSet.model_validate(RULES)), state)
    assert outputs(first + again) == outputs(straight)


def test_replayed_frames_are_skipped() -> None:
    steps, state = run([walk(seq) for seq in range(10)])
    replay = SceneTracker(RuleSet.model_validate(RULES)).update(walk(4), state, tracked_at=utc_now())
    assert (replay.outcome, replay.tracks, replay.alerts, replay.state) == ("replayed", None, [], state)


def test_a_camera_numbering_from_zero_again_gets_a_new_generation() -> None:
    steps, state = run([walk(seq) for seq in range(10)])
    later = walk(0, offset_s=3600)
    step = SceneTracker(RuleSet.model_validate(RULES)).update(later, state, tracked_at=utc_now())
    assert step.outcome == "restarted"
    old = {o.track_id for s in steps for o in s.tracks.objects}
    new = {o.track_id for o in step.tracks.objects}
    assert new and not old & new
    assert step.state.generation == round(later.captured_at.timestamp() * 1000)


def test_duplicate_boxes_of_two_classes_make_one_track() -> None:
    box = (100, 100, 160, 250)
    frames = [
        make_frame_detections("cam-1", seq, [make_detection("dog", 0.7, box), make_detection("cat", 0.6, box)])
        for seq in range(3)
    ]
    steps, _ = run(frames)
    assert [[o.track_id is not None for o in s.tracks.objects] for s in steps] == [[True, False]] * 3


def test_empty_frames_and_lost_tracks() -> None:
    frames = [walk(0), walk(1)] + [make_frame_detections("cam-1", seq) for seq in range(2, 40)]
    steps, state = run(frames)
    assert steps[-1].tracks.objects == () and state.tracks == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frame_rate": 0}, "frame_rate"),
        ({"lost_track_s": -1}, "lost_track_s"),
        ({"activation_score": 1.5}, "activation_score"),
        ({"match_iou": -0.1}, "match_iou"),
        ({"duplicate_iou": 2}, "duplicate_iou"),
    ],
)
def test_bad_tracker_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrackerConfig(**kwargs)


class Sneaky:
    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (base64.b64encode(zlib.compress(pickle.dumps(Sneaky()))).decode(), "may not reference builtins.print"),
        (base64.b64encode(zlib.compress(pickle.dumps([1, 2]))).decode(), "holds a list"),
        (base64.b64encode(zlib.compress(pickle.dumps(TrackerConfig))).decode(), "may not reference processors"),
        ("not base64 at all!", "unreadable tracker state"),
    ],
)
def test_stored_tracker_state_is_read_with_an_allowlist(blob: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_tracker(blob)
