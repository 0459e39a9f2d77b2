"""What ``framestream eval`` prints and writes, from an evaluation of synthetic predictions."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from framestream.commands.eval import format_report, report_dict, write_outputs
from processors.detection_metrics import ScoredBox, evaluate
from schemas.labels import LabelSet

LABELS = LabelSet(
    classes=("horse", "person"),
    images=(
        {
            "image": "a.jpg",
            "width": 200,
            "height": 100,
            "boxes": [
                {"label": "horse", "x1": 10, "y1": 10, "x2": 60, "y2": 90},
                {"label": "horse", "x1": 100, "y1": 10, "x2": 150, "y2": 90},
                {"label": "person", "x1": 160, "y1": 10, "x2": 190, "y2": 90},
            ],
        },
    ),
)
PREDICTIONS = [
    [
        ScoredBox("cow", 0.8, 10, 10, 60, 90),  # a horse taken for a cow
        ScoredBox("horse", 0.7, 100, 10, 150, 90),
        ScoredBox("person", 0.2, 160, 10, 190, 90),  # found, but under the serving threshold
        ScoredBox("dog", 0.5, 0, 0, 5, 5),  # a false alarm
    ]
]


def test_the_report_names_confusions_misses_and_false_alarms() -> None:
    text = format_report(evaluate(LABELS, PREDICTIONS, 0.35), "detector", 1)
    assert "horse -> cow: 1" in text
    assert "person -> (background): 1" in text
    assert "(background) -> dog: 1" in text


def test_the_json_holds_map_map50_and_per_class() -> None:
    report = report_dict(evaluate(LABELS, PREDICTIONS, 0.35), "detector", 1)
    json.dumps(report)  # serialisable as is
    assert {"map", "map50", "per_class", "confusion"} <= set(report)
    horse, person = report["per_class"]["horse"], report["per_class"]["person"]
    assert (horse["precision"], horse["recall"]) == (1.0, 0.5)
    assert person["recall"] == 0.0 and person["ap"] == 1.0 and person["suggested_threshold"] <= 0.2
    assert report["per_class"]["cow"]["ground_truths"] == 0 and report["per_class"]["cow"]["ap"] is None


def test_outputs_are_pngs_and_the_coco_files(tmp_path: Path) -> None:
    written = write_outputs(evaluate(LABELS, PREDICTIONS, 0.35), LABELS, PREDICTIONS, tmp_path)
    assert sorted(p.name for p in written) == [
        "confusion_matrix.png",
        "detections.json",
        "ground_truth.json",
        "pr_curves.png",
        "threshold_sweep.png",
    ]
    for path in written:
        if path.suffix == ".png":
            with Image.open(path) as image:
                assert image.format == "PNG"
    assert len(json.loads((tmp_path / "detections.json").read_text())) == 4
