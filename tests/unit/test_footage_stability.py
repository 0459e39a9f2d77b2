"""The ground-truth-free id stability estimate of framestream/bench/footage.py: a track born just
after another died, where it died, counts as a likely id switch."""

from __future__ import annotations

import pytest

from framestream.bench.footage import TrackSpan, id_stability

BOX = (100.0, 100.0, 150.0, 250.0)
ELSEWHERE = (400.0, 100.0, 450.0, 250.0)


@pytest.mark.parametrize(
    ("spans", "switches"),
    [
        ([TrackSpan("a", 0, 20, BOX, BOX), TrackSpan("b", 23, 40, BOX, BOX)], 1),  # reborn in place: a switch
        ([TrackSpan("a", 0, 20, BOX, BOX), TrackSpan("b", 23, 40, ELSEWHERE, BOX)], 0),  # born elsewhere
        ([TrackSpan("a", 0, 20, BOX, BOX), TrackSpan("b", 35, 40, BOX, BOX)], 0),  # long after: a new object
        ([TrackSpan("a", 0, 20, BOX, BOX), TrackSpan("b", 10, 40, BOX, BOX)], 0),  # overlapping in time
        ([], 0),
    ],
)
def test_likely_switches(spans: list[TrackSpan], switches: int) -> None:
    result = id_stability(spans, frames=50)
    assert result.likely_switches == switches
    assert result.switches_per_100_frames == pytest.approx(2.0 * switches)
