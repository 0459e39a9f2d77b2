"""Transfer learning of an image classifier on the CPU: frozen backbone features, a linear head.

The backbone (NanoDet's ShuffleNetV2, cut from the committed detector, see onnx_parts.py)
turns every image, and ``copies`` augmented copies of every training image, into a pooled
feature vector once, with ONNX Runtime; the vectors are cached under ``cache_dir`` keyed by
the data, the backbone and the augmentation. A scikit-learn logistic regression on them is
chosen by a grid search with grouped, stratified cross-validation (an image's copies never
straddle a fold; folds are scored on original images only), then scored once on a held-out,
stratified test split beside the majority-class baseline. Export: one ONNX model, backbone
and head, with labels, data hash, metrics and parameters in its metadata.

Usage::

    result = train(load_dataset("elpv"), TrainingOptions(), cache_dir=Path("var/classifier-cache"))
    export(result, Path("triton_models/defects/1/model.onnx"))
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from framestream.training.datasets import ImageSet, data_hash
from framestream.training.onnx_parts import cut_backbone, fold_standardisation, linear_head, merge
from processors.classifier import INPUT_NAME, INPUT_SIZE, OUTPUT_NAME, Augmentation, to_input_tensor
from processors.decode import decode_for_size

NANODET = Path(__file__).resolve().parents[2] / "triton_models" / "nanodet" / "1" / "model.onnx"
BATCH = 16


@dataclass(frozen=True)
class TrainingOptions:
    test_fraction: float = 0.2
    copies: int = 2  # augmented copies of each training image
    folds: int = 5
    seed: int = 0
    c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
    class_weights: tuple[str | None, ...] = (None, "balanced")
    shuffle_labels: bool = False  # a control: a model that can learn nothing
    augmentation: Augmentation = field(default_factory=Augmentation)

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be within (0, 1), got {self.test_fraction}")
        if self.copies < 0 or self.folds < 2 or not self.c_grid or not self.class_weights:
            raise ValueError("copies must be >= 0, folds >= 2, and the grids not empty")


@dataclass(frozen=True)
class TrainingResult:
    report: dict[str, object]  # what --json writes
    backbone: onnx.ModelProto
    weights: np.ndarray  # [C, F], acting on raw features (standardisation folded in)
    bias: np.ndarray  # [C]
    test_features: np.ndarray  # held-out features and the head's probabilities on them, to check the export
    test_probabilities: np.ndarray


class FeatureExtractor:
    """The backbone in ONNX Runtime, over image files, with an on-disk cache per call key."""

    def __init__(self, backbone: onnx.ModelProto, cache_dir: Path | None, threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(backbone.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.identity = hashlib.sha256(backbone.SerializeToString()).hexdigest()[:16]
        self.cache_dir = cache_dir

    def features(
        self, paths: tuple[Path, ...], key: str, augment: tuple[Augmentation, int] | None = None
    ) -> np.ndarray:
        """[len(paths), F] features; with ``augment`` (its settings, a seed) of changed copies."""
        cache = None
        if self.cache_dir is not None:
            cache = self.cache_dir / f"{hashlib.sha256(f'{self.identity}|{key}|{augment}'.encode()).hexdigest()}.npy"
            if cache.is_file():
                return np.load(cache)
        rng = np.random.default_rng(augment[1]) if augment else None
        rows = []
        for start in range(0, len(paths), BATCH):
            batch = []
            for path in paths[start : start + BATCH]:
                pixels = decode_for_size(path.read_bytes(), INPUT_SIZE).pixels
                if augment is not None and rng is not None:
                    pixels = augment[0].apply(pixels, rng)
                batch.append(to_input_tensor(pixels))
            rows.append(self.session.run(None, {INPUT_NAME: np.stack(batch)})[0])
        features = np.concatenate(rows)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, features)
        return features


def train(
    images: ImageSet, options: TrainingOptions, cache_dir: Path | None, network: Path = NANODET
) -> TrainingResult:
    started = time.monotonic()
    digest = data_hash(images)
    indices = np.arange(len(images))
    train_idx, test_idx = train_test_split(
        indices, test_size=options.test_fraction, stratify=images.targets, random_state=options.seed
    )
    backbone = cut_backbone(network)
    extractor = FeatureExtractor(backbone, cache_dir)
    originals = extractor.features(images.paths, f"{digest}|originals")
    train_paths = tuple(images.paths[i] for i in train_idx)
    copies = [
        extractor.features(train_paths, f"{digest}|{train_idx.tobytes().hex()}", (options.augmentation, copy))
        for copy in range(options.copies)
    ]
    features_s = time.monotonic() - started
    y_train = images.targets[train_idx]
    if options.shuffle_labels:
        y_train = np.random.default_rng(options.seed).permutation(y_train)
    x = np.concatenate([originals[train_idx], *copies])
    y = np.tile(y_train, 1 + options.copies)
    groups = np.tile(np.arange(len(train_idx)), 1 + options.copies)
    is_original = np.arange(len(y)) < len(train_idx)
    search = GridSearchCV(
        Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=3000))]),
        {"model__C": list(options.c_grid), "model__class_weight": list(options.class_weights)},
        scoring={"f1": "f1_macro", "accuracy": "accuracy"},
        refit="f1",
        cv=grouped_folds(y, groups, is_original, options.folds, options.seed),
    )
    search.fit(x, y)
    best = search.best_index_
    fold_scores = {
        metric: [float(search.cv_results_[f"split{k}_test_{metric}"][best]) for k in range(options.folds)]
        for metric in ("accuracy", "f1")
    }
    pipeline = search.best_estimator_
    x_test, y_test = originals[test_idx], images.targets[test_idx]
    predicted = pipeline.predict(x_test)
    majority = int(np.bincount(y_train, minlength=len(images.labels)).argmax())
    baseline = np.full_like(y_test, majority)
    weights, bias = head_parameters(pipeline)
    report: dict[str, object] = {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "f1": float(f1_score(y_test, predicted, average="macro")),
        "baseline_accuracy": float(accuracy_score(y_test, baseline)),
        "baseline_f1": float(f1_score(y_test, baseline, average="macro", zero_division=0)),
        "f1_average": "macro",
        "confusion_matrix": confusion_matrix(y_test, predicted, labels=range(len(images.labels))).tolist(),
        "labels": list(images.labels),
        "cv": {
            "folds": options.folds,
            "accuracy_mean": float(np.mean(fold_scores["accuracy"])),
            "accuracy_std": float(np.std(fold_scores["accuracy"])),
            "f1_mean": float(np.mean(fold_scores["f1"])),
            "f1_std": float(np.std(fold_scores["f1"])),
            **{f"{metric}_per_fold": scores for metric, scores in fold_scores.items()},
        },
        "params": {
            "C": search.best_params_["model__C"],
            "class_weight": search.best_params_["model__class_weight"],
            **{k: v for k, v in asdict(options).items() if k != "augmentation"},
            "augmentation": asdict(options.augmentation),
            "input_size": INPUT_SIZE,
        },
        "dataset": images.name,
        "data_sha256": digest,
        "n_train": int(len(train_idx)),
        "n_test": int(len(test_idx)),
        "test_class_counts": np.bincount(y_test, minlength=len(images.labels)).tolist(),
        "features_seconds": round(features_s, 1),
        "training_seconds": round(time.monotonic() - started, 1),
    }
    return TrainingResult(report, backbone, weights, bias, x_test, pipeline.predict_proba(x_test))


def grouped_folds(
    y: np.ndarray, groups: np.ndarray, is_original: np.ndarray, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds by image (its augmented copies go with it), validated on original images only."""
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(train, validate[is_original[validate]]) for train, validate in splitter.split(np.zeros(len(y)), y, groups)]


def head_parameters(pipeline: Pipeline) -> tuple[np.ndarray, np.ndarray]:
    """The fitted scaler + logistic regression as one softmax layer on raw features.

    A binary logistic regression has one logit z for class 1; softmax over (-z/2, z/2)
    gives sigmoid(z) for class 1, so two rows reproduce its probabilities exactly."""
    scaler: StandardScaler = pipeline.named_steps["scale"]
    model: LogisticRegression = pipeline.named_steps["model"]
    weights, bias = model.coef_, model.intercept_
    if weights.shape[0] == 1:
        weights, bias = np.vstack([-weights / 2, weights / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    return fold_standardisation(weights, bias, scaler.mean_, scaler.scale_)


def export(result: TrainingResult, path: Path) -> onnx.ModelProto:
    """Write backbone + head as one ONNX model, after checking the head's export against
    scikit-learn's own probabilities on the held-out features."""
    head = linear_head(result.weights, result.bias)
    session = ort.InferenceSession(head.SerializeToString(), providers=["CPUExecutionProvider"])
    exported = session.run([OUTPUT_NAME], {"features": result.test_features.astype(np.float32)})[0]
    difference = float(np.abs(exported - result.test_probabilities).max())
    if difference > 1e-4:
        raise RuntimeError(f"exported head differs from scikit-learn by {difference}")
    report = result.report
    metrics = {k: report[k] for k in ("accuracy", "f1", "baseline_accuracy", "baseline_f1", "cv", "confusion_matrix")}
    metadata = {
        "labels": json.dumps(report["labels"]),
        "data_sha256": str(report["data_sha256"]),
        "dataset": str(report["dataset"]),
        "metrics": json.dumps(metrics),
        "params": json.dumps(report["params"]),
        "backbone": "NanoDet ShuffleNetV2 (triton_models/nanodet): stride-16 and -32 stages, average-pooled",
        "preprocess": f"BGR, resize to {INPUT_SIZE}x{INPUT_SIZE}, (pixel - mean) / std as NanoDet, NCHW float32",
        "outputs": f"{OUTPUT_NAME}: softmax [N, {len(report['labels'])}] in the order of labels",
    }
    model = merge(result.backbone, head, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return model


def beats_baseline(report: dict[str, object], margin: float = 0.05) -> bool:
    """The held-out acceptance rule: accuracy and macro F1 both above the majority-class
    baseline's by ``margin`` (a model that learned nothing scores about the baseline)."""
    return bool(
        report["accuracy"] >= report["baseline_accuracy"] + margin  # type: ignore[operator]
        and report["f1"] >= report["baseline_f1"] + margin  # type: ignore[operator]
    )
