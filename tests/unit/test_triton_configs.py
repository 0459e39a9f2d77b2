"""Every config.pbtxt parses with Triton's own ModelConfig protobuf and fits the code around it."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from processors.detector import MAX_BATCH, MAX_DETECTIONS
from processors.nanodet import INPUT_NAME, INPUT_SIZE, NUM_BINS, NUM_CLASSES, OUTPUT_NAMES, STRIDES

REPO = Path(__file__).resolve().parents[2]
CONFIG_FILES = sorted(
    [*(REPO / "triton_models").glob("*/config.pbtxt"), *(REPO / "infra" / "triton").rglob("config.pbtxt")]
)
Config = model_config_pb2.ModelConfig
DataType = model_config_pb2.DataType
InstanceKind = model_config_pb2.ModelInstanceGroup.Kind


def load(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), Config())


def test_every_model_of_the_repository_has_a_config() -> None:
    models = {path.name for path in (REPO / "triton_models").iterdir() if path.is_dir() and path.name[0] != "_"}
    assert {"detector", "nanodet"} <= models
    assert all((REPO / "triton_models" / name / "config.pbtxt").is_file() for name in models)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_parses_and_names_its_folder(path: Path) -> None:
    config = load(path)
    assert config.name == path.parent.name
    assert config.backend in {"python", "onnxruntime"}
    assert config.max_batch_size == MAX_BATCH
    assert config.HasField("dynamic_batching")


@pytest.mark.parametrize(
    "path", [p for p in CONFIG_FILES if p.is_relative_to(REPO / "triton_models")], ids=lambda p: p.parent.name
)
def test_local_models_have_their_code_or_weights(path: Path) -> None:
    config = load(path)
    version_dir = path.parent / "1"
    assert (version_dir / "model.py").is_file()  # both are Python models on this machine
    if config.name == "nanodet":
        assert (version_dir / "model.onnx").is_file()


def test_detector_io_matches_the_processors() -> None:
    config = load(REPO / "triton_models" / "detector" / "config.pbtxt")
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("IMAGE", DataType.TYPE_STRING, [1])]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("NUM_DETECTIONS", DataType.TYPE_INT32, [1]),
        ("BOXES", DataType.TYPE_FP32, [MAX_DETECTIONS, 4]),
        ("SCORES", DataType.TYPE_FP32, [MAX_DETECTIONS]),
        ("CLASS_IDS", DataType.TYPE_INT32, [MAX_DETECTIONS]),
    ]
    assert int(config.parameters["max_pixels"].string_value) > 0
    assert config.parameters["nanodet_model"].string_value == "nanodet"


def nanodet_io(config: model_config_pb2.ModelConfig) -> list[tuple[str, int, list[int]]]:
    return [(t.name, t.data_type, list(t.dims)) for t in [*config.input, *config.output]]


def test_nanodet_io_matches_the_processors() -> None:
    config = load(REPO / "triton_models" / "nanodet" / "config.pbtxt")
    expected = [(INPUT_NAME, DataType.TYPE_FP32, [3, INPUT_SIZE, INPUT_SIZE])]
    for name in OUTPUT_NAMES:
        cells = INPUT_SIZE // int(name.rsplit("_s", 1)[1])
        channels = NUM_CLASSES if name.startswith("scores") else 4 * NUM_BINS
        expected.append((name, DataType.TYPE_FP32, [channels, cells, cells]))
    assert nanodet_io(config) == expected
    assert len(OUTPUT_NAMES) == 2 * len(STRIDES)
    assert int(config.parameters["intra_op_threads"].string_value) >= 0


def test_gpu_nanodet_is_the_same_model_on_tensorrt_fp16() -> None:
    cpu = load(REPO / "triton_models" / "nanodet" / "config.pbtxt")
    gpu = load(REPO / "infra" / "triton" / "gpu" / "nanodet" / "config.pbtxt")
    assert nanodet_io(gpu) == nanodet_io(cpu)
    assert (gpu.name, gpu.max_batch_size) == (cpu.name, cpu.max_batch_size)
    assert gpu.backend == "onnxruntime" and gpu.default_model_filename == "model.onnx"
    assert {group.kind for group in gpu.instance_group} == {InstanceKind.KIND_GPU}
    assert (
        list(gpu.dynamic_batching.preferred_batch_size) and max(gpu.dynamic_batching.preferred_batch_size) <= MAX_BATCH
    )
    accelerators = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt"]
    assert accelerators[0].parameters["precision_mode"] == "FP16"
    assert int(accelerators[0].parameters["max_workspace_size_bytes"]) > 0
    warmup_batches = sorted(w.batch_size for w in gpu.model_warmup)
    assert warmup_batches[0] == 1 and warmup_batches[-1] == MAX_BATCH


def test_cpu_container_nanodet_is_the_same_model_on_onnxruntime() -> None:
    local = load(REPO / "triton_models" / "nanodet" / "config.pbtxt")
    container = load(REPO / "infra" / "triton" / "cpu" / "nanodet" / "config.pbtxt")
    assert nanodet_io(container) == nanodet_io(local)
    assert container.backend == "onnxruntime" and container.default_model_filename == "model.onnx"
    assert {group.kind for group in container.instance_group} == {InstanceKind.KIND_CPU}


def test_a_typo_in_a_config_is_caught_by_the_parser(tmp_path: Path) -> None:
    """Guard that the check above can fail: the protobuf parser refuses unknown fields."""
    broken = (
        (REPO / "triton_models" / "detector" / "config.pbtxt").read_text().replace("max_batch_size", "max_batchsize")
    )
    with pytest.raises(text_format.ParseError, match="max_batchsize"):
        text_format.Parse(broken, Config())
