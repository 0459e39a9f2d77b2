"""Run the real ``tritonserver`` from the nvidia-pytriton wheel, serving ``triton_models/`` on CPU.

The wheel ships the binary, the Python backend and one backend stub per Python version. As
pytriton itself does, a temporary backend directory pairs ``libtriton_python.so`` with the
stub for the Triton virtualenv's Python (3.11). That stub links ``libpython3.11``, so the
interpreter's own lib directory goes first on LD_LIBRARY_PATH; PYTHONPATH gives the models
the virtualenv's packages (numpy < 2, onnxruntime, Pillow, OpenCV) and the repository root
(``processors/``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from framestream.child_process import ChildProcess
from framestream.services.probes import port_is_free
from framestream.settings import REPO_ROOT

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
_BIND_FAILURE = re.compile(r"address already in use|failed to bind|Failed to start (HTTP|GRPC|Metrics)", re.I)
_MODEL_FAILURE = re.compile(r"failed to load '|UNAVAILABLE: |model_repository_manager.*error", re.I)


class TritonStartError(RuntimeError):
    """tritonserver did not become ready; the message says why (from its log)."""


class PortInUseError(TritonStartError):
    pass


@dataclass(frozen=True)
class TritonPorts:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls, host: str = LOCALHOST) -> TritonPorts:
        """Three distinct ports the kernel reports free right now (bound to port 0, then released)."""
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(3)]
        try:
            for sock in sockets:
                sock.bind((host, 0))
            http, grpc, metrics = (sock.getsockname()[1] for sock in sockets)
        finally:
            for sock in sockets:
                sock.close()
        return cls(http=http, grpc=grpc, metrics=metrics)


@dataclass(frozen=True)
class TritonDistribution:
    """Where the wheel's files and the virtualenv's interpreter pieces are."""

    tritonserver: Path
    python_backend: Path  # folder with libtriton_python.so and triton_python_backend_utils.py
    stub: Path
    wheel_libs: Path  # nvidia_pytriton.libs
    python_libdir: Path  # holds libpython3.X.so for the stub
    site_packages: Path

    @classmethod
    def locate(cls, venv: Path) -> TritonDistribution:
        python = venv / "bin" / "python"
        if not python.exists():
            raise TritonStartError(
                f"{venv}: no virtualenv here (missing bin/python); run ./scripts/setup.sh, which builds .venv-triton"
            )
        probe = (
            "import json, sys, sysconfig; print(json.dumps([sysconfig.get_config_var('LIBDIR'), "
            "sysconfig.get_paths()['purelib'], '%d.%d' % sys.version_info[:2]]))"
        )
        libdir, purelib, version = json.loads(subprocess.check_output([str(python), "-c", probe], text=True))
        package = Path(purelib) / "pytriton" / "tritonserver"
        found = cls(
            tritonserver=package / "bin" / "tritonserver",
            python_backend=package / "backends" / "python",
            stub=package / "python_backend_stubs" / version / "triton_python_backend_stub",
            wheel_libs=Path(purelib) / "nvidia_pytriton.libs",
            python_libdir=Path(libdir),
            site_packages=Path(purelib),
        )
        for path in (found.tritonserver, found.python_backend / "libtriton_python.so", found.stub):
            if not path.exists():
                raise TritonStartError(f"{path} is missing: install nvidia-pytriton 0.7.0 into {venv}")
        return found


class LocalTriton:
    """A tritonserver subprocess: ``with LocalTriton(repo, venv) as triton: triton.grpc_url``."""

    def __init__(
        self,
        model_repository: Path,
        venv: Path,
        ports: TritonPorts | None = None,
        log_file: Path | None = None,
        host: str = LOCALHOST,
        startup_timeout_s: float = 180.0,
        probe_ports: bool = True,  # False: leave a taken port to the server's own bind, read from its log
        pythonpath: tuple[Path, ...] = (REPO_ROOT,),
        grpc_tls: tuple[Path, Path] | None = None,  # (certificate chain, private key): gRPC over TLS
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.grpc_tls = grpc_tls
        self.venv = Path(venv)
        self.ports = ports or TritonPorts.free(host)
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.probe_ports = probe_ports
        self.pythonpath = pythonpath
        self._log_file = Path(log_file) if log_file else None
        self._workdir: Path | None = None
        self._child: ChildProcess | None = None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.ports.http}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports.metrics}/metrics"

    @property
    def log_path(self) -> Path:
        if self._log_file is not None:
            return self._log_file
        if self._workdir is None:
            raise RuntimeError("tritonserver has not been started")
        return self._workdir / "tritonserver.log"

    def start(self) -> LocalTriton:
        """Start tritonserver and wait until every model is ready; raise TritonStartError if not."""
        if self._child is not None:
            raise RuntimeError("this LocalTriton is already running")
        for name, port in vars(self.ports).items() if self.probe_ports else ():
            _require_free_port(self.host, port, name)
        distribution = TritonDistribution.locate(self.venv)
        self._workdir = Path(tempfile.mkdtemp(prefix="framestream-triton-"))
        backends = _prepare_backend_directory(distribution, self._workdir)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Its own process group (ChildProcess does that): stop() reaches the model stubs too.
        self._child = ChildProcess(
            [str(distribution.tritonserver), *self._arguments(backends)],
            log_path=self.log_path,
            env=self._environment(distribution),
            # With PYTHONPATH alone the models found `processors/` only when framestream ran from
            # the repository root (pytriton 0.7.0's stubs import from their working directory):
            # start there, whatever directory framestream was started from.
            cwd=self.pythonpath[0] if self.pythonpath else None,
            grace_s=20.0,
        ).start()
        log.info(
            "tritonserver started", extra={"pid": self._child.pid, "grpc_url": self.grpc_url, "log": str(self.log_path)}
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (Triton unloads models and exits), then SIGKILL the process group if it hangs."""
        child, self._child = self._child, None
        if child is not None:
            child.stop(grace_s=timeout_s)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)  # backend links (and the log unless log_file)
            self._workdir = None

    def __enter__(self) -> LocalTriton:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def is_running(self) -> bool:
        return self._child is not None and self._child.running

    def _arguments(self, backends: Path) -> list[str]:
        return [
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            # A batch of 16 letterboxed images is 33 MB; grow the stubs' shared memory in big steps.
            "--backend-config=python,shm-default-byte-size=16777216",
            "--backend-config=python,shm-growth-byte-size=16777216",
            f"--http-address={self.host}",
            f"--http-port={self.ports.http}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            # Explicit: `framestream model promote|rollback` reload a model through the model-control
            # API while it serves; every model of the repository is loaded at start.
            "--model-control-mode=explicit",
            "--load-model=*",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--exit-timeout-secs=15",
            "--log-verbose=0",
            *self._tls_arguments(),
        ]

    def _tls_arguments(self) -> list[str]:
        """gRPC over TLS (the HTTP port, used for readiness, stays on ``host``)."""
        if self.grpc_tls is None:
            return []
        chain, key = self.grpc_tls
        return ["--grpc-use-ssl=true", f"--grpc-server-cert={chain}", f"--grpc-server-key={key}"]

    def _environment(self, distribution: TritonDistribution) -> dict[str, str]:
        env = dict(os.environ)
        library_path = [str(distribution.python_libdir), str(distribution.wheel_libs)]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(library_path + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
        env["PYTHONPATH"] = os.pathsep.join([str(distribution.site_packages), *map(str, self.pythonpath)])
        env["PYTHONNOUSERSITE"] = "1"
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "")])
        return env

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._child is not None
            if self._child.poll() is not None:
                raise self._diagnose(f"tritonserver exited with code {self._child.returncode} while starting")
            if _http_ok(f"{self.http_url}/v2/health/ready"):
                log.info("tritonserver ready", extra={"grpc_url": self.grpc_url})
                return
            time.sleep(0.25)
        raise self._diagnose(f"tritonserver not ready after {self.startup_timeout_s:.0f} s")

    def _diagnose(self, headline: str) -> TritonStartError:
        """The most telling lines of the log: bind failures first, then model load failures."""
        lines = self._child.log_since_start().splitlines() if self._child else _read_lines(self.log_path)
        binds = [line for line in lines if _BIND_FAILURE.search(line)]
        if binds:
            return PortInUseError(f"{headline}: a port is taken ({self.ports}):\n" + "\n".join(binds[:5]))
        models = [line for line in lines if _MODEL_FAILURE.search(line)]
        if models:
            return TritonStartError(f"{headline}: a model failed to load:\n" + "\n".join(_dedupe(models)[:10]))
        where = f" ({self._log_file})" if self._log_file else ""
        return TritonStartError(f"{headline}; last log lines{where}:\n" + "\n".join(lines[-25:]))


def _prepare_backend_directory(distribution: TritonDistribution, workdir: Path) -> Path:
    """backends/python/ = the wheel's Python backend + the stub for the virtualenv's Python."""
    python_dir = workdir / "backends" / "python"
    python_dir.mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (python_dir / name).symlink_to(distribution.python_backend / name)
    # A symlink, not a copy: the stub finds the wheel's libcudart through its $ORIGIN rpath.
    (python_dir / "triton_python_backend_stub").symlink_to(distribution.stub)
    return workdir / "backends"


def _require_free_port(host: str, port: int, name: str) -> None:
    """Fail if something listens on the port (TIME_WAIT leftovers of a stopped server do not count)."""
    if not port_is_free(host, port):
        raise PortInUseError(f"cannot start tritonserver: {name} port {host}:{port} is in use")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _dedupe(lines: list[str]) -> list[str]:
    seen: set[str] = set()
    return [line.strip() for line in lines if not (line.strip() in seen or seen.add(line.strip()))]
