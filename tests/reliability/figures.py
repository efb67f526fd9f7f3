"""The fault tests' figures, gathered in one JSON file that ``make reliability`` prints from.

Each fault test records what it measured (recovery seconds, conflicts retried) under its
own key, so one run of several tests leaves one document behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "reliability-faults.json"


def record(key: str, value: Any) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    figures = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    figures[key] = value
    RESULTS.write_text(json.dumps(figures, indent=2))
    print(f"\nreliability {key}: {json.dumps(value)}")
