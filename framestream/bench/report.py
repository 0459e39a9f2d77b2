"""What every benchmark does with its figures besides printing them: one percentile, JSON output."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1), linearly interpolated (numpy's default), for every
    benchmark alike; NaN for no values, so an empty round prints as such."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within 0..1, got {fraction!r}")
    return float(np.percentile(values, fraction * 100.0)) if len(values) else float("nan")


def write_json(path: Path, figures: dict[str, object]) -> None:
    """``figures`` plus when and where they were measured (noisy shared machines: say which)."""
    document = {
        **figures,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"figures written to {path}")
