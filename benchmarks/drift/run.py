"""Drift-check benchmark: ``mlkube drift-check`` (local mode) vs Evidently's DataDriftPreset.

What it measures, in one run with the two tools interleaved (A, B, A, B):

- wall time and peak RSS of each tool as a separate process (``/usr/bin/time -v``), each
  reading the same Parquet files: mlkube reads the live file and the version's
  ``metadata.json`` (reference profile); Evidently reads the reference and live files;
- the flagged features and the dataset verdict of each, and whether they agree;
- ratios: Evidently wall / mlkube wall, mlkube RSS / Evidently RSS.

Cases: 100k x 60 (45 numeric of four shapes, 15 categorical; 10 numeric features shifted
in mean or scale, 3 categorical in shares) and 1M x 50 numeric (10 shifted). Reference
and live have the same number of rows. Evidently needs ~6 minutes and ~3.5 GB on the 1M
case, so it runs there only with ``--full``; mlkube always runs it, and 100k x 50 numeric
is run too to show that mlkube's memory does not grow with the rows.

mlkube's check does not re-read the reference: the trainer builds the profile once per
version; the time that takes is printed as "profile build" (part of training, not of the
check). Both tools use their defaults (reference > 1,000 rows: normalised Wasserstein /
Jensen-Shannon distance, threshold 0.1, dataset drift at 50 %).

Evidently 0.7.23 is installed with ``pandas<3`` into its own venv under
``~/.cache/mlkube/bench-venvs/evidently`` (never into the project's venv).

The output also says how many reference rows mlkube's profile holds and why (all of
the reference file here; a trainer profiles a seeded sample of at most
MLKUBE_PROFILE_SAMPLE_ROWS training rows, and KS/Wasserstein use a value sample).

Seen here (2026-12-02, 2 reps, 2-core machine shared with other sessions, load 10-14):
100k x 60, ``--no-plot``: 1.76 s / 0.61 s CPU / 145 MiB against Evidently's 97.2 s /
43.1 s / 895 MiB: 55.3x wall, 70.2x CPU, 0.162x RSS, the same flagged features. Numbers
are read from Arrow buffers and categories counted from dictionary codes, so neither
pandas nor Arrow's compute module is imported (the run before: 1.0 s CPU, 190 MiB).

Usage: .venv/bin/python benchmarks/drift/run.py [--full] [--reps 2]
Results: printed table, plus benchmarks/results/drift/results.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlkube.runtime.artifact import METADATA_FORMAT, FeatureSchema
from mlkube.runtime.profile import build_reference_profile

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "drift"
PEER_VENV = Path.home() / ".cache" / "mlkube" / "bench-venvs" / "evidently"
PEER_PINS = ["evidently==0.7.23", "pandas<3", "pyarrow", "psutil"]
LEVELS = np.array(["red", "green", "blue", "amber", "violet", "teal"])
BASE_SHARES = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05])
MOVED_SHARES = np.array([0.2, 0.25, 0.25, 0.12, 0.1, 0.08])


@dataclass(frozen=True)
class Case:
    label: str
    rows: int
    numeric: int
    categorical: int
    peer: bool


def ensure_peer_venv() -> Path:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEER_VENV} with {' '.join(PEER_PINS)} ...", flush=True)
        venv.create(PEER_VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PINS], check=True)
    subprocess.run([str(python), "-c", "import evidently"], check=True)
    return python


def shifted_features(case: Case) -> set[str]:
    numeric = {f"n{i}" for i in range(case.numeric) if i % 5 == 1 or i % 9 == 4}
    numeric = set(sorted(numeric, key=lambda n: int(n[1:]))[:10])
    categorical = {f"c{i}" for i in range(case.categorical) if i % 5 == 0}
    return numeric | categorical


def make_frame(case: Case, seed: int, drifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    moved = shifted_features(case) if drifted else set()
    columns: dict[str, Any] = {}
    for i in range(case.numeric):
        name = f"n{i}"
        shift = 0.5 if name in moved and i % 5 == 1 else 0.0
        scale = 1.5 if name in moved and i % 5 != 1 else 1.0
        shape = i % 4
        if shape == 0:
            columns[name] = rng.normal(shift, scale, case.rows)
        elif shape == 1:
            columns[name] = np.exp(rng.normal(shift * 0.5, 0.5 * scale, case.rows))
        elif shape == 2:
            columns[name] = rng.uniform(-scale, scale, case.rows) + shift * 2 / np.sqrt(12)
        else:
            columns[name] = rng.gamma(4.0, 1.0, case.rows) * scale + shift * 2.0
    for i in range(case.categorical):
        shares = MOVED_SHARES if f"c{i}" in moved else BASE_SHARES
        columns[f"c{i}"] = LEVELS[rng.choice(len(LEVELS), case.rows, p=shares)]
    return pd.DataFrame(columns)


def prepare(case: Case, directory: Path) -> dict[str, Any]:
    """Writes reference/live Parquet, the peer's column spec and a version's metadata.json."""
    directory.mkdir(parents=True, exist_ok=True)
    reference = make_frame(case, seed=1, drifted=False)
    live = make_frame(case, seed=2, drifted=True)
    reference.to_parquet(directory / "reference.parquet")
    live.to_parquet(directory / "live.parquet")
    numeric = [f"n{i}" for i in range(case.numeric)]
    categorical = [f"c{i}" for i in range(case.categorical)]
    (directory / "spec.json").write_text(
        json.dumps({"numeric": numeric, "categorical": categorical})
    )
    features = [
        FeatureSchema(name=n, kind="numeric", dtype="float64", nullable=True) for n in numeric
    ]
    features += [
        FeatureSchema(name=c, kind="categorical", dtype="string", nullable=True)
        for c in categorical
    ]
    started = time.perf_counter()
    profile = build_reference_profile(reference, features)
    profile_seconds = time.perf_counter() - started
    model_dir = directory / "store" / "default" / "bench" / "v1"
    model_dir.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": METADATA_FORMAT,
        "name": "bench",
        "namespace": "default",
        "version": 1,
        "features": features,
        "profile": profile,
    }
    (model_dir / "metadata.json").write_text(json.dumps(metadata))
    return {"profileSeconds": profile_seconds, "modelDir": model_dir}


def timed(command: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one process, measured by /usr/bin/time -v.

    CPU time (user + system) is printed beside wall time because on a shared 2-core
    machine wall time swings with the load of others, while CPU time mostly does not.
    """
    started = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    cpu = sum(
        float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", result.stderr)
    )
    return wall, cpu, int(match.group(1)) / 1024 if match else float("nan")


def run_ours(
    directory: Path, model_dir: Path, plot: bool
) -> tuple[float, float, float, dict[str, Any]]:
    out = directory / "mlkube-report.json"
    wall, cpu, rss = timed(
        [
            str(REPO / ".venv" / "bin" / "mlkube"),
            "drift-check",
            "--model-dir",
            str(model_dir),
            "--live",
            str(directory / "live.parquet"),
            "--report",
            str(out),
            *([] if plot else ["--no-plot"]),
        ]
    )
    report = json.loads(out.read_text())
    flagged = {n for n, f in report["features"].items() if f["drifted"]}
    return wall, cpu, rss, {"flagged": flagged, "datasetDrift": report["datasetDrift"]}


def run_peer(python: Path, directory: Path) -> tuple[float, float, float, dict[str, Any]]:
    out = directory / "evidently-report.json"
    wall, cpu, rss = timed(
        [
            str(python),
            str(Path(__file__).with_name("evidently_check.py")),
            str(directory / "reference.parquet"),
            str(directory / "live.parquet"),
            str(directory / "spec.json"),
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    flagged = {n for n, f in report["features"].items() if f["drifted"]}
    return wall, cpu, rss, {"flagged": flagged, "datasetDrift": report["datasetDrift"]}


Samples = list[tuple[float, float, float]]


def measure(
    case: Case, reps: int, python: Path, directory: Path, model_dir: str
) -> tuple[Samples, Samples, Samples, dict[str, Any], dict[str, Any]]:
    """Interleaved runs: mlkube with and without the plot, then Evidently, ``reps`` times."""
    ours: list[tuple[float, float, float]] = []
    ours_no_plot: list[tuple[float, float, float]] = []
    peer: list[tuple[float, float, float]] = []
    our_result: dict[str, Any] = {}
    peer_result: dict[str, Any] = {}
    for rep in range(reps):
        wall, cpu, rss, our_result = run_ours(directory, model_dir, plot=True)
        ours.append((wall, cpu, rss))
        print(f"  rep {rep}: mlkube {wall:.2f} s (cpu {cpu:.2f}) {rss:.0f} MiB", flush=True)
        wall, cpu, rss, _ = run_ours(directory, model_dir, plot=False)
        ours_no_plot.append((wall, cpu, rss))
        print(
            f"  rep {rep}: mlkube --no-plot {wall:.2f} s (cpu {cpu:.2f}) {rss:.0f} MiB",
            flush=True,
        )
        if case.peer:
            wall, cpu, rss, peer_result = run_peer(python, directory)
            peer.append((wall, cpu, rss))
            print(f"  rep {rep}: evidently {wall:.2f} s (cpu {cpu:.2f}) {rss:.0f} MiB", flush=True)
    return ours, ours_no_plot, peer, our_result, peer_result


def result_row(
    case: Case,
    prepared: dict[str, Any],
    runs: tuple[Samples, Samples, Samples, dict[str, Any], dict[str, Any]],
) -> dict[str, Any]:
    """One case's medians and ratios, and whether both tools flagged the shifted features."""
    ours, ours_no_plot, peer, our_result, peer_result = runs
    expected = shifted_features(case)
    row: dict[str, Any] = {
        "case": case.label,
        "profileSeconds": round(prepared["profileSeconds"], 2),
        "mlkubeWall": statistics.median(w for w, _, _ in ours),
        "mlkubeCpu": statistics.median(c for _, c, _ in ours),
        "mlkubeRssMiB": max(r for _, _, r in ours),
        "noPlotWall": statistics.median(w for w, _, _ in ours_no_plot),
        "noPlotCpu": statistics.median(c for _, c, _ in ours_no_plot),
        "noPlotRssMiB": max(r for _, _, r in ours_no_plot),
        "mlkubeFlaggedIsShifted": our_result["flagged"] == expected,
        "mlkubeFlagged": sorted(our_result["flagged"]),
        "mlkubeDatasetDrift": our_result["datasetDrift"],
    }
    if peer:
        row.update(
            {
                "evidentlyWall": statistics.median(w for w, _, _ in peer),
                "evidentlyCpu": statistics.median(c for _, c, _ in peer),
                "evidentlyRssMiB": max(r for _, _, r in peer),
                "evidentlyFlagged": sorted(peer_result["flagged"]),
                "evidentlyDatasetDrift": peer_result["datasetDrift"],
                "sameFlagged": our_result["flagged"] == peer_result["flagged"],
                "sameVerdict": our_result["datasetDrift"] == peer_result["datasetDrift"],
            }
        )
        row["speedup"] = row["evidentlyWall"] / row["mlkubeWall"]
        row["rssRatio"] = row["mlkubeRssMiB"] / row["evidentlyRssMiB"]
        row["noPlotSpeedup"] = row["evidentlyWall"] / row["noPlotWall"]
        row["cpuRatio"] = row["evidentlyCpu"] / row["mlkubeCpu"]
        row["noPlotCpuRatio"] = row["evidentlyCpu"] / row["noPlotCpu"]
        row["noPlotRssRatio"] = row["noPlotRssMiB"] / row["evidentlyRssMiB"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description="mlkube drift-check vs Evidently")
    parser.add_argument("--full", action="store_true", help="run Evidently on 1M rows (~6 min)")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions per case")
    args = parser.parse_args()
    python = ensure_peer_venv()
    cases = [
        Case("100k x 60 (45 num, 15 cat)", 100_000, 45, 15, peer=True),
        Case("100k x 50 numeric", 100_000, 50, 0, peer=args.full),
        Case("1M x 50 numeric", 1_000_000, 50, 0, peer=args.full),
    ]
    rows: list[dict[str, Any]] = []
    for case in cases:
        directory = RESULTS / re.sub(r"[^a-z0-9]+", "-", case.label.lower()).strip("-")
        print(f"preparing {case.label} ...", flush=True)
        prepared = prepare(case, directory)
        runs = measure(case, args.reps, python, directory, prepared["modelDir"])
        row = result_row(case, prepared, runs)
        rows.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(rows, indent=2))
    print()
    print(
        f"{'case':<28} {'tool':<22} {'wall s':>7} {'cpu s':>6} {'peak MiB':>9} "
        f"{'speedup':>8} {'cpu x':>6} {'RSS ratio':>9} {'flags = Evidently':>17} "
        f"{'flags = shifted':>15}"
    )
    case_of = {case.label: case for case in cases}
    for row in rows:
        tools = [
            ("mlkube (with PNG)", "mlkube", "speedup", "cpuRatio", "rssRatio"),
            ("mlkube --no-plot", "noPlot", "noPlotSpeedup", "noPlotCpuRatio", "noPlotRssRatio"),
        ]
        for tool, prefix, speed_key, cpu_key, rss_key in tools:
            speed = f"{row[speed_key]:.1f}x" if speed_key in row else "-"
            cpu_ratio = f"{row[cpu_key]:.1f}x" if cpu_key in row else "-"
            ratio = f"{row[rss_key]:.3f}" if rss_key in row else "-"
            same = str(row.get("sameFlagged", "-"))
            print(
                f"{row['case']:<28} {tool:<22} {row[prefix + 'Wall']:>7.2f} "
                f"{row[prefix + 'Cpu']:>6.2f} {row[prefix + 'RssMiB']:>9.0f} {speed:>8} "
                f"{cpu_ratio:>6} {ratio:>9} {same:>17} {row['mlkubeFlaggedIsShifted']!s:>15}"
            )
        if "evidentlyWall" in row:
            peer_exact = set(row["evidentlyFlagged"]) == shifted_features(case_of[row["case"]])
            print(
                f"{row['case']:<28} {'evidently 0.7.23':<22} {row['evidentlyWall']:>7.2f} "
                f"{row['evidentlyCpu']:>6.2f} {row['evidentlyRssMiB']:>9.0f} {'1.0x':>8} "
                f"{'1.0x':>6} {'1.000':>9} {'-':>17} {peer_exact!s:>15}"
            )
        else:
            note = "(runs only with --full: ~6 min, ~3.5 GB)"
            print(f"{row['case']:<28} {'evidently 0.7.23':<22} {note:>40}")
    print(
        "\nprofile build (once per version, at training time): "
        + ", ".join(f"{r['case']}: {r['profileSeconds']} s" for r in rows)
    )
    for row in rows:
        directory = RESULTS / re.sub(r"[^a-z0-9]+", "-", row["case"].lower()).strip("-")
        samples = json.loads((directory / "mlkube-report.json").read_text())["samples"]
        print(
            f"{row['case']}: mlkube's reference rows {samples['reference']}: "
            f"{samples['referenceRows']} (the benchmark profiles the whole reference file; "
            "a trainer profiles at most MLKUBE_PROFILE_SAMPLE_ROWS training rows)"
        )
    mismatches = [r["case"] for r in rows if r.get("sameFlagged") is False]
    if mismatches:
        print(
            "flag differences:",
            json.dumps(
                [
                    {
                        "case": r["case"],
                        "mlkube": r["mlkubeFlagged"],
                        "evidently": r["evidentlyFlagged"],
                    }
                    for r in rows
                    if r.get("sameFlagged") is False
                ]
            ),
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
