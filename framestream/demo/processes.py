"""Child processes of the demo (setup, worker, ingest), each logging to its own file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class ChildProcessError_(RuntimeError):
    """A child command failed; the message names its log file."""


class ManagedProcess:
    """``python -m framestream.cli ARGS`` with extra environment, output to ``log_path``."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = {**os.environ, **{name: value for name, value in env.items() if value}}
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "framestream.cli", *self.args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        return self

    def raise_if_exited(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise ChildProcessError_(
                f"`framestream {' '.join(self.args)}` exited with {self._process.returncode}; see {self.log_path}"
            )

    def finished(self) -> bool:
        """True once the command exited with 0; a failure raises, naming the log."""
        if self._process is None or self._process.poll() is None:
            return False
        if self._process.returncode != 0:
            self.raise_if_exited()
        return True

    def wait(self, timeout_s: float) -> int:
        assert self._process is not None
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            self.stop()
            raise ChildProcessError_(f"`framestream {' '.join(self.args)}` timed out; see {self.log_path}") from error

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM (the worker flushes and commits), then SIGKILL after ``grace_s``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @classmethod
    def run_to_end(cls, args: list[str], env: dict[str, str], log_path: Path, timeout_s: float) -> None:
        child = cls(args, env, log_path).start()
        code = child.wait(timeout_s)
        if code != 0:
            raise ChildProcessError_(f"`framestream {' '.join(args)}` exited with {code}; see {log_path}")
