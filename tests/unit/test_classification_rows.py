"""A frame's classifier verdict becomes one row of ``classifications``; frames without one, none."""

from __future__ import annotations

from schemas import FrameClassification
from streams.sinks.rows import CLASSIFICATIONS, DETECTIONS, FRAMES, rows_for
from tests.factories import make_frame_detections


def test_a_classified_frame_writes_one_classification_row() -> None:
    verdict = FrameClassification(label="defect", class_id=1, score=0.875, model_name="defects", model_version="2")
    frame = make_frame_detections("line-1", 9, classification=verdict)
    parts = rows_for(frame).parts
    assert [(part.table, len(part.rows)) for part in parts] == [(FRAMES, 1), (DETECTIONS, 0), (CLASSIFICATIONS, 1)]
    (row,) = parts[2].rows
    assert row._fields == CLASSIFICATIONS.columns
    assert (row.event_id, row.label, row.class_id, row.score, row.model_name, row.model_version) == (
        "line-1:9",
        "defect",
        1,
        0.875,
        "defects",
        "2",
    )


def test_an_unclassified_frame_writes_no_classification_row() -> None:
    assert CLASSIFICATIONS not in [part.table for part in rows_for(make_frame_detections()).parts]
