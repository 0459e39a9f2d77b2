"""``framestream train classifier --dataset elpv|PATH``: transfer learning on the CPU.

Frozen NanoDet backbone features (cached under --cache), a logistic-regression head chosen by
cross-validated grid search, a held-out test split scored beside the majority-class baseline;
writes one ONNX model (backbone + head, metadata: labels, data hash, metrics, parameters) and
optionally the metrics as JSON. Exit 1: bad data set; 3: the model does not beat the baseline
by --margin on the held-out split (the model is still written, marked so, for inspection).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from framestream.settings import Settings

EXIT_BAD_INPUT = 1
EXIT_NOT_BETTER = 3
DEFAULT_OUT = Path("triton_models/defects/1/model.onnx")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model on the CPU")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    classifier = kinds.add_parser("classifier", help="image classifier: NanoDet backbone + linear head")
    classifier.add_argument("--dataset", required=True, metavar="elpv|PATH", help="'elpv' or a folder")
    classifier.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the metrics as JSON")
    classifier.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"ONNX model to write ({DEFAULT_OUT})")
    classifier.add_argument("--cache", type=Path, default=Path("var/classifier-cache"), help="feature cache folder")
    classifier.add_argument("--limit", type=int, default=None, help="a stratified subset of this many images")
    classifier.add_argument("--copies", type=int, default=2, help="augmented copies per training image")
    classifier.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    classifier.add_argument("--seed", type=int, default=0)
    classifier.add_argument("--margin", type=float, default=0.05, help="required lead over the baseline")
    classifier.add_argument("--shuffle-labels", action="store_true", help="control run: labels permuted")
    classifier.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from framestream.training.classifier import TrainingOptions, beats_baseline, export, train
    from framestream.training.datasets import DatasetError, load_dataset, stratified_subset

    try:
        images = load_dataset(args.dataset)
        if args.limit is not None:
            images = stratified_subset(images, args.limit, args.seed)
        options = TrainingOptions(
            copies=args.copies, folds=args.folds, seed=args.seed, shuffle_labels=args.shuffle_labels
        )
    except (DatasetError, ValueError) as error:
        print(f"train: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = train(images, options, cache_dir=args.cache)
    report = dict(result.report, model=str(args.out), beats_baseline=beats_baseline(result.report, args.margin))
    export(result, args.out)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(summary(report))
    return 0 if report["beats_baseline"] else EXIT_NOT_BETTER


def summary(report: dict) -> str:
    cv = report["cv"]
    lines = [
        f"data: {report['dataset']} ({report['n_train']} train, {report['n_test']} held-out test), "
        f"sha256 {report['data_sha256'][:12]}",
        f"params: C={report['params']['C']}, class_weight={report['params']['class_weight']}",
        f"cross-validation ({cv['folds']} folds): accuracy {cv['accuracy_mean']:.3f} ± {cv['accuracy_std']:.3f}, "
        f"F1 {cv['f1_mean']:.3f} ± {cv['f1_std']:.3f}",
        f"held-out: accuracy {report['accuracy']:.3f}, F1 ({report['f1_average']}) {report['f1']:.3f}",
        f"majority baseline: accuracy {report['baseline_accuracy']:.3f}, F1 {report['baseline_f1']:.3f}",
        "confusion matrix (rows true, columns predicted; " + ", ".join(report["labels"]) + "):",
        *(f"  {report['labels'][i]:>10} {row}" for i, row in enumerate(report["confusion_matrix"])),
        f"time: {report['training_seconds']} s ({report['features_seconds']} s features)",
        f"model: {report['model']} ({'beats' if report['beats_baseline'] else 'does NOT beat'} the baseline)",
    ]
    return "\n".join(lines)
