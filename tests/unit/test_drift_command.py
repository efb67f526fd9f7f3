"""``mlkube drift-check`` as a subprocess: the inference-log contract (partitions, window by
ts, skipped and corrupt lines), the report beside the logs, exit codes, and bad inputs
(missing reference, empty window, schema mismatch, NaN-only column, corrupt log file,
unwritable store) that fail with one clear line and leave nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from drift_data import store_version, synthetic_frame

FEATURES = ["n0", "n1", "n2", "n3", "c0", "c1"]
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def _mlkube(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlkube", "drift-check", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    store_version(root, synthetic_frame(3_000, seed=1, drifted=False)[FEATURES])
    return root


def _write_log(
    store: Path,
    rows: list[dict[str, Any]],
    *,
    hour: datetime,
    name: str = "w1-0.jsonl",
    extra_lines: list[bytes] | None = None,
) -> Path:
    directory = store / "default/churn/inference" / hour.strftime("%Y-%m-%d/%H")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with path.open("wb") as out:
        for row in rows:
            out.write(json.dumps(row).encode() + b"\n")
        for line in extra_lines or []:
            out.write(line + b"\n")
    return path


def _log_rows(frame: Any, start: datetime, status: int = 200) -> list[dict[str, Any]]:
    rows = []
    for i, record in enumerate(frame.to_dict(orient="records")):
        ts = start + timedelta(seconds=i)
        rows.append(
            {
                "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "model": "churn",
                "version": 1,
                "request_id": f"r{i}",
                "status": status,
                "inputs": record,
                "output": 0.5,
            }
        )
    return rows


def _monitor(tmp_path: Path, **drift: Any) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlkube.io/v1alpha1",
                "kind": "Monitor",
                "metadata": {"name": "m"},
                "spec": {
                    "modelRef": {"name": "churn"},
                    "window": {"duration": "2h", "minSamples": 200},
                    "drift": drift or {"datasetDriftShare": 0.3},
                },
            }
        )
    )
    return path


def test_inference_log_window_is_checked_and_reported_beside_the_logs(
    store: Path, tmp_path: Path
) -> None:
    live = synthetic_frame(1_500, seed=2, drifted=True)[FEATURES]
    in_window = NOW - timedelta(hours=1, minutes=30)
    _write_log(
        store,
        _log_rows(live.iloc[:1000], in_window),
        hour=in_window,
        extra_lines=[b"{not json", b"\x00\x01garbage"],
    )
    failures = _log_rows(live.iloc[1000:1100], in_window, status=500)
    _write_log(store, failures, hour=in_window, name="w2-0.jsonl")
    late = NOW - timedelta(minutes=20)
    _write_log(store, _log_rows(live.iloc[1100:1400], late), hour=late)
    old = NOW - timedelta(hours=5)  # outside the 2h window: partition never read
    _write_log(store, _log_rows(live.iloc[1400:], old), hour=old, extra_lines=[b"junk"])

    result = _mlkube(
        "--model-dir",
        store / "default/churn/v1",
        "--live",
        store / "default/churn/inference",
        "-f",
        _monitor(tmp_path),
        "--now",
        "2024-06-01T12:00:00Z",
        "--fail-on-drift",
    )
    assert result.returncode == 3, result.stderr
    report_path = store / "default/churn/drift/20240601T120000Z.json"
    report = json.loads(report_path.read_text())
    assert report["samples"] == {
        "live": 1300,
        "reference": 3000,
        "referenceRows": "all training rows",
        "skippedRows": 100,
        "corruptLines": 2,
    }
    assert report["window"] == {
        "start": "2024-06-01T10:00:00Z",
        "end": "2024-06-01T12:00:00Z",
        "duration": "2h",
    }
    assert report["verdict"] == "drift" and report["features"]["n1"]["drifted"]
    assert report_path.with_suffix(".png").exists()
    assert "verdict: DRIFT" in result.stdout and "n1" in result.stdout


def _assert_refused(result: subprocess.CompletedProcess[str], words: str, store: Path) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlkube drift-check: error:")
    assert words in lines[0]
    assert not (store / "default/churn/drift").exists() or not any(
        (store / "default/churn/drift").iterdir()
    )


def test_missing_reference_is_refused(tmp_path: Path) -> None:
    (tmp_path / "default/churn/v1").mkdir(parents=True)
    live = tmp_path / "live.csv"
    synthetic_frame(100, seed=3, drifted=False)[FEATURES].to_csv(live, index=False)
    result = _mlkube("--model-dir", tmp_path / "default/churn/v1", "--live", live)
    _assert_refused(result, "metadata.json", tmp_path)


def test_schema_mismatch_is_refused_for_tables_and_logs(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "store"
    store_version(copy, synthetic_frame(2_000, seed=1, drifted=False)[FEATURES])
    live = tmp_path / "live.parquet"
    synthetic_frame(600, seed=4, drifted=False)[FEATURES].drop(columns=["n2"]).to_parquet(live)
    result = _mlkube("--model-dir", copy / "default/churn/v1", "--live", live)
    _assert_refused(result, "n2", copy)
    rows = _log_rows(
        synthetic_frame(600, seed=4, drifted=False)[FEATURES].drop(columns=["c1"]),
        NOW - timedelta(minutes=30),
    )
    hour = NOW - timedelta(minutes=30)
    _write_log(copy, rows, hour=hour)
    result = _mlkube(
        "--model-dir",
        copy / "default/churn/v1",
        "--live",
        copy / "default/churn",
        "--now",
        "2024-06-01T12:00:00Z",
    )
    _assert_refused(result, "c1", copy)


def test_corrupt_log_file_and_unknown_format_are_refused(tmp_path: Path) -> None:
    store_version(tmp_path, synthetic_frame(2_000, seed=1, drifted=False)[FEATURES])
    hour = NOW - timedelta(minutes=10)
    _write_log(tmp_path, [], hour=hour, extra_lines=[b"\x1f\x8b\x08 binary", b"{{{"])
    result = _mlkube(
        "--model-dir",
        tmp_path / "default/churn/v1",
        "--live",
        tmp_path / "default/churn/inference",
        "--now",
        "2024-06-01T12:00:00Z",
    )
    _assert_refused(result, "w1-0.jsonl", tmp_path)
    odd = tmp_path / "live.xlsx"
    odd.write_bytes(b"x")
    _assert_refused(
        _mlkube("--model-dir", tmp_path / "default/churn/v1", "--live", odd),
        "unknown live data format",
        tmp_path,
    )


def test_empty_window_is_insufficient_data_with_a_message(store: Path, tmp_path: Path) -> None:
    result = _mlkube(
        "--model-dir",
        store / "default/churn/v1",
        "--live",
        store / "default/churn/inference",
        "--now",
        "2030-01-01T00:00:00Z",
        "--report",
        tmp_path / "r.json",
        "--fail-on-drift",
    )
    assert result.returncode == 0, result.stderr
    assert "no live rows" in result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdict"] == "insufficient-data" and report["samples"]["live"] == 0


def test_rows_logged_earlier_in_the_same_second_are_in_the_window(tmp_path: Path) -> None:
    """Without ``--now`` the window ends at this instant, not at the start of its second:
    a check run right after the server stopped must see the rows it just logged."""
    from mlkube.cli import main

    root = tmp_path / "store"
    store_version(root, synthetic_frame(500, seed=1, drifted=False)[FEATURES])
    live = synthetic_frame(300, seed=7, drifted=False)[FEATURES]
    while not 0.05 <= time.time() % 1 < 0.5:  # room in this second for rows, then the check
        time.sleep(0.01)
    logged = datetime.now(UTC)
    rows = _log_rows(live, logged - timedelta(seconds=len(live) - 1))  # the last one: now
    _write_log(root, rows, hour=logged)
    model = root / "default/churn"
    flags = {
        "--model-dir": model / "v1",
        "--live": model / "inference",
        "--report": tmp_path / "r.json",
    }
    code = main(["drift-check", "--no-plot", *(str(x) for pair in flags.items() for x in pair)])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"]["live"] == 300, report["samples"]


def test_nan_only_column_is_a_data_quality_finding(store: Path, tmp_path: Path) -> None:
    live = synthetic_frame(800, seed=5, drifted=False)[FEATURES]
    live["n0"] = np.nan
    live.loc[:99, "n3"] = np.nan
    path = tmp_path / "live.parquet"
    live.to_parquet(path)
    result = _mlkube(
        "--model-dir",
        store / "default/churn/v1",
        "--live",
        path,
        "--report",
        tmp_path / "r.json",
        "--no-plot",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    findings = {(f["feature"], f["finding"]) for f in report["dataQuality"]}
    assert ("n0", "all-missing") in findings and ("n3", "missing-fraction") in findings
    assert report["features"]["n0"]["method"] == "none"
    assert report["features"]["n0"]["liveMissingFraction"] == 1.0
    assert report["testedFeatures"] == len(FEATURES) - 1
    assert "all-missing" in result.stdout


def test_unwritable_store_fails_cleanly(tmp_path: Path) -> None:
    store_version(tmp_path, synthetic_frame(2_000, seed=1, drifted=False)[FEATURES])
    (tmp_path / "default/churn/drift").write_text("a file where the report directory goes")
    live = tmp_path / "live.csv"
    synthetic_frame(600, seed=6, drifted=False)[FEATURES].to_csv(live, index=False)
    result = _mlkube("--model-dir", tmp_path / "default/churn/v1", "--live", live)
    assert result.returncode == 2 and "cannot write the report" in result.stderr
    assert sorted(p.name for p in (tmp_path / "default/churn").iterdir()) == ["drift", "v1"]


def test_bad_monitor_and_flags_are_refused(store: Path, tmp_path: Path) -> None:
    live = tmp_path / "live.csv"
    synthetic_frame(600, seed=7, drifted=False)[FEATURES].to_csv(live, index=False)
    args: list[str | Path] = ["--model-dir", store / "default/churn/v1", "--live", live]
    bad = _mlkube(*args, "-f", _monitor(tmp_path, numeric="median"))
    assert bad.returncode == 2 and "spec.drift.numeric" in bad.stderr
    assert _mlkube(*args, "--window", "soon").returncode == 2
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"kind": "Monitor", "spec": {"modelRef": {"name": "iris"}}}))
    mismatch = _mlkube(*args, "-f", other)
    assert mismatch.returncode == 2 and "iris" in mismatch.stderr
