"""Benchmark: ``mlkube train`` against bare scikit-learn on the same data and estimator.

What it measures: wall time (and CPU time) of one whole training run as a fresh
process, on a synthetic 100k x 30 numeric classification table in CSV:

- ``mlkube train``: read, quality gate, pipeline (imputation), stratified 80/20 holdout,
  fit, metrics on the holdout, reference profile, skops artifact, sha256, metadata.
- ``bare (split)``: ``bare_sklearn.py`` reads the CSV, holds out the same 20 %, fits the
  same estimator with the same params and ``joblib.dump``s it: the like-for-like peer.
- ``bare (all rows)``: the same but fitting all 100k rows, the naive script.

Runs are interleaved (ours, peer, peer, ours, ...) because timings on these 2-core
machines drift by up to 1.6x over minutes; medians are reported with the ratio
ours / peer (the median of per-repeat ratios, wall and CPU). Target: <= 1.25x against
``bare (split)``.

    .venv/bin/python benchmarks/train/run.py [--rows 100000] [--repeats 3] [--estimators rf,hgb]

Results also go to ``benchmarks/results/train/`` as JSON.

Seen here (2 cores shared with other builds, 5 repeats): RandomForest (50 trees) 1.09x
wall / 1.08x CPU against ``bare (split)``; HistGradientBoosting (200 iterations, a
~1.8 s fit) 1.42x wall / 1.26x CPU. On a quiet moment the HGB run split as: imports
1.4 s (of which ~0.6 s is ``import skops.io``, which imports every scikit-learn
estimator module to build its trusted-type list), read + gate 0.2 s, fit 1.8 s,
predict + metrics + profile + skops + metadata 0.25 s. So the fixed cost of the safe
format's import, not validation, is what keeps short fits above 1.25x.

Since issue 16 the trainer also converts the pipeline to ONNX and verifies it on the
holdout, importing skops and skl2onnx/onnxruntime on a thread while the data is read and
the model fitted. HistGradientBoosting converts since protobuf is pinned below 7.34 (before,
every attempt failed after seconds of formatting the error). Seen here on 2026-12-03, a
quiet machine (load 1.5-3), ``OMP_NUM_THREADS=1`` for both sides, 3 repeats: mlkube train
9.42 s wall, 9.08 s CPU against bare (split) 6.32 s, 6.37 s CPU: 1.43x wall, 1.45x CPU
(target 1.25x: not met). The same run before three cuts gave 1.62x CPU: the quality
gate's missing-share check went through pyarrow.compute (~1 s on first use), the holdout
was predicted three times (metrics, the ONNX check, the prediction profile; now once),
and ml_dtypes 0.7 (onnx's dependency) took ~1 s of CPU to load (0.6: 0.2 s; pinned).
What is left of the 2.7 s: the skops/skl2onnx/onnxruntime imports (0.77 s after
scikit-learn), the ONNX conversion and check (~0.5 s), the median imputer the bare fit
does not have (0.45 s), metrics, slices, the reference profile and the skops file.

Later on 2026-12-03, once all-numeric data with no missing value got no imputer (the
server refuses a missing value in a feature that was never missing): mlkube train 8.06 s
wall, 8.31 s CPU against bare (split) 6.29 s, 6.34 s: 1.36x wall, 1.39x CPU, the fastest
runs 1.24x (3 repeats, load ~1). Still above 1.25x: skops's import builds its trusted-type
tables by importing every scikit-learn estimator (~0.55 s after scikit-learn), skl2onnx
~0.2 s; on the prefetch thread they mostly wait on the interpreter lock the fit holds.

With the writer helper (a process forked after the read imports skops/skl2onnx and makes
the skops bytes and the verified ONNX model on the second core; ``runtime/train/helper.py``),
5 repeats: mlkube train 8.30 s wall, 9.28 s CPU against bare (split) 6.60 s, 6.65 s: 1.22x
wall (target met), 1.38x CPU (the helper's work still counts); 3 repeats gave 1.17x wall.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train/run.py --repeats 5 --estimators hgb
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results" / "train"

ESTIMATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "rf": (
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 50, "min_samples_leaf": 5, "n_jobs": -1, "random_state": 0},
    ),
    "hgb": (
        "sklearn.ensemble.HistGradientBoostingClassifier",
        {"max_iter": 200, "random_state": 0},
    ),
}


def make_data(path: Path, rows: int, features: int) -> None:
    from sklearn.datasets import make_classification

    if path.exists():
        return
    x, y = make_classification(
        n_samples=rows, n_features=features, n_informative=features // 2, random_state=0
    )
    frame = pd.DataFrame(np.round(x, 5), columns=[f"f{i}" for i in range(features)])
    frame["label"] = y
    frame.to_csv(path, index=False)


def manifest(data: Path, class_path: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "bench"},
        "spec": {
            "task": "classification",
            "training": {
                "estimator": {"class": class_path, "params": params},
                "data": {"uri": str(data), "target": "label"},
                "validation": {"metric": "f1", "testFraction": 0.2, "folds": 0},
            },
        },
    }


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system of the child) seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise SystemExit(f"{command[:4]} failed:\n{completed.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def bench(key: str, data: Path, work: Path, repeats: int) -> list[dict[str, Any]]:
    class_path, params = ESTIMATORS[key]
    model = work / f"{key}.json"
    model.write_text(json.dumps(manifest(data, class_path, params)))
    store = work / "store"
    runs: dict[str, list[tuple[float, float]]] = {
        "mlkube train": [],
        "bare (split)": [],
        "bare (all rows)": [],
    }
    bare = [
        sys.executable,
        str(HERE / "bare_sklearn.py"),
        str(data),
        str(work / "m.joblib"),
        class_path,
        json.dumps(params),
    ]
    commands = {
        "mlkube train": [
            sys.executable,
            "-m",
            "mlkube",
            "train",
            "-f",
            str(model),
            "--store",
            str(store),
            "--termination-log",
            str(work / "log"),
        ],
        "bare (split)": [*bare, "--split"],
        "bare (all rows)": bare,
    }
    order = list(commands)
    for repeat in range(repeats):
        for name in order if repeat % 2 == 0 else list(reversed(order)):
            shutil.rmtree(store, ignore_errors=True)
            runs[name].append(timed(commands[name]))
            print(f"  {key} #{repeat + 1} {name:16s} {runs[name][-1][0]:7.2f} s", file=sys.stderr)
    ours = runs["mlkube train"]
    rows = []
    for name, samples in runs.items():
        # Each repeat's runs are adjacent in time, so the median of per-repeat ratios is
        # less exposed to the machine's drift than a ratio of medians.
        paired = [o[0] / s[0] for o, s in zip(ours, samples, strict=True)]
        paired_cpu = [o[1] / s[1] for o, s in zip(ours, samples, strict=True)]
        rows.append(
            {
                "estimator": class_path.rsplit(".", 1)[1],
                "runner": name,
                "wall_s": round(statistics.median(w for w, _ in samples), 2),
                "cpu_s": round(statistics.median(c for _, c in samples), 2),
                "runs": [round(w, 2) for w, _ in samples],
                "ratio_wall": None
                if name == "mlkube train"
                else round(statistics.median(paired), 3),
                "ratio_cpu": None
                if name == "mlkube train"
                else round(statistics.median(paired_cpu), 3),
                # Best against best: contention only ever adds time, so the fastest run of
                # each is the closest either gets to a quiet machine.
                "ratio_best": None
                if name == "mlkube train"
                else round(min(w for w, _ in ours) / min(w for w, _ in samples), 3),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--estimators", default="rf,hgb")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = RESULTS / f"data-{args.rows}x{args.features}.csv"
    make_data(data, args.rows, args.features)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mlkube-bench-train-") as work:
        for key in args.estimators.split(","):
            rows += bench(key, data, Path(work), args.repeats)
    print(
        f"\nmlkube train vs bare scikit-learn, {args.rows} x {args.features} CSV, "
        f"median of {args.repeats} interleaved runs\n"
    )
    print(
        f"{'estimator':32s} {'runner':16s} {'wall s':>8s} {'best s':>8s} {'cpu s':>8s} "
        f"{'ours/peer wall':>15s} {'cpu':>6s} {'best':>6s}"
    )
    for row in rows:
        ratios = [
            "" if row[key] is None else f"{row[key]:.2f}x"
            for key in ("ratio_wall", "ratio_cpu", "ratio_best")
        ]
        print(
            f"{row['estimator']:32s} {row['runner']:16s} {row['wall_s']:8.2f} "
            f"{min(row['runs']):8.2f} {row['cpu_s']:8.2f} {ratios[0]:>15s} "
            f"{ratios[1]:>6s} {ratios[2]:>6s}"
        )
    print(
        f"\nload average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} cores (wall and cpu: medians of per-repeat ratios; "
        "best: fastest run over fastest run)"
    )
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}.json").write_text(
        json.dumps(
            {
                "rows": args.rows,
                "features": args.features,
                "repeats": args.repeats,
                "results": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
