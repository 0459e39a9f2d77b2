"""Shadow mode through the real pipeline: a candidate beside the served detector, agreement stored.

Real services (the session's broker, tritonserver, chDB owned by the worker): one
``framestream worker --stages detect,persist,shadow`` process whose candidate is the served
network itself (NanoDet's ONNX file, run in process by the shadow stage): every sampled frame must
be compared, exactly once, and agree fully -- the same boxes from the same network through the same
code, one on Triton and one in the worker. A real second candidate (CenterNet, detector version 2)
then agrees only partly, on the same frames.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from framestream.settings import REPO_ROOT, KafkaSettings
from schemas.model_agreement import ModelAgreement
from streams.topics import TopicNames
from tests.integration.workers import (
    FrameProducer,
    WorkerProcess,
    WorkerStore,
    camera_frames,
    read_topic,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CAMERAS = {"cam-person": "person", "cam-dog": "dog", "cam-horses": "horses"}
FRAMES_PER_CAMERA = 4
SAMPLE_EVERY = 2  # frames 0 and 2 of each camera


def run_shadow(
    kafka: KafkaSettings, topics: TopicNames, triton_url: str, store: WorkerStore, tmp_path: Path, candidate: Path
) -> list[ModelAgreement]:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\n")
    env = worker_env(
        kafka,
        triton_url=triton_url,
        data_dir=tmp_path / "data",
        rules_file=rules,
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
        FRAMESTREAM_SHADOW_CANDIDATE_DIR=str(candidate),
        FRAMESTREAM_SHADOW_SAMPLE_EVERY=str(SAMPLE_EVERY),
    )
    worker = WorkerProcess(f"shadow-{candidate.parent.name}", "detect,persist,shadow", env, tmp_path).start()
    frames = camera_frames(CAMERAS, FRAMES_PER_CAMERA, spacing_s=0.5)
    try:
        producer = FrameProducer(kafka)
        for frame in frames:
            producer.frame(topics.frames, frame)
        producer.flush()
        compared = len(CAMERAS) * len(range(0, FRAMES_PER_CAMERA, SAMPLE_EVERY))
        worker.wait_for_metric("framestream_frames_total", len(frames), 240, stage="shadow", outcome="ok")
        worker.wait_for_metric("framestream_persisted_messages_total", compared, 120, kind="model_agreement")
        assert worker.terminate() == 0, worker.log_tail()
    finally:
        worker.kill()
    return [
        ModelAgreement.model_validate_json(value)
        for _, value in read_topic(kafka, topics.model_agreement, kafka.partitions, idle_s=5)
    ]


def stored_agreement(store: WorkerStore) -> dict[str, tuple]:
    client = store.connect()
    try:
        rows = client.query("SELECT agreement_id, candidate, precision, recall, matched FROM model_agreement FINAL")
        assert client.query("SELECT count() FROM model_agreement").result_rows[0][0] == len(rows.result_rows)
        return {row[0]: tuple(row[1:]) for row in rows.result_rows}
    finally:
        client.close()


def test_the_served_network_as_its_own_shadow_agrees_on_every_sampled_frame(
    kafka_settings: KafkaSettings, topics: TopicNames, triton_url: str, store: WorkerStore, tmp_path: Path
) -> None:
    agreements = run_shadow(
        kafka_settings, topics, triton_url, store, tmp_path, REPO_ROOT / "triton_models" / "nanodet" / "1"
    )
    wanted = {f"{camera}:{seq}" for camera in CAMERAS for seq in range(0, FRAMES_PER_CAMERA, SAMPLE_EVERY)}
    assert {a.event_id for a in agreements} == wanted, "every sampled frame compared, no other"
    assert {a.candidate for a in agreements} == {"nanodet:1"}
    assert all(a.current_model.startswith("detector:") for a in agreements)
    assert sum(a.current_objects for a in agreements) > 0, "the photos have objects to agree on"
    for a in agreements:
        assert (a.precision, a.recall, a.matched) == (1.0, 1.0, a.current_objects), a
        assert a.mean_iou > 0.99 or a.current_objects == 0
    assert stored_agreement(store) == {a.agreement_id: (a.candidate, 1.0, 1.0, a.matched) for a in agreements}


def test_a_different_network_agrees_only_partly(
    kafka_settings: KafkaSettings, topics: TopicNames, triton_url: str, store: WorkerStore, tmp_path: Path
) -> None:
    agreements = run_shadow(
        kafka_settings, topics, triton_url, store, tmp_path, REPO_ROOT / "triton_models" / "detector" / "2"
    )
    assert {a.candidate for a in agreements} == {"detector:2"}
    assert len(agreements) == len(CAMERAS) * len(range(0, FRAMES_PER_CAMERA, SAMPLE_EVERY))
    assert any(a.matched for a in agreements), "CenterNet finds some of what NanoDet finds"
    assert any(a.precision < 1.0 or a.recall < 1.0 for a in agreements), "but not exactly the same boxes"
    print({a.event_id: (round(a.precision, 2), round(a.recall, 2)) for a in agreements})
    assert set(stored_agreement(store)) == {a.agreement_id for a in agreements}
