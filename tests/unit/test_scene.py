"""Scene analytics (processors/scene.py): line crossings with direction, zone visits and dwell,
occupancy, speed; bad arguments are ValueErrors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from processors.scene import CountingLine, FrameInfo, Observation, SceneAnalyzer, TrackScene
from schemas.rules import LineConfig, SceneZone
from schemas.tracks import Direction
from tests.factories import BASE_TIME

W, H = 640, 480
# Horizontal line across the middle, drawn left to right: 'in' = moving down the picture.
MID = CountingLine("mid", (0.0, 0.5), (1.0, 0.5), normalized=True)


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        ((100, 200), (100, 300), Direction.IN),  # down across
        ((100, 300), (100, 200), Direction.OUT),  # up across
        ((100, 200), (100, 230), None),  # same side
        ((100, 200), (100, 238), None),  # into the band (8 px): not yet across
        ((100, 300), (100, 245), None),  # band from below
        ((100, 200), (600, 300), Direction.IN),  # diagonal
        ((-50, 200), (-50, 300), None),  # beside the segment's start (x < 0)
    ],
)
def test_crossing_direction(previous: tuple, current: tuple, expected: Direction | None) -> None:
    assert MID.crossing(previous, current, W, H) == expected


@pytest.mark.parametrize(
    ("start", "end", "point", "side"),
    [
        ((0, 240), (640, 240), (10, 300), 1),  # left-to-right line: below is its right
        ((640, 240), (0, 240), (10, 300), -1),  # drawn right to left: below is its left
        ((320, 0), (320, 480), (100, 10), 1),  # drawn downwards: screen-left (x < 320) is its right
        ((0, 240), (640, 240), (10, 245), 0),  # within the band
    ],
)
def test_side_follows_the_drawing_direction(start: tuple, end: tuple, point: tuple, side: int) -> None:
    assert CountingLine("l", start, end, normalized=False).side(point, W, H) == side


@pytest.mark.parametrize(
    ("start", "end", "kwargs", "message"),
    [
        ((0, 0), (0, 0), {"normalized": False}, "must differ"),
        ((0, 0), (1.5, 0), {"normalized": True}, r"\[0, 1\]"),
        ((0, float("nan")), (1, 1), {"normalized": True}, "finite"),
        ((0, 0, 0), (1, 1), {"normalized": True}, "pairs"),
        ((0, 0), (1, 1), {"normalized": True, "band": 0.7}, "band"),
    ],
)
def test_bad_lines(start: tuple, end: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CountingLine("bad", start, end, **kwargs)


def test_previous_point_in_the_band_is_refused() -> None:
    with pytest.raises(ValueError, match="band"):
        MID.crossing((100, 240), (100, 300), W, H)


def test_bad_frame_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        MID.side((0, 0), 0, 480)


def frame(seq: int) -> FrameInfo:
    return FrameInfo("cam-1", seq, BASE_TIME + timedelta(seconds=seq * 0.1), W, H)


def seen(track: str | None, bottom: float, x: float = 100.0) -> Observation:
    """A 40x100 box whose bottom centre is (x + 20, bottom)."""
    return Observation(track, f"d-{track}-{bottom}", "person", 0.9, (x, bottom - 100, x + 40, bottom))


def analyzer() -> SceneAnalyzer:
    lines = [LineConfig(name="mid", start=(0.0, 0.5), end=(1.0, 0.5))]
    zones = [SceneZone(name="bottom", points=((0.0, 0.75), (1.0, 0.75), (1.0, 1.0), (0.0, 1.0)))]
    return SceneAnalyzer(lines, zones)


def run(bottoms: dict[str, list[float]], frames: int) -> list:
    scene, scenes, steps = analyzer(), {}, []
    for seq in range(frames):
        observations = [seen(t, b[seq]) for t, b in bottoms.items() if seq < len(b)]
        alive = {t for t, b in bottoms.items() if seq < len(b) + 3}  # lost 3 frames after the last sighting
        step = scene.observe(frame(seq), observations, scenes, alive)
        scenes = step.scenes
        steps.append(step)
    return steps


@pytest.mark.parametrize(
    ("bottoms", "ins", "outs"),
    [
        ([100, 200, 300, 400], 1, 0),
        ([400, 300, 200, 100], 0, 1),
        ([200, 300, 200, 300, 200], 2, 2),  # back and forth: every pass counts
        ([230, 236, 244, 237, 243, 250, 260], 1, 0),  # jitter in the band around 240: counted once
        ([230, 239, 241, 239, 232], 0, 0),  # into the band and back: no crossing
        ([100, 240, 240, 300], 1, 0),  # stops on the line, then goes on: one crossing, on arrival
    ],
)
def test_crossings_are_counted_exactly(bottoms: list[float], ins: int, outs: int) -> None:
    crossings = [c for step in run({"t1": bottoms}, len(bottoms)) for c in step.crossings]
    assert sum(c.direction is Direction.IN for c in crossings) == ins
    assert sum(c.direction is Direction.OUT for c in crossings) == outs
    assert len({c.crossing_id for c in crossings}) == len(crossings)


def test_crossing_ids_name_track_line_direction_and_frame() -> None:
    (step,) = [s for s in run({"t1": [100, 300]}, 2) if s.crossings]
    assert step.crossings[0].crossing_id == "t1:mid:in:1"


def test_untracked_objects_do_not_cross_or_occupy() -> None:
    steps = run({None: [100, 300, 400]}, 3)  # type: ignore[dict-item]
    assert all(not s.crossings and s.occupancy[0].objects == 0 for s in steps)
    assert steps[2].objects[0].zones == ("bottom",) and steps[2].objects[0].track_id is None


def test_zone_visit_dwell_and_occupancy() -> None:
    # bottom zone: y >= 360. In on frames 2..5 (0.3 s), then out.
    steps = run({"t1": [300, 350, 370, 380, 390, 400, 300, 300]}, 8)
    assert [s.occupancy[0].objects for s in steps] == [0, 0, 1, 1, 1, 1, 0, 0]
    visits = [v for s in steps for v in s.visits]
    assert len(visits) == 1
    visit = visits[0]
    assert (visit.visit_id, visit.ended, visit.entered_seq) == ("t1:bottom:2", "left", 2)
    assert visit.dwell_s == pytest.approx(0.3)


def test_lost_track_closes_its_visit() -> None:
    steps = run({"t1": [400, 410]}, 6)  # seen twice in the zone, then lost after 3 more frames
    visits = [v for s in steps for v in s.visits]
    assert [(v.ended, v.dwell_s) for v in visits] == [("lost", pytest.approx(0.1))]
    assert steps[-1].scenes == {}


def test_speed_and_age() -> None:
    steps = run({"t1": [100, 112, 124]}, 3)
    speeds = [s.objects[0].speed_px_s for s in steps]
    assert speeds[0] is None and speeds[1:] == pytest.approx([120.0, 120.0], rel=1e-5)
    assert steps[2].objects[0].age_s == pytest.approx(0.2)


def test_state_is_not_modified() -> None:
    scene = analyzer()
    first = scene.observe(frame(0), [seen("t1", 100)], {}, {"t1"})
    before = {key: value.model_copy(deep=True) for key, value in first.scenes.items()}
    scene.observe(frame(1), [seen("t1", 300)], first.scenes, {"t1"})
    assert first.scenes == before
    assert isinstance(first.scenes["t1"], TrackScene)
