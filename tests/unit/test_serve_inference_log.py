"""The inference log: rows in the agreed layout, and requests unharmed by a bad store.

Over real HTTP: every predicted row becomes one JSON line under
``YYYY-MM-DD/HH/<writer>-<seq>.jsonl`` (default directory ``<model>/inference``),
failures included; a log directory that cannot be written (a file in its place, a tiny
full tmpfs) drops and counts rows while every request still succeeds. In process: a writer
that never catches up (its thread not running) makes ``submit`` drop and count instead
of blocking; size rotation and the retention bound delete the oldest files.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY
from serve_support import Server, cancer_data, metric_value, v2_matrix, write_cancer_model

from mlkube.runtime.serve.inferencelog import InferenceLogger, Record
from mlkube.runtime.serve.metrics import ModelMetrics
from mlkube.runtime.serve.model import Batch

X, _, NAMES = cancer_data()
INFER = "/v2/models/cancer/infer"
FILE_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}/\d{2}/[\w.-]+-\d{6}\.jsonl$")


def read_rows(directory: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(directory.rglob("*.jsonl")):
        assert FILE_NAME.match(str(path.relative_to(directory))), path
        for line in path.read_text().splitlines():
            rows.append(json.loads(line))
    return rows


def test_rows_are_logged_in_the_agreed_format(tmp_path: Path) -> None:
    model_dir = write_cancer_model(tmp_path, version=4)
    server = Server.start(
        tmp_path, ["--model-dir", str(model_dir)], {"MLKUBE_SERVE_SAMPLE_RATE": "1"}
    )
    assert server.post(INFER, v2_matrix(X[:3], id="batch-3")).status == 200
    bad = v2_matrix(X[:1])
    bad["inputs"][0]["data"][0] = None
    assert server.post(INFER, bad, {"X-Request-Id": "bad-1"}).status == 400
    records = [dict(zip(NAMES, X[5].tolist(), strict=True))]
    assert server.post("/v1/models/cancer:predict", {"instances": records}).status == 200
    assert server.stop() == 0

    rows = read_rows(tmp_path / "default/cancer/inference")
    assert len(rows) == 5
    batch = [r for r in rows if r["request_id"] == "batch-3"]
    assert len(batch) == 3
    first = batch[0]
    # the rows of a batch request are numbered, so a label can name one of them
    assert set(first) == {
        "ts",
        "model",
        "version",
        "request_id",
        "status",
        "inputs",
        "output",
        "row",
    }
    assert [r["row"] for r in batch] == [0, 1, 2]
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$", first["ts"])
    assert first["model"] == "cancer"
    assert first["version"] == 4
    assert first["status"] == 200
    assert first["inputs"] == dict(zip(NAMES, X[0].tolist(), strict=True))
    assert [r["output"] for r in batch] == [0, 0, 0]
    (failure,) = [r for r in rows if r["request_id"] == "bad-1"]
    assert failure["status"] == 400
    assert failure["output"] is None
    assert "'mean radius'" in failure["error"]
    (v1,) = [r for r in rows if r["status"] == 200 and r["request_id"] not in ("batch-3",)]
    assert v1["inputs"] == records[0]
    assert "row" not in v1  # a one-row request's line has no row (it is row 0)
    assert len(v1["request_id"]) == 32


def test_sample_rate_zero_writes_nothing(tmp_path: Path) -> None:
    model_dir = write_cancer_model(tmp_path)
    server = Server.start(tmp_path, ["--model-dir", str(model_dir), "--sample-rate", "0"])
    for _ in range(20):
        assert server.post(INFER, v2_matrix(X[:1])).status == 200
    assert server.stop() == 0
    assert not (tmp_path / "default/cancer/inference").exists()


def _hammer_and_check_drops(server: Server, requests: int = 200) -> str:
    for i in range(requests):
        reply = server.post(INFER, v2_matrix(X[i % 50 : i % 50 + 10]))
        assert reply.status == 200, reply.body
    metrics = server.get("/metrics").body.decode()
    dropped = metric_value(
        metrics, "mlkube_serve_inference_log_dropped_rows_total", reason="write_failed"
    )
    assert dropped is not None
    assert dropped > 0
    errors = metric_value(metrics, "mlkube_serve_inference_log_write_errors_total")
    assert errors is not None
    assert errors > 0
    return metrics


def test_unwritable_log_dir_drops_rows_but_never_fails_requests(tmp_path: Path) -> None:
    model_dir = write_cancer_model(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log directory should be")
    server = Server.start(
        tmp_path, ["--model-dir", str(model_dir), "--sample-rate", "1", "--log-dir", str(blocker)]
    )
    _hammer_and_check_drops(server)
    assert server.stop() == 0


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_full_disk_drops_rows_keeps_whole_lines_and_never_fails_requests(
    tmp_path: Path, tiny_tmpfs: Path
) -> None:
    model_dir = write_cancer_model(tmp_path)
    server = Server.start(
        tmp_path,
        ["--model-dir", str(model_dir), "--sample-rate", "1", "--log-dir", str(tiny_tmpfs)],
    )
    metrics = _hammer_and_check_drops(server)
    assert server.stop() == 0
    written = metric_value(metrics, "mlkube_serve_inference_log_rows_total")
    assert written is not None
    assert written > 0
    rows = read_rows(tiny_tmpfs)
    assert len(rows) >= written
    assert all(r["status"] == 200 for r in rows)


def _logger(directory: Path, metrics: ModelMetrics, **limits: int) -> InferenceLogger:
    return InferenceLogger(
        directory,
        model="unit",
        version=1,
        feature_names=["a", "b"],
        metrics=metrics,
        writer_id="host-1",
        max_queued_rows=limits.get("max_queued_rows", 1000),
        rotate_bytes=limits.get("rotate_bytes", 1 << 20),
        retain_bytes=limits.get("retain_bytes", 1 << 30),
        retain_files=limits.get("retain_files", 1000),
    )


def _record(i: int, rows: int = 1) -> Record:
    batch = Batch(rows=rows, matrix=np.full((rows, 2), float(i)))
    return Record(
        ts=1_700_000_000.0 + i,
        request_id=f"r{i}",
        status=200,
        batch=batch,
        outputs=np.zeros(rows, dtype=np.int64),
        error=None,
    )


def _sample(name: str, version: str, suffix: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(
        name + suffix, {"model_name": "unit", "model_version": version, **labels}
    )
    return value or 0.0


def test_a_writer_that_never_catches_up_makes_submit_drop_not_block(tmp_path: Path) -> None:
    metrics = ModelMetrics("unit", "slow")
    logger = _logger(tmp_path, metrics, max_queued_rows=10)
    for i in range(100):
        logger.submit(_record(i))
    assert (
        _sample("mlkube_serve_inference_log_dropped_rows", "slow", "_total", reason="queue_full")
        == 90
    )
    logger.start()
    logger.close(timeout=10)
    assert len(read_rows(tmp_path)) == 10
    assert _sample("mlkube_serve_inference_log_rows", "slow", "_total") == 10


def _wait_for_rows(version: str, rows: int) -> None:
    deadline = time.monotonic() + 10
    while _sample("mlkube_serve_inference_log_rows", version, "_total") < rows:
        assert time.monotonic() < deadline, f"the writer did not write {rows} rows"
        time.sleep(0.005)


def test_rotation_by_size_and_retention_of_the_newest_files(tmp_path: Path) -> None:
    metrics = ModelMetrics("unit", "rotate")
    logger = _logger(tmp_path, metrics, rotate_bytes=600, retain_files=3)
    logger.start()
    for i in range(30):
        logger.submit(_record(i, rows=2))
        _wait_for_rows("rotate", 2 * (i + 1))
    logger.close(timeout=10)
    files = sorted(tmp_path.rglob("*.jsonl"))
    assert len(files) == 3
    sequence = [int(p.stem.rsplit("-", 1)[1]) for p in files]
    assert sequence == list(range(sequence[0], sequence[0] + 3))
    assert sequence[0] > 1
    ids = sorted({int(r["request_id"][1:]) for r in read_rows(tmp_path)})
    assert ids == list(range(ids[0], 30))
    assert ids[0] > 0
