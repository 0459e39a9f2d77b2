"""PNG plots of an Evaluation: PR curves, the confusion matrix and the per-class threshold sweep."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display here or on servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from processors.detection_metrics import SWEEP, Evaluation  # noqa: E402


def write_plots(result: Evaluation, out: Path) -> list[Path]:
    """Usage:
    paths = write_plots(evaluate(labels, predictions, 0.35), Path("eval-out"))
    # -> pr_curves.png, confusion_matrix.png, threshold_sweep.png
    """
    out.mkdir(parents=True, exist_ok=True)
    return [
        _pr_curves(result, out / "pr_curves.png"),
        _confusion(result, out / "confusion_matrix.png"),
        _sweep(result, out / "threshold_sweep.png"),
    ]


def _pr_curves(result: Evaluation, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(7, 5))
    for name, precision in result.pr_curves.items():
        valid = precision > -1
        axes.plot(result.recall_points[valid], precision[valid], label=name)
    axes.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"PR at IoU 0.5 (mAP@.5 {result.map50:.3f}, mAP@[.5:.95] {result.map:.3f})",
    )
    if result.pr_curves:
        axes.legend(fontsize="small", loc="lower left")
    return _save(figure, path)


def _confusion(result: Evaluation, path: Path) -> Path:
    labels, matrix = result.confusion_labels, result.confusion
    used = [i for i in range(len(labels)) if matrix[i, :].any() or matrix[:, i].any()] or list(range(len(labels)))
    sub = matrix[np.ix_(used, used)]
    size = max(4.0, 0.5 * len(used) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(sub, cmap="Blues")
    names = [labels[i] for i in used]
    axes.set_xticks(range(len(used)), names, rotation=60, ha="right", fontsize="small")
    axes.set_yticks(range(len(used)), names, fontsize="small")
    for (row, column), count in np.ndenumerate(sub):
        if count:
            axes.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize="x-small",
                color="white" if count > sub.max() / 2 else "black",
            )
    axes.set(xlabel="predicted", ylabel="true", title=f"Matches at IoU 0.5, scores >= {result.score_threshold:.2f}")
    figure.colorbar(image, ax=axes)
    return _save(figure, path)


def _sweep(result: Evaluation, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(7, 5))
    for metrics in result.per_class:
        if metrics.ground_truths:
            axes.plot(SWEEP, metrics.sweep_f1, label=f"{metrics.name} (best {metrics.suggested_threshold:.2f})")
    axes.axvline(result.score_threshold, color="grey", linestyle="--", label="serving threshold")
    axes.set(xlabel="score threshold", ylabel="F1 at IoU 0.5", xlim=(0, 1), ylim=(0, 1.02), title="Threshold sweep")
    axes.legend(fontsize="small")
    return _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
