"""Small probes of local processes: free ports, and the Prometheus metrics a worker serves.

The embedded services, the demo, the benchmarks and the tests all start processes on free
ports and watch workers through their /metrics; they share these functions.
"""

from __future__ import annotations

import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """A port the kernel reports free right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound. SO_REUSEADDR, as servers use it, so sockets of a
    just-stopped server lingering in TIME_WAIT do not count as "in use"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def metrics_text(port: int, host: str = LOCALHOST) -> str | None:
    """The /metrics page on ``port``, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as response:
            return response.read().decode()
    except OSError:  # URLError, refused, reset, timeout
        return None


def metric_value(text: str | None, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when absent)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text or "")
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())
    )
