"""The reliability harness behind ``framestream chaos``: a seeded schedule of faults injected
into the whole pipeline on the embedded stack, and invariants checked while it runs and after.

    schedule = build_schedule(seed=1, duration_s=1800, kinds=ALL_KINDS)
    # framestream/commands/chaos.py runs it: ChaosRun(...).run() -> ChaosReport
"""
