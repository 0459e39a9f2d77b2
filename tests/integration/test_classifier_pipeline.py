"""The solar-cell production line end to end: a folder of elpv cells played as cameras by the real
``framestream ingest``, the real worker (detect, alert, persist) calling the classifier on a real
tritonserver, defect alerts and verdicts in ClickHouse, each verdict equal to in-process ONNX Runtime
on the very JPEG that travelled. One camera runs the classifier only, one the detector and the
classifier both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from framestream.services.triton import LocalTriton
from framestream.settings import KafkaSettings
from framestream.training.classifier import TrainingOptions, export, train
from framestream.training.datasets import load_dataset, stratified_subset
from framestream.training.onnx_parts import labels_of, read_metadata
from processors.classifier import INPUT_NAME, OUTPUT_NAME, Classification, classify_batch
from schemas import FrameMeta
from streams.topics import TopicNames, delete_topics
from tests.integration.workers import WorkerProcess, WorkerStore, read_topic, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CELLS = 12  # per camera
RULES = """
rules: []
class_rules:
  - id: cell-defect
    description: Defective solar cell
    severity: critical
    label: defect
    min_score: 0.5
    model: defects
"""


@pytest.fixture(scope="module")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed models, and a defects classifier trained here (cached features)."""
    pytest.importorskip("elpv_dataset", reason="elpv-dataset is installed by scripts/setup.sh")
    images = stratified_subset(load_dataset("elpv"), 400, seed=0)
    result = train(images, TrainingOptions(copies=1, folds=3, seed=0), cache_dir=REPO / "var" / "classifier-cache")
    repository = tmp_path_factory.mktemp("models")
    for model in (REPO / "triton_models").iterdir():  # detector, nanodet, face_detector (snapshots blur faces)
        if model.is_dir() and model.name != "defects" and (model / "config.pbtxt").is_file():
            (repository / model.name).symlink_to(model, target_is_directory=True)
    (repository / "defects" / "1").mkdir(parents=True)
    shutil.copy(REPO / "triton_models" / "defects" / "config.pbtxt", repository / "defects")
    shutil.copy(REPO / "triton_models" / "defects" / "1" / "model.py", repository / "defects" / "1")
    export(result, repository / "defects" / "1" / "model.onnx")
    return repository


@pytest.fixture(scope="module")
def classifier_triton(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_file = tmp_path_factory.mktemp("triton-line") / "tritonserver.log"
    with LocalTriton(model_repository, REPO / ".venv-triton", log_file=log_file) as triton:
        yield triton.grpc_url


def production_line(tmp_path: Path) -> Path:
    """Two folders of elpv cells, half of them defective by the experts' labels, as two cameras."""
    cells = load_dataset("elpv")
    defective, fine = np.flatnonzero(cells.targets == 1), np.flatnonzero(cells.targets == 0)
    chosen = [int(i) for pair in zip(defective[-CELLS:], fine[-CELLS:], strict=True) for i in pair]
    for camera, picks in (("line-1", chosen[:CELLS]), ("line-2", chosen[CELLS:])):
        (tmp_path / camera).mkdir()
        for order, index in enumerate(picks):
            shutil.copy(cells.paths[index], tmp_path / camera / f"{order:03d}.png")
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(
        "cameras:\n"
        "  - {id: line-1, source: {kind: folder, path: line-1}, fps: 10, detector: false, classifier: defects}\n"
        "  - {id: line-2, source: {kind: folder, path: line-2}, fps: 10, classifier: defects}\n"
    )
    return cameras


def ingest(kafka: KafkaSettings, topics: TopicNames, cameras: Path) -> None:
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("FRAMESTREAM_")},
        "FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FRAMESTREAM_KAFKA_PROFILE": kafka.profile.value,
        "FRAMESTREAM_KAFKA_TOPIC_PREFIX": topics.prefix,
        "FRAMESTREAM_KAFKA_PARTITIONS": str(kafka.partitions),
    }
    command = [sys.executable, "-m", "framestream.cli", "ingest", "--cameras", str(cameras)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]


def in_process(model: Path, kafka: KafkaSettings, topics: TopicNames) -> dict[str, Classification]:
    """The reference: ONNX Runtime here, on the JPEGs as they lie on the frames topic."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from streams.kafka_config import consumer_config

    consumer = Consumer(consumer_config(kafka, group_id="test-reference"))
    consumer.assign([TopicPartition(topics.frames, p, OFFSET_BEGINNING) for p in range(kafka.partitions)])
    frames: dict[str, bytes] = {}
    try:
        idle = 0
        while idle < 10:
            message = consumer.poll(0.3)
            if message is None or message.error():
                idle += 1
                continue
            idle = 0
            frames[FrameMeta.from_headers(message.headers()).frame_id] = message.value()
    finally:
        consumer.close()
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    labels = labels_of(read_metadata(model))
    ids = sorted(frames)
    results = classify_batch([frames[i] for i in ids], lambda b: session.run([OUTPUT_NAME], {INPUT_NAME: b})[0], labels)
    return dict(zip(ids, results, strict=True))  # type: ignore[arg-type]


def test_cells_from_a_folder_camera_raise_defect_alerts_in_clickhouse(
    kafka_settings: KafkaSettings,
    topics: TopicNames,
    classifier_triton: str,
    model_repository: Path,
    store: WorkerStore,
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = worker_env(
        kafka_settings,
        triton_url=classifier_triton,
        data_dir=tmp_path / "data",
        rules_file=rules,
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
    )
    worker = WorkerProcess("line", "detect,alert,persist", env, tmp_path).start()
    try:
        ingest(kafka_settings, topics, production_line(tmp_path))
        worker.wait_for_metric("framestream_persisted_messages_total", 2 * CELLS, 240, kind="detections")
        expected = in_process(model_repository / "defects" / "1" / "model.onnx", kafka_settings, topics)
        defects = {frame_id for frame_id, verdict in expected.items() if verdict.label == "defect"}
        assert defects and len(defects) < len(expected), "the cells must be told apart"
        worker.wait_for_metric("framestream_persisted_messages_total", len(defects), 60, kind="alerts")
        assert worker.terminate() == 0, worker.log_tail()
    finally:
        worker.kill()
        delete_topics(kafka_settings.bootstrap_servers, [topics.cooldowns_changelog])

    client = store.connect()
    try:
        stored = client.query(
            "SELECT event_id, label, score, model_name, model_version FROM classifications FINAL"
        ).result_rows
        assert {row[0] for row in stored} == set(expected)
        for event_id, label, score, model_name, model_version in stored:
            assert label == expected[event_id].label, event_id
            assert score == pytest.approx(expected[event_id].score, abs=1e-5)
            assert (model_name, model_version) == ("defects", "1")
        alerts = client.query("SELECT alert_id, class_name FROM alerts FINAL").result_rows
        assert {alert_id for alert_id, _ in alerts} == {f"cell-defect:{frame_id}" for frame_id in defects}
        assert {class_name for _, class_name in alerts} == {"defect"}
        models = dict(
            client.query("SELECT camera_id, any(model_name) FROM frames FINAL GROUP BY camera_id").result_rows
        )
        assert models == {"line-1": "defects", "line-2": "detector"}  # classifier only; detector and classifier
        timed = client.query("SELECT min(triton_ms) FROM frames FINAL WHERE camera_id = 'line-1'").result_rows
        assert timed[0][0] > 0, "a classifier-only frame's Triton time is the classifier's round trip"
    finally:
        client.close()
    alerts_on_topic = read_topic(kafka_settings, topics.alerts, kafka_settings.partitions)
    assert len(alerts_on_topic) == len(defects)
