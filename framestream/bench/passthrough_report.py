"""Figures of ``bench passthrough``: per variant, medians over rounds; printed and as JSON."""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

from framestream.bench import breakdown
from framestream.bench.rounds import Round, Variant

PIPELINE_ROLES = ("broker", "ingest", "worker", "triton")
ROLE_NAMES = {
    "broker": "broker (JVM)",
    "ingest": "ingest (feeder process)",
    "worker": "worker (faust stages + chDB, in-process)",
    "triton": "tritonserver + Python stubs",
    "bench": "bench harness (not counted)",
}


@dataclass(frozen=True)
class Report:
    args: argparse.Namespace
    variant: Variant
    idle_per_s: dict[str, float]  # CPU-s per s of each process with no frames flowing
    model_cpu_ms: float
    frame_bytes: list[int]

    @property
    def measured(self) -> list[Round]:
        return [r for r in self.variant.rounds if r.label.startswith("r")]

    @property
    def paced(self) -> Round | None:
        return next((r for r in self.variant.rounds if r.label == "paced"), None)

    def cpu_ms(self, net: bool = False) -> dict[str, float]:
        """Median over rounds of CPU-ms per frame, per process; ``net``: less what it burns idle."""

        def per_frame(round_: Round, role: str) -> float:
            idle = self.idle_per_s.get(role, 0.0) * round_.seconds if net and role != "ingest" else 0.0
            return 1000.0 * (round_.cpu_s[role] - idle) / round_.frames

        roles = [role for role in (*PIPELINE_ROLES, "bench") if all(role in r.cpu_s for r in self.measured)]
        return {role: statistics.median(per_frame(r, role) for r in self.measured) for role in roles}

    def figures(self) -> dict[str, object]:
        gross, net = self.cpu_ms(), self.cpu_ms(net=True)
        pipeline_ms = sum(gross.get(role, 0.0) for role in PIPELINE_ROLES)
        pipeline_net_ms = sum(net.get(role, 0.0) for role in PIPELINE_ROLES)
        model = 0.0 if self.args.model == "null" else self.model_cpu_ms
        frames_per_s = statistics.median(r.frames_per_s for r in self.measured)
        middle = self.measured[len(self.measured) // 2]
        figures: dict[str, object] = {
            "bench": "passthrough",
            "model": self.args.model,
            "frames": self.args.frames,
            "rounds": self.args.rounds,
            "concurrency": self.args.concurrency,
            "cameras": self.args.cameras,
            "worker_env": dict(self.variant.extra_env),
            "frame_kb_mean": round(statistics.fmean(self.frame_bytes) / 1000, 1),
            "frames_per_s": round(frames_per_s, 1),
            "frames_per_s_per_round": [round(r.frames_per_s, 1) for r in self.measured],
            "cpu_ms_per_frame": _rounded(gross),
            "cpu_ms_per_frame_net_of_idle": _rounded(net),
            "idle_cpu_ms_per_s": _rounded({role: 1000.0 * value for role, value in self.idle_per_s.items()}),
            "pipeline_cpu_ms_per_frame": round(pipeline_ms, 3),
            "pipeline_cpu_ms_per_frame_net_of_idle": round(pipeline_net_ms, 3),
            "model_cpu_ms_per_frame_inprocess": round(self.model_cpu_ms, 3),
            "overhead_cpu_ratio": round((pipeline_ms - model) / self.model_cpu_ms, 4),
            "overhead_cpu_ratio_net_of_idle": round((pipeline_net_ms - model) / self.model_cpu_ms, 4),
            "cpu_cores_busy": round(pipeline_ms * frames_per_s / 1000.0, 2),
            "time_ms_mean": steps(middle),
        }
        paced = self.paced
        if paced is not None and paced.times is not None:
            server = paced.window.triton.get("detector")
            server_ms = (server.queue_ms or 0.0) + (server.compute_ms or 0.0) if server else None
            figures["paced"] = {
                "fps": round(paced.frames_per_s, 1),
                "frames": paced.frames,
                "detect_p95_ms": round(paced.times.detected_p95_ms, 1),
                "stored_p50_ms": round(paced.times.stored_p50_ms, 1),
                "stored_p95_ms": round(paced.times.stored_p95_ms, 1),
                "triton_p95_ms": round(paced.times.triton_p95_ms, 1),
                "triton_server_ms_mean": None if server_ms is None else round(server_ms, 2),
                "time_ms_mean": steps(paced),
                "time_ms_p95": {name: round(value, 1) for name, value in paced.times.p95_steps().items()},
            }
        return figures

    def ratios(self, other: Report) -> dict[str, object]:
        """This variant's figures over the other's, measured in the same run."""
        mine, theirs = self.figures(), other.figures()
        cpu_mine, cpu_theirs = mine["cpu_ms_per_frame"], theirs["cpu_ms_per_frame"]
        return {
            "frames_per_s": _ratio(mine["frames_per_s"], theirs["frames_per_s"]),
            "pipeline_cpu_ms_per_frame": _ratio(mine["pipeline_cpu_ms_per_frame"], theirs["pipeline_cpu_ms_per_frame"]),
            "cpu_ms_per_frame": {
                role: _ratio(cpu_mine[role], cpu_theirs[role])  # type: ignore[index]
                for role in cpu_mine
                if role in cpu_theirs
            },  # type: ignore[union-attr,operator]
        }


def steps(round_: Round) -> dict[str, float | None]:
    """Where the round's frames spent their time (means, ms), in a frame's order."""
    assert round_.times is not None
    steps_ms = breakdown.steps(round_.times, round_.window)
    result = {name: None if value is None else round(value, 2) for name, value in steps_ms}
    result["captured -> detections (total)"] = round(round_.times.detected_ms, 2)
    result["captured -> stored (total)"] = round(round_.times.stored_ms, 2)
    server = round_.window.triton.get("detector")
    result["Triton batch size (mean)"] = round(server.batch_size, 2) if server and server.batch_size else None
    return result


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 3) for key, value in values.items()}


def _ratio(mine: object, theirs: object) -> float | None:
    return round(float(mine) / float(theirs), 3) if theirs else None  # type: ignore[arg-type]


def print_report(report: Report) -> None:
    figures = report.figures()
    args = report.args
    env = f", worker env {figures['worker_env']}" if figures["worker_env"] else ""
    print(
        f"\nframestream bench passthrough [{report.variant.name}: {report.variant.tree}{env}], model {args.model}: "
        f"{args.frames} frames/round of ~{figures['frame_kb_mean']} KB JPEGs, {args.rounds} rounds (medians), "
        f"concurrency {args.concurrency}, {args.cameras} cameras"
    )
    print(
        f"frames/s, Kafka -> detect -> Triton -> detections -> ClickHouse: {figures['frames_per_s']} "
        f"(per round: {figures['frames_per_s_per_round']})"
    )
    gross, net = figures["cpu_ms_per_frame"], figures["cpu_ms_per_frame_net_of_idle"]
    idle = figures["idle_cpu_ms_per_s"]
    print(f"\n{'CPU per frame':46}{'ms':>9}{'net of idle':>13}{'idle ms/s':>11}")
    for role, value in gross.items():  # type: ignore[union-attr]
        print(f"  {ROLE_NAMES[role]:44}{value:>9.3f}{net[role]:>13.3f}{idle.get(role, 0.0):>11.1f}")  # type: ignore[index,union-attr]
    print(
        f"  {'pipeline (broker + ingest + worker + triton)':44}{figures['pipeline_cpu_ms_per_frame']:>9.3f}"
        f"{figures['pipeline_cpu_ms_per_frame_net_of_idle']:>13.3f}"
    )
    print(f"  {'model alone, in-process (1 ORT thread)':44}{figures['model_cpu_ms_per_frame_inprocess']:>9.3f}")
    print(
        f"overhead_cpu_ratio (pipeline CPU beyond the model / model CPU): {figures['overhead_cpu_ratio']:.3f} "
        f"({figures['overhead_cpu_ratio_net_of_idle']:.3f} net of idle); cores busy: {figures['cpu_cores_busy']}"
    )
    print(f"\n{'where a frame spends its time (mean ms, middle round)':54}")
    _print_steps(figures["time_ms_mean"])  # type: ignore[arg-type]
    if "paced" in figures:
        paced = figures["paced"]
        print(
            f"\npaced at {paced['fps']} frames/s: captured -> detections p95 {paced['detect_p95_ms']} ms "  # type: ignore[index]
            f"(Triton round trip p95 {paced['triton_p95_ms']} ms), "  # type: ignore[index]
            f"captured -> stored p95 {paced['stored_p95_ms']} ms"
        )  # type: ignore[index]
        _print_steps(paced["time_ms_mean"])  # type: ignore[index]
        print("  p95 of each step (per frame, from the frames table):")
        _print_steps(paced["time_ms_p95"])  # type: ignore[index]


def _print_steps(values: dict[str, float | None]) -> None:
    for name, value in values.items():
        print(f"  {name:52}{'-' if value is None else f'{value:9.2f}':>9}")


def print_comparison(this: Report, versus: Report) -> None:
    ratios = this.ratios(versus)
    a, b = this.figures(), versus.figures()
    print(f"\nside by side, same run ({this.variant.tree} vs {versus.variant.tree} {b['worker_env'] or ''}):")
    print(f"{'':44}{'this':>10}{'versus':>10}{'this/versus':>13}")
    print(f"  {'frames/s':42}{a['frames_per_s']:>10}{b['frames_per_s']:>10}{ratios['frames_per_s']:>13}")
    for role, ratio in ratios["cpu_ms_per_frame"].items():  # type: ignore[union-attr]
        print(
            f"  {'CPU-ms/frame ' + role:42}{a['cpu_ms_per_frame'][role]:>10}{b['cpu_ms_per_frame'][role]:>10}"  # type: ignore[index]
            f"{ratio:>13}"
        )
    print(
        f"  {'pipeline CPU-ms/frame':42}{a['pipeline_cpu_ms_per_frame']:>10}{b['pipeline_cpu_ms_per_frame']:>10}"
        f"{ratios['pipeline_cpu_ms_per_frame']:>13}"
    )
    for key in ("stored_p95_ms", "detect_p95_ms"):
        if "paced" in a and "paced" in b:
            print(f"  {'paced ' + key:42}{a['paced'][key]:>10}{b['paced'][key]:>10}")  # type: ignore[index]
