"""Prometheus metrics of a stream worker, served by prometheus_client's HTTP server.

Each worker owns a ``CollectorRegistry`` (not the global one), so several workers
can live in one test process and every series belongs to one worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class WorkerMetrics:
    """The series every stage updates. Label values are bounded: stages, steps, topics, partitions."""

    def __init__(self, worker_id: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.worker_id = worker_id
        self.frames = Counter(
            "framestream_frames_total",
            "Records processed per stage (detect: frames; alert: per-frame detections; persist: detections, "
            "alerts, dead letters); outcome ok or deadletter. rate() gives frames/s",
            ["stage", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "framestream_stage_latency_seconds",
            "Time per processing step (detect: queue, batch_wait, triton, publish; alert: evaluate; persist: flush)",
            ["stage", "step"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "framestream_batch_size",
            "Messages per micro-batch or flush",
            ["stage"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "framestream_triton_requests_in_flight",
            "Triton requests awaiting a reply",
            registry=self.registry,
        )
        self.lag = Gauge(
            "framestream_consumer_lag_records",
            "High watermark minus next offset to process, per assigned partition. APPROXIMATE on Tansu: "
            "its high watermark is the base offset of the last record batch plus one, too low when that "
            "batch held several records (streams/kafka_config.py, quirk 1); exact on Apache Kafka.",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "framestream_dead_letters_total",
            "Records sent to the dead-letter topic, by stage and error class",
            ["stage", "reason"],
            registry=self.registry,
        )
        self.persisted = Counter(
            "framestream_persisted_messages_total",
            "Messages whose rows ClickHouse acknowledged (kind: detections, alerts, deadletters)",
            ["kind"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "framestream_alerts_total",
            "Alerts produced, by rule",
            ["rule_id"],
            registry=self.registry,
        )
        self.retries = Counter(
            "framestream_transient_retries_total",
            "Retries after a transient fault (Triton, ClickHouse, Kafka)",
            ["stage", "target"],
            registry=self.registry,
        )
        self.assigned = Gauge(
            "framestream_assigned_partitions",
            "Partitions assigned to this worker, per topic",
            ["topic"],
            registry=self.registry,
        )
        self._next_offset: dict[TP, int] = {}

    @contextmanager
    def request_in_flight(self) -> Iterator[None]:
        self.in_flight.inc()
        try:
            yield
        finally:
            self.in_flight.dec()

    def processed(self, tp: TP, offset: int) -> None:
        """Remember the next offset to process, for the lag gauge."""
        if offset + 1 > self._next_offset.get(tp, -1):
            self._next_offset[tp] = offset + 1

    def update_lag(self, consumer: faust.types.ConsumerT) -> None:
        for tp in consumer.assignment():
            if tp not in self._next_offset:
                continue
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - the driver raises various errors before the first fetch
                continue
            if highwater is not None:
                lag = max(0, highwater - self._next_offset[tp])
                self.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

    def update_assignment(self, assigned: set[TP]) -> None:
        self.assigned.clear()
        for topic in {tp.topic for tp in assigned}:
            self.assigned.labels(topic=topic).set(sum(1 for tp in assigned if tp.topic == topic))


def serve(metrics: WorkerMetrics, port: int, host: str = "127.0.0.1") -> int:
    """Start the /metrics HTTP server in a daemon thread; returns the bound port (useful with 0)."""
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    bound = int(server.server_address[1])
    log.info("metrics served", extra={"metrics_url": f"http://{host}:{bound}/metrics"})
    return bound


def register_consumer_metrics(app: faust.App, metrics: WorkerMetrics, interval_s: float) -> None:
    """Keep the lag and assignment gauges current: on every rebalance, and the lag every ``interval_s``."""

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: faust.App, assigned: set[TP], **kwargs: object) -> None:
        metrics.update_assignment(set(assigned))

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: faust.App, revoked: set[TP], **kwargs: object) -> None:
        metrics.update_assignment(set())

    @app.timer(interval=interval_s)
    async def refresh_lag() -> None:
        metrics.update_lag(app.consumer)
