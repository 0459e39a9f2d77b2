"""The soak's verdict: the checks that need the whole run (recovery times, crash loops, memory,
descriptors and threads) and the table ``framestream chaos`` prints and writes as JSON.

    report = build_report(run, checked, drain_s=...)
    print_report(report)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from framestream.bench.report import percentile
from framestream.chaos.invariants import Checked, Violation
from framestream.chaos.runner import ChaosRun
from framestream.chaos.schedule import FaultKind

CRASH_LOOP_EXITS = 3  # exits of one worker on its own ...
CRASH_LOOP_WINDOW_S = 300.0  # ... within this long are a crash loop
# A worker process that ran at least RESOURCE_MIN_LIFETIME_S leaks if it ends with more than
# RSS_GROWTH x its first RSS + RSS_SLACK_MB, or if over the second half of its life (from its
# mid-life sample to its last: ProcessResources.midlife says why) it gained more than FD_SLACK
# descriptors (chDB's per-thread /proc statistics files aside: ResourceSample.other_fds) or
# THREAD_SLACK threads.
RESOURCE_MIN_LIFETIME_S = 600.0
RSS_GROWTH, RSS_SLACK_MB, FD_SLACK, THREAD_SLACK = 1.5, 100.0, 50, 20


@dataclass
class Report:
    document: dict[str, object]
    violations: list[Violation]


def crash_loops(run: ChaosRun) -> list[Violation]:
    by_worker: dict[str, list[float]] = defaultdict(list)
    for crash in run.crashes:
        by_worker[crash.name].append(crash.at_s)
    found = []
    for name, times in by_worker.items():
        for i in range(len(times) - CRASH_LOOP_EXITS + 1):
            if times[i + CRASH_LOOP_EXITS - 1] - times[i] <= CRASH_LOOP_WINDOW_S:
                found.append(
                    Violation(
                        "crash-loop",
                        f"{name} exited on its own {CRASH_LOOP_EXITS} times within {CRASH_LOOP_WINDOW_S:.0f}s",
                    )
                )
                break
    return found


def resource_leaks(run: ChaosRun) -> list[Violation]:
    found = []
    for res in run.resources.values():
        first, base, last = res.first, res.midlife, res.last
        if first is None or base is None or last is None or res.lifetime_s < RESOURCE_MIN_LIFETIME_S:
            continue
        if last.rss_mb > RSS_GROWTH * first.rss_mb + RSS_SLACK_MB:
            found.append(
                Violation("memory", f"{res.name} pid {res.pid}: RSS {first.rss_mb:.0f} -> {last.rss_mb:.0f} MB")
            )
        where = f"{res.name} pid {res.pid}, {base.at_s:.0f}s -> {last.at_s:.0f}s"
        if last.other_fds > base.other_fds + FD_SLACK:
            found.append(Violation("fds", f"{where}: {base.other_fds} -> {last.other_fds} descriptors"))
        if last.threads > base.threads + THREAD_SLACK:
            found.append(Violation("threads", f"{where}: {base.threads} -> {last.threads} threads"))
    return found


def build_report(
    run: ChaosRun, checked: Checked, *, drain_s: float | None, drain_limit_s: float, shutdown: dict[str, int | None]
) -> Report:
    violations = list(checked.violations)
    for record in run.records:
        if record.timed_out:
            violations.append(
                Violation(
                    "recovery",
                    f"fault {record.fault.index} ({record.fault.describe()}): "
                    f"lag not back to 0 within {run.recovery_limit_s:.0f}s",
                )
            )
    if drain_s is None:
        violations.append(Violation("lag", f"consumer lag not 0 within {drain_limit_s:.0f}s of ingest stopping"))
    for name, code in shutdown.items():
        if code != 0:
            violations.append(Violation("shutdown", f"{name} exited with {code} on SIGTERM at the end"))
    violations += crash_loops(run) + resource_leaks(run)
    kinds = []
    for kind in FaultKind:
        records = [r for r in run.records if r.fault.kind is kind]
        times = [r.recovery_s for r in records if r.recovery_s is not None]
        kinds.append(
            {
                "kind": kind.value,
                "scheduled": len(records),
                "injected": sum(r.injected_s is not None for r in records),
                "recovered": len(times),
                "recovery_p50_s": round(percentile(times, 0.5), 1) if times else None,
                "recovery_p95_s": round(percentile(times, 0.95), 1) if times else None,
                "recovery_max_s": round(max(times), 1) if times else None,
            }
        )
    every = [r.recovery_s for r in run.records if r.recovery_s is not None]
    document = {
        "seed": run.seed,
        "duration_s": run.duration_s,
        "recovery_limit_s": run.recovery_limit_s,
        "faults_by_kind": kinds,
        "faults_injected": sum(r.injected_s is not None for r in run.records),
        "recovery_p50_s": round(percentile(every, 0.5), 1) if every else None,
        "recovery_p95_s": round(percentile(every, 0.95), 1) if every else None,
        "final_drain_s": None if drain_s is None else round(drain_s, 1),
        "records_checked": checked.counts,
        "lag_checks": run.lag_samples,
        "lag_probe_restarts": run.lag.restarts,
        "crashes": [{"worker": c.name, "at_s": round(c.at_s, 1)} for c in run.crashes],
        "crashes_by_worker": dict(Counter(c.name for c in run.crashes)),
        "shutdown_exit_codes": shutdown,
        "resources": [_resources(res) for res in run.resources.values() if res.first is not None],
        "violations": [{"check": v.check, "detail": v.detail} for v in violations],
        "faults": [record.as_dict() for record in run.records],
    }
    return Report(document, violations)


def _resources(res) -> dict[str, object]:  # noqa: ANN001 - monitor.ProcessResources
    points = {"start": res.first, "midlife": res.midlife, "end": res.last}
    figures: dict[str, object] = {"worker": res.name, "pid": res.pid, "lifetime_s": round(res.lifetime_s, 1)}
    for field_name in ("rss_mb", "fds", "other_fds", "threads"):
        for point, sample in points.items():
            value = getattr(sample, field_name)
            figures[f"{field_name}_{point}"] = round(value, 1) if field_name == "rss_mb" else value
    figures["rss_mb_peak"] = round(res.peak_rss_mb, 1)
    return figures


def longest_lived(resources: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per worker, the process that ran longest (the one memory and descriptor growth show in)."""
    best: dict[str, dict[str, object]] = {}
    for res in resources:
        name = str(res["worker"])
        if name not in best or float(res["lifetime_s"]) > float(best[name]["lifetime_s"]):  # type: ignore[arg-type]
            best[name] = res
    return [best[name] for name in sorted(best)]


def print_report(document: dict[str, object]) -> None:
    print("\nfaults by kind       scheduled  injected  recovered   p50 s   p95 s   max s")
    for row in document["faults_by_kind"]:  # type: ignore[union-attr]
        print(
            f"  {row['kind']:<18} {row['scheduled']:>9} {row['injected']:>9} {row['recovered']:>10}"
            f" {_num(row['recovery_p50_s']):>7} {_num(row['recovery_p95_s']):>7} {_num(row['recovery_max_s']):>7}"
        )
    print(
        f"  {'all':<18} {'':>9} {document['faults_injected']:>9} {'':>10}"
        f" {_num(document['recovery_p50_s']):>7} {_num(document['recovery_p95_s']):>7}"
    )
    counts = document["records_checked"]
    print(f"\nrecords checked: {', '.join(f'{k} {v}' for k, v in counts.items())}")  # type: ignore[union-attr]
    print(
        f"final drain (ingest stopped -> lag 0): {_num(document['final_drain_s'])} s; "
        f"lag checks {document['lag_checks']}"
    )
    print(f"exits not caused by the harness: {document['crashes_by_worker'] or 'none'}")
    print(
        "\nworker (longest-lived)  lifetime s  RSS MB start -> mid -> end (peak)"
        "   fds start -> mid -> end (not /proc stats)   threads start -> mid -> end"
    )
    for res in longest_lived(document["resources"]):  # type: ignore[arg-type]
        print(
            f"  {res['worker']:<21} {res['lifetime_s']:>10}  {res['rss_mb_start']:>6} -> {res['rss_mb_midlife']}"
            f" -> {res['rss_mb_end']} ({res['rss_mb_peak']})"
            f"   {res['fds_start']} -> {res['fds_midlife']} -> {res['fds_end']}"
            f" ({res['other_fds_start']} -> {res['other_fds_midlife']} -> {res['other_fds_end']})"
            f"   {res['threads_start']} -> {res['threads_midlife']} -> {res['threads_end']}"
        )
    violations = document["violations"]
    print(f"\nviolations: {len(violations)}")  # type: ignore[arg-type]
    for violation in violations:  # type: ignore[union-attr]
        print(f"  - {violation['check']}: {violation['detail']}")


def _num(value: object) -> str:
    return "-" if value is None else f"{value}"
