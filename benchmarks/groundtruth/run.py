"""Ground-truth benchmark: join N logged predictions with N labels and score them.

What it measures, each tool as its own process (``/usr/bin/time -v``: wall, CPU, peak
RSS), interleaved (A, B, A, B) on the same files:

- mlkube: ``mlkube drift-check`` in local mode with a Monitor manifest that has
  ``spec.performance`` (so it runs the input-drift pass, then one pass that joins the
  window's predictions with every label, scores accuracy overall and on two slices, and
  folds the outputs into the prediction-drift summary);
- the peer: the obvious pandas job (``pandas.read_json(lines=True)`` of every log and
  labels file, ``merge`` on request id and row, scikit-learn's ``accuracy_score`` overall
  and per slice), which holds both tables in memory.

Both must agree on the score. Cases: 100k and 1M one-row requests (iris-like, 4 numeric
features, 3 classes), every prediction labelled, labels shuffled and spread over later
hours; mlkube's join spills to partitions above 65,536 labels, so its peak memory should
not grow much from 100k to 1M while the peer's does.

Usage: .venv/bin/python benchmarks/groundtruth/run.py [--rows 100000 1000000] [--reps 1]
Results: printed table, plus benchmarks/results/groundtruth/results.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlkube.runtime.artifact import METADATA_FORMAT, FeatureSchema
from mlkube.runtime.profile import build_reference_profile, prediction_profile

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "groundtruth"
FEATURES = ["f0", "f1", "f2", "f3"]
# The drift benchmark's process timer (/usr/bin/time -v: wall, CPU, peak RSS), shared.
_DRIFT = importlib.util.spec_from_file_location("drift_run", REPO / "benchmarks/drift/run.py")
assert _DRIFT is not None and _DRIFT.loader is not None
_drift = sys.modules["drift_run"] = importlib.util.module_from_spec(_DRIFT)
_DRIFT.loader.exec_module(_drift)
timed = _drift.timed
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PEER = """
import json, sys
import pandas as pd
from pathlib import Path
from sklearn.metrics import accuracy_score
root = Path(sys.argv[1])
logs = pd.concat(pd.read_json(p, lines=True) for p in sorted(root.glob("*/*/*.jsonl")))
labels = pd.concat(
    pd.read_json(p, lines=True) for p in sorted((root / "labels").glob("*/*/*.jsonl"))
)
logs["row"] = 0
inputs = pd.json_normalize(logs.pop("inputs").tolist())
logs = pd.concat([logs.reset_index(drop=True), inputs], axis=1)
joined = logs.merge(labels[["request_id", "row", "label"]], on=["request_id", "row"])
out = {"overall": accuracy_score(joined["label"], joined["output"]), "labels": len(joined)}
mask = joined["f2"] > 4.5
out["f2-high"] = accuracy_score(joined["label"][mask], joined["output"][mask])
Path(sys.argv[2]).write_text(json.dumps(out))
"""


def prepare(rows: int, directory: Path) -> Path:
    """A version's metadata, a log of ``rows`` predictions and their labels (shuffled)."""
    rng = np.random.default_rng(rows)
    classes = rng.integers(0, 3, rows)
    x = rng.normal(classes[:, None] * 1.5 + 1.0, 0.6, (rows, 4)).round(3)
    outputs = np.where(rng.random(rows) < 0.9, classes, (classes + 1) % 3)
    reference = pd.DataFrame(x[:20_000], columns=FEATURES)
    features = [FeatureSchema(name=f, kind="numeric", dtype="float64", nullable=True)
                for f in FEATURES]  # fmt: skip
    model_dir = directory / "store" / "default" / "bench" / "v1"
    model_dir.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": METADATA_FORMAT, "name": "bench", "namespace": "default", "version": 1,
        "task": "classification", "features": features, "metric": "accuracy",
        "score": 0.9, "metrics": {"accuracy": 0.9}, "slices": [],
        "target": {"name": "target", "classes": [0, 1, 2]},
        "profile": build_reference_profile(reference, features),
        "predictionProfile": prediction_profile(outputs[:20_000], "classification"),
    }  # fmt: skip
    (model_dir / "metadata.json").write_text(json.dumps(metadata))
    log = model_dir.parent / "inference"
    start = NOW - timedelta(hours=6)
    _write(
        log, start, rows,
        lambda i, ts: {"ts": ts, "model": "bench", "version": 1, "request_id": f"r{i}",
                       "status": 200, "inputs": dict(zip(FEATURES, x[i].tolist(), strict=True)),
                       "output": int(outputs[i])},
    )  # fmt: skip
    order = rng.permutation(rows)
    _write(
        log / "labels", start + timedelta(hours=2), rows,
        lambda j, ts: {"ts": ts, "model": "bench", "version": 1,
                       "request_id": f"r{order[j]}", "row": 0, "label": int(classes[order[j]])},
    )  # fmt: skip
    monitor = {
        "apiVersion": "mlkube.io/v1alpha1", "kind": "Monitor", "metadata": {"name": "bench"},
        "spec": {"modelRef": {"name": "bench"}, "window": {"duration": "24h"},
                 "performance": {"metric": "accuracy", "minScore": 0.8, "minLabels": 100,
                                 "slices": [{"name": "f2-high", "query": "f2 > 4.5"}]}},
    }  # fmt: skip
    (directory / "monitor.yaml").write_text(json.dumps(monitor))
    return model_dir


def _write(root: Path, start: datetime, rows: int, record: Any) -> None:
    per_hour = rows // 3 + 1
    for part in range(3):
        hour = start + timedelta(hours=part)
        folder = root / hour.strftime("%Y-%m-%d/%H")
        folder.mkdir(parents=True, exist_ok=True)
        stamp = (hour + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
        with (folder / "w-000001.jsonl").open("w") as out:
            for i in range(part * per_hour, min(rows, (part + 1) * per_hour)):
                out.write(json.dumps(record(i, stamp)) + "\n")


def run_ours(directory: Path, model_dir: Path) -> tuple[float, float, float, dict[str, Any]]:
    report = directory / "report.json"
    wall, cpu, rss = timed([
        str(REPO / ".venv" / "bin" / "mlkube"), "drift-check", "--model-dir", str(model_dir),
        "--live", str(model_dir.parent / "inference"), "-f", str(directory / "monitor.yaml"),
        "--report", str(report), "--no-plot", "--now", NOW.isoformat(),
    ])  # fmt: skip
    performance = json.loads(report.read_text())["performance"]
    slices = {s["name"]: s["score"] for s in performance["slices"]}
    return wall, cpu, rss, {"overall": performance["score"], "f2-high": slices["f2-high"],
                            "labels": performance["labels"]["matched"]}  # fmt: skip


def run_peer(model_dir: Path) -> tuple[float, float, float, dict[str, Any]]:
    out = model_dir.parent / "peer.json"
    wall, cpu, rss = timed(
        [sys.executable, "-c", PEER, str(model_dir.parent / "inference"), str(out)]
    )
    return wall, cpu, rss, json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mlkube-bench-groundtruth"))
    args = parser.parse_args()
    results = []
    for rows in args.rows:
        directory = args.work / str(rows)
        print(f"preparing {rows:,} predictions and {rows:,} labels in {directory}", flush=True)
        model_dir = prepare(rows, directory)
        for rep in range(args.reps):
            ours = run_ours(directory, model_dir)
            peer = run_peer(model_dir)
            agree = all(abs(ours[3][k] - peer[3][k]) < 1e-6 for k in ("overall", "f2-high"))
            assert ours[3]["labels"] == peer[3]["labels"] == rows, (ours[3], peer[3])
            entry = {
                "rows": rows, "rep": rep,
                "mlkube": {"wall": ours[0], "cpu": ours[1], "rssMiB": ours[2], **ours[3]},
                "pandas": {"wall": peer[0], "cpu": peer[1], "rssMiB": peer[2], **peer[3]},
                "sameScores": agree,
            }  # fmt: skip
            results.append(entry)
            print(
                f"  {rows:>9,} rep {rep}: mlkube {ours[0]:6.1f} s (cpu {ours[1]:5.1f}) "
                f"{ours[2]:5.0f} MiB | pandas {peer[0]:6.1f} s (cpu {peer[1]:5.1f}) "
                f"{peer[2]:5.0f} MiB | time ratio {ours[0] / peer[0]:.2f}, "
                f"RSS ratio {ours[2] / peer[2]:.2f} | accuracy {ours[3]['overall']:.4f}, "
                f"same scores: {agree}",
                flush=True,
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
