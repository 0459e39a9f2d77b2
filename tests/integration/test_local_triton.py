"""LocalTriton, the launcher of the wheel's tritonserver: clear failures and a clean stop."""

from __future__ import annotations

import asyncio
import shutil
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from framestream.services.triton import LocalTriton, PortInUseError, TritonPorts, TritonStartError
from streams.inference import DetectorClient, InferenceUnavailable

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-triton"

BROKEN_MODEL = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("weights file is corrupt (on purpose, for the test)")

    def execute(self, requests):
        return []
"""
ECHO_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 4
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }} ]
"""
ECHO_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())])
                for r in requests]
"""


@pytest.fixture(autouse=True)
def needs_the_triton_venv() -> None:
    if not (VENV / "bin" / "python").exists():
        pytest.skip(f"{VENV} (nvidia-pytriton) is not installed here")


def model_repository(root: Path, models: dict[str, str]) -> Path:
    """A repository of tiny Python models: name -> model.py source."""
    for name, source in models.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(ECHO_CONFIG.format(name=name))
        (root / name / "1" / "model.py").write_text(source)
    return root


@pytest.fixture
def occupied_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_starts_serves_and_stops_cleanly(tmp_path: Path) -> None:
    repository = model_repository(tmp_path / "models", {"echo": ECHO_MODEL})
    triton = LocalTriton(repository, VENV, log_file=tmp_path / "triton.log")
    with triton:
        assert triton.is_running()
        with urllib.request.urlopen(f"{triton.http_url}/v2/models/echo/ready", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(triton.metrics_url, timeout=5) as response:
            assert b"nv_inference_count" in response.read()
    assert not triton.is_running()
    assert "successfully unloaded 'echo'" in (tmp_path / "triton.log").read_text()
    for port in vars(triton.ports).values():  # nothing listens any more (TIME_WAIT may linger)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen()


def test_models_import_the_processors_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """framestream started outside the repository: the models still import ``processors/``."""
    importer = ECHO_MODEL.replace(
        "import triton_python_backend_utils", "import processors.decode\nimport triton_python_backend_utils"
    )
    repository = model_repository(tmp_path / "models", {"echo": importer})
    monkeypatch.chdir(tmp_path)
    with LocalTriton(repository, VENV, log_file=tmp_path / "triton.log", startup_timeout_s=120) as triton:
        assert triton.is_running()


@pytest.mark.parametrize("which", ["http", "grpc", "metrics"])
def test_a_taken_port_is_named_before_starting(tmp_path: Path, occupied_port: int, which: str) -> None:
    ports = {**vars(TritonPorts.free()), which: occupied_port}
    triton = LocalTriton(model_repository(tmp_path / "models", {"echo": ECHO_MODEL}), VENV, ports=TritonPorts(**ports))
    with pytest.raises(PortInUseError, match=f"{which} port 127.0.0.1:{occupied_port} is in use"):
        triton.start()
    assert not triton.is_running()


def test_a_model_that_fails_to_load_is_named_with_its_error(tmp_path: Path) -> None:
    repository = model_repository(tmp_path / "models", {"echo": ECHO_MODEL, "broken": BROKEN_MODEL})
    triton = LocalTriton(repository, VENV, log_file=tmp_path / "triton.log", startup_timeout_s=120)
    with pytest.raises(TritonStartError, match="a model failed to load") as caught:
        triton.start()
    assert "broken" in str(caught.value) and "weights file is corrupt" in str(caught.value)
    assert not triton.is_running()


def test_a_missing_virtualenv_is_a_clear_error(tmp_path: Path) -> None:
    triton = LocalTriton(REPO / "triton_models", tmp_path / "no-venv")
    with pytest.raises(TritonStartError, match="no virtualenv here"):
        triton.start()


@pytest.mark.parametrize("which", ["http", "grpc"])
def test_a_port_taken_after_the_check_is_found_in_the_log(tmp_path: Path, occupied_port: int, which: str) -> None:
    """Another process can grab a port between our check and tritonserver's bind: the launcher
    must then read the bind failure from the log rather than time out."""
    ports = {**vars(TritonPorts.free()), which: occupied_port}
    triton = LocalTriton(
        model_repository(tmp_path / "models", {"echo": ECHO_MODEL}),
        VENV,
        ports=TritonPorts(**ports),
        log_file=tmp_path / "triton.log",
        startup_timeout_s=60,
        probe_ports=False,
    )
    with pytest.raises(PortInUseError, match="a port is taken") as caught:
        triton.start()
    assert str(occupied_port) in str(caught.value)
    assert not triton.is_running()


def test_a_failing_network_is_transient_for_the_client(tmp_path: Path) -> None:
    """The detector's BLS call failing (here: its network model does not exist) answers
    UNAVAILABLE, which the client reports as InferenceUnavailable (retry), not a rejection."""
    repository = tmp_path / "models"
    shutil.copytree(
        REPO / "triton_models" / "detector", repository / "detector", ignore=shutil.ignore_patterns("__pycache__")
    )
    config = repository / "detector" / "config.pbtxt"
    config.write_text(config.read_text().replace('string_value: "nanodet"', 'string_value: "nanodet_gone"'))

    async def detect(url: str) -> None:
        async with DetectorClient(url, timeout_s=30) as client:
            await client.detect((REPO / "tests" / "data" / "photos" / "dog.jpg").read_bytes())

    with LocalTriton(repository, VENV, log_file=tmp_path / "triton.log") as triton:
        with pytest.raises(InferenceUnavailable, match="UNAVAILABLE: detector network failed"):
            asyncio.run(detect(triton.grpc_url))
