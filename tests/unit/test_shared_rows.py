"""copy_row: same-named fields become columns; a column it cannot settle alone is an error, never a guess."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from pydantic import BaseModel

from streams.sinks.shared_rows import copy_row


class Frame(BaseModel):
    camera_id: str
    frame_seq: int


class Count(BaseModel):
    zone: str
    frame_seq: int


class CountRow(NamedTuple):
    camera_id: str
    zone: str
    frame_seq: int


def test_columns_come_from_the_source_that_has_them_in_row_order() -> None:
    row = copy_row(CountRow, Count(zone="queue", frame_seq=1), Frame(camera_id="cam-1", frame_seq=7), frame_seq=7)
    assert row == CountRow("cam-1", "queue", 7) and type(row) is CountRow


@pytest.mark.parametrize(
    ("sources", "computed", "problem"),
    [
        ((Count(zone="q", frame_seq=1), Frame(camera_id="c", frame_seq=7)), {}, "CountRow.frame_seq: 2 sources"),
        ((Frame(camera_id="c", frame_seq=7),), {}, "CountRow.zone: 0 sources"),
        ((Frame(camera_id="c", frame_seq=7),), {"zone": "q", "zones": "q"}, r"no column \['zones'\]"),
    ],
)
def test_an_ambiguous_missing_or_unknown_column_is_refused(sources: tuple, computed: dict, problem: str) -> None:
    with pytest.raises(TypeError, match=problem):
        copy_row(CountRow, *sources, **computed)


def test_methods_and_properties_are_not_fields() -> None:
    class Copy(NamedTuple):
        copy: str

    with pytest.raises(TypeError, match="Copy.copy: 0 sources"):
        copy_row(Copy, Frame(camera_id="c", frame_seq=1))
