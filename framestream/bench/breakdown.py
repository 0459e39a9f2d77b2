"""Where a frame's time goes, from what the pipeline records, and Triton's own statistics.

Sources, each read before and after a measured window (counters, so differences):

- the frames table (per frame: ``ingest_ms``, ``queue_ms``, ``batch_wait_ms``,
  ``triton_ms``, ``detected_at``, ``stored_at``), read per round label;
- the worker's /metrics histograms: detect ``publish`` (produce and delivery of a
  batch's outputs), persist ``flush``, the sink's INSERT time per table;
- Triton's statistics extension (per model: requests, time queued, time computing);
- the feeder's produce -> ack latencies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str | None) -> Samples:
    """Every sample of a /metrics page, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text or "")
        for sample in family.samples
    }


def metric_delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """Change of the sum of the samples of ``name`` matching ``labels`` between two pages."""
    wanted = set(labels.items())

    def total(samples: Samples) -> float:
        return sum(value for (sample, tags), value in samples.items() if sample == name and wanted <= tags)

    return total(after) - total(before)


def histogram_mean_ms(before: Samples, after: Samples, name: str, **labels: str) -> float | None:
    """Mean of a seconds histogram's observations made between two pages, in ms (None if none)."""
    count = metric_delta(before, after, f"{name}_count", **labels)
    return None if count <= 0 else 1000.0 * metric_delta(before, after, f"{name}_sum", **labels) / count


@dataclass(frozen=True)
class TritonModelStats:
    """Cumulative figures of one model from Triton's statistics extension."""

    requests: int
    executions: int
    inferences: int
    queue_ns: int
    compute_ns: int  # input + infer + output

    def minus(self, earlier: TritonModelStats) -> TritonModelStats:
        return TritonModelStats(*(getattr(self, name) - getattr(earlier, name) for name in self.__annotations__))

    @property
    def queue_ms(self) -> float | None:
        return self.queue_ns / self.requests / 1e6 if self.requests else None

    @property
    def compute_ms(self) -> float | None:
        return self.compute_ns / self.requests / 1e6 if self.requests else None

    @property
    def batch_size(self) -> float | None:
        return self.inferences / self.executions if self.executions else None


def triton_stats(url: str) -> dict[str, TritonModelStats]:
    """Per model, Triton's cumulative statistics now (gRPC, ``get_inference_statistics``)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        document = client.get_inference_statistics(as_json=True)
    finally:
        client.close()
    stats = {}
    for model in document.get("model_stats", []):
        inference = model.get("inference_stats", {})

        def ns(part: str, inference: Mapping[str, Mapping[str, str]] = inference) -> int:
            return int(inference.get(part, {}).get("ns", 0))

        stats[model["name"]] = TritonModelStats(
            requests=int(inference.get("success", {}).get("count", 0)),
            executions=int(model.get("execution_count", 0)),
            inferences=int(model.get("inference_count", 0)),
            queue_ns=ns("queue"),
            compute_ns=ns("compute_input") + ns("compute_infer") + ns("compute_output"),
        )
    return stats


def triton_delta(
    before: Mapping[str, TritonModelStats], after: Mapping[str, TritonModelStats]
) -> dict[str, TritonModelStats]:
    return {name: stats.minus(before[name]) for name, stats in after.items() if name in before}


FRAME_TIMES_SQL = """
SELECT count(), avg(ingest_ms), avg(queue_ms), avg(batch_wait_ms), avg(triton_ms), avg(detect_latency_ms),
       avg(store_latency_ms), quantileExact(0.5)(store_latency_ms), quantileExact(0.95)(store_latency_ms),
       quantileExact(0.95)(detect_latency_ms), quantileExact(0.95)(triton_ms), quantileExact(0.5)(detect_latency_ms),
       toUnixTimestamp64Milli(max(stored_at)) / 1000.0,
       quantileExact(0.95)(ingest_ms), quantileExact(0.95)(queue_ms), quantileExact(0.95)(batch_wait_ms),
       quantileExact(0.95)(store_latency_ms - detect_latency_ms)
FROM {database}.frames WHERE startsWith(camera_id, {{label:String}})
"""


@dataclass(frozen=True)
class FrameTimes:
    """Per round label, from the frames table: means (ms) and a few percentiles."""

    frames: int
    ingest_ms: float
    queue_ms: float
    batch_wait_ms: float
    triton_ms: float
    detected_ms: float  # captured -> detections made
    stored_ms: float  # captured -> row stored
    stored_p50_ms: float
    stored_p95_ms: float
    detected_p95_ms: float
    triton_p95_ms: float
    detected_p50_ms: float
    last_stored_at: float  # epoch seconds: when the label's last row went in
    # p95 of each recorded step, to tell which one a tail of captured -> detections/stored comes from
    ingest_p95_ms: float  # captured -> produced
    queue_p95_ms: float  # produced -> picked up by detect
    batch_wait_p95_ms: float
    after_detect_p95_ms: float  # detections made -> row stored

    def p95_steps(self) -> dict[str, float]:
        return {
            "captured -> produced": self.ingest_p95_ms,
            "queue: produce -> detect pickup": self.queue_p95_ms,
            "batch wait": self.batch_wait_p95_ms,
            "Triton round trip": self.triton_p95_ms,
            "detections made -> stored": self.after_detect_p95_ms,
            "captured -> detections (total)": self.detected_p95_ms,
            "captured -> stored (total)": self.stored_p95_ms,
        }


def frame_times(client: object, database: str, labels: list[str]) -> dict[str, FrameTimes]:
    sql = FRAME_TIMES_SQL.format(database=database)
    rows = {label: client.query(sql, parameters={"label": f"{label}-"}).result_rows[0] for label in labels}  # type: ignore[attr-defined]
    return {label: FrameTimes(int(row[0]), *(float(value or 0.0) for value in row[1:])) for label, row in rows.items()}


@dataclass(frozen=True)
class WindowTimes:
    """What a measured window's counters say, beside the frames table's per-frame times."""

    ack_ms: float | None  # feeder: produce() -> broker ack (mean)
    publish_ms: float | None  # detect: a batch's outputs produced and acknowledged (mean per batch)
    flush_ms: float | None  # persist: one flush, every table (mean)
    insert_ms: float | None  # sink: lookup + INSERT of the frames table's batch (mean)
    triton: dict[str, TritonModelStats]


def steps(frames: FrameTimes, window: WindowTimes, model: str = "detector") -> list[tuple[str, float | None]]:
    """(step, mean ms) in a frame's order; the last step is what remains of captured -> stored."""
    server = window.triton.get(model)
    queue = server.queue_ms if server else None
    compute = server.compute_ms if server else None
    grpc = frames.triton_ms - (queue or 0.0) - (compute or 0.0) if server else None
    publish, insert = window.publish_ms or 0.0, window.insert_ms or 0.0
    persist_wait = frames.stored_ms - frames.detected_ms - publish - insert
    return [
        ("produce -> broker ack (feeder)", window.ack_ms),
        ("queue: produce -> detect pickup", frames.queue_ms),
        ("batch wait", frames.batch_wait_ms),
        ("gRPC + client (Triton round trip - server)", grpc),
        ("Triton queue", queue),
        ("Triton compute", compute),
        ("publish detections (per batch)", window.publish_ms),
        ("persist: consume + wait for flush", persist_wait),
        ("insert (frames table)", window.insert_ms),
    ]
