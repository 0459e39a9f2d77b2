"""Fuzzing frame headers (``FrameMeta.from_headers``): any list of Kafka headers gives the frame's
metadata or a ``ValidationError``/``ValueError`` naming the header (the detect stage's dead
letter), never another exception and never a hang."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import FrameMeta, ImageStats
from tests import factories
from tests.fuzz.strategies import FUZZ, mutated, tally

pytestmark = pytest.mark.fuzz

VALID = factories.make_frame_meta(stats=ImageStats(brightness=0.5, sharpness=120.0, contrast=0.2)).to_headers()
NAMES = [name for name, _ in VALID]


@st.composite
def headers(draw: st.DrawFn) -> list[tuple[str, bytes | None]]:
    """Valid headers with values mutated, dropped, duplicated, or replaced; or random ones."""
    if draw(st.integers(0, 4)) == 0:
        names = st.sampled_from(NAMES) | st.text(max_size=30)
        return draw(st.lists(st.tuples(names, st.none() | st.binary(max_size=64)), max_size=12))
    result: list[tuple[str, bytes | None]] = []
    for name, value in VALID:
        action = draw(st.sampled_from(["keep", "keep", "mutate", "drop", "twice", "none", "text"]))
        if action == "keep":
            result.append((name, value))
        elif action == "mutate":
            result.append((name, draw(mutated(st.just(value), max_edits=3))))
        elif action == "twice":
            result += [(name, value), (name, draw(st.binary(max_size=16)))]
        elif action == "none":
            result.append((name, None))
        elif action == "text":
            result.append((name, draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")))
    return draw(st.permutations(result)) if draw(st.booleans()) else result


@FUZZ
@given(raw=headers())
def test_frame_headers_are_parsed_or_rejected(raw: list[tuple[str, bytes | None]]) -> None:
    tally()
    try:
        meta = FrameMeta.from_headers(raw)
    except (ValidationError, ValueError):
        return
    assert meta.frame_id == f"{meta.camera_id}:{meta.frame_seq}"
