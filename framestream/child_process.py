"""One way to run a child process: a service (broker, tritonserver) or a ``framestream`` command.

    worker = ChildProcess.framestream(["worker", "--stages", "detect"], log_path=Path("var/logs/w.log"))
    with worker:            # start() ... stop(): the stop signal, a grace period, then SIGKILL
        worker.raise_if_exited()

Every child logs to its own file (stdout and stderr together), dies with its parent
(``PR_SET_PDEATHSIG``, so a crashed test run or CLI leaves nothing behind) and is stopped
the same way: ``stop_signal``, wait up to the grace period, then SIGKILL its process group.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1


class ChildProcessFailed(RuntimeError):
    """A child exited when it should not have, or with a non-zero status; the message names its log."""


def _death_signal_hook(signum: signal.Signals) -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to send ``signum`` to the child when its parent thread dies.

    libc is loaded here, in the parent: the hook runs between fork and exec, where loading a
    library could deadlock a threaded process. Linux ties this to the starting *thread*: start
    long-lived children from a thread that outlives them (the main thread)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signum)

    return set_death_signal


class ChildProcess:
    """A command run in its own process group, its output appended to ``log_path``."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        grace_s: float = 30.0,
    ) -> None:
        self.command = [str(part) for part in command]
        self.log_path = Path(log_path)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.grace_s = grace_s
        self.returncode: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @classmethod
    def framestream(
        cls, args: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None, grace_s: float = 60.0
    ) -> ChildProcess:
        """``python -m framestream.cli ARGS`` with this interpreter, from the repository root."""
        return cls(
            [sys.executable, "-m", "framestream.cli", *args], log_path=log_path, env=env, cwd=REPO_ROOT, grace_s=grace_s
        )

    @property
    def name(self) -> str:
        return " ".join(self.command[3:] if self.command[1:3] == ["-m", "framestream.cli"] else self.command[:1])

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ChildProcess:
        if self.running:
            raise ChildProcessFailed(f"`{self.name}` is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.returncode = None
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_death_signal_hook(self.stop_signal),
            )
        return self

    def poll(self) -> int | None:
        """The exit status once the child has exited, else None."""
        if self._process is not None and self._process.poll() is not None:
            self.returncode = self._process.returncode
        return self.returncode

    def raise_if_exited(self) -> None:
        """Raise ``ChildProcessFailed`` (with the log's tail) if the child is no longer running."""
        if self._process is not None and self.poll() is not None:
            raise ChildProcessFailed(
                f"`{self.name}` exited with {self.returncode}; see {self.log_path}:\n{self.log_tail(20)}"
            )

    def finished(self) -> bool:
        """True once the child exited with 0; a non-zero exit raises ``ChildProcessFailed``."""
        if self._process is None or self.poll() is None:
            return False
        if self.returncode != 0:
            self.raise_if_exited()
        return True

    def wait(self, timeout_s: float) -> int:
        """Wait for the child to exit; on timeout stop it and raise ``ChildProcessFailed``."""
        if self._process is None:
            raise ChildProcessFailed(f"`{self.name}` was never started")
        try:
            self.returncode = self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            self.stop()
            raise ChildProcessFailed(f"`{self.name}` timed out after {timeout_s:.0f}s; see {self.log_path}") from error
        return self.returncode

    def run_to_end(self, timeout_s: float) -> None:
        """Start, wait, and raise ``ChildProcessFailed`` unless the child exits with 0."""
        code = self.start().wait(timeout_s)
        if code != 0:
            raise ChildProcessFailed(f"`{self.name}` exited with {code}; see {self.log_path}:\n{self.log_tail(20)}")

    def stop(self, grace_s: float | None = None) -> int | None:
        """``stop_signal``, then SIGKILL the process group after the grace period. Idempotent."""
        process = self._process
        if process is None:
            return self.returncode
        if process.poll() is None:
            self.signal(self.stop_signal)
            try:
                process.wait(timeout=self.grace_s if grace_s is None else grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._kill_group(process.pid)  # children it left behind (e.g. Triton's model stubs)
        return self.poll()

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, with no chance to flush or commit."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        self._kill_group(process.pid)
        process.wait(timeout=30)
        self.poll()

    def pause(self) -> None:
        """SIGSTOP: a frozen process (a long GC pause, a stuck host)."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def signal(self, signum: signal.Signals) -> None:
        if self.running:
            assert self._process is not None
            self._process.send_signal(signum)

    @staticmethod
    def _kill_group(pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def log_since_start(self) -> str:
        """What the child logged since its latest start."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode("utf-8", errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_since_start().splitlines()[-lines:])

    def __enter__(self) -> ChildProcess:
        return self if self.running else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class WorkerProcess(ChildProcess):
    """``framestream worker`` in a subprocess, watched through its Prometheus /metrics.

    worker = WorkerProcess(["--stages", "detect"], log_path=log, env=env, worker_id="a").start()
    worker.wait_for_metric("framestream_assigned_partitions", 4, timeout_s=60, topic="vision.frames.v1")
    worker.stop()   # SIGTERM: drain, flush, commit; SIGKILL after the grace period
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        worker_id: str,
        metrics_port: int | None = None,
        grace_s: float = 60.0,
    ) -> None:
        from framestream.services.probes import free_port

        self.metrics_port = metrics_port or free_port()
        self.worker_id = worker_id
        command = [
            sys.executable,
            "-m",
            "framestream.cli",
            "worker",
            *args,
            "--metrics-port",
            str(self.metrics_port),
            "--worker-id",
            worker_id,
        ]
        super().__init__(command, log_path=log_path, env=env, cwd=REPO_ROOT, grace_s=grace_s)

    def metrics(self) -> str | None:
        """The /metrics page, or None while the worker does not answer (starting, paused, gone)."""
        from framestream.services.probes import metrics_text

        return metrics_text(self.metrics_port)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 when absent)."""
        from framestream.services.probes import metric_value

        return metric_value(self.metrics(), name, **labels)

    def wait_for_metric(self, name: str, at_least: float, timeout_s: float, **labels: str) -> float:
        """Wait until the metric reaches ``at_least``; returns the ``time.perf_counter()`` it was seen.
        Raises ``ChildProcessFailed`` if the worker exits, ``TimeoutError`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.metric(name, **labels) < at_least:
            self.raise_if_exited()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"`{self.name}`: timed out after {timeout_s:.0f}s waiting for "
                    f"{name}{labels} >= {at_least}; see {self.log_path}"
                )
            time.sleep(0.05)
        return time.perf_counter()

    def wait_for_metrics_endpoint(self, timeout_s: float) -> None:
        """Wait until /metrics answers (the worker has started); raises if it exits first."""
        deadline = time.monotonic() + timeout_s
        while self.metrics() is None:
            self.raise_if_exited()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"`{self.name}`: /metrics did not answer within {timeout_s:.0f}s; see {self.log_path}"
                )
            time.sleep(0.1)
