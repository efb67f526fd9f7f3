"""``mlkube drift-check --monitor`` with the store on S3, as the operator runs it there:
``MLKUBE_STORE_ROOT=s3://bucket/prefix`` and ``MLKUBE_REPORT_DIR`` an ``s3://`` prefix. The
window is read from the bucket and the report is written back to it."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path

from drift_data import store_version, synthetic_frame
from harness.controlplane import ControlPlane
from integration.test_drift_incluster import (
    FEATURES,
    MLKUBE,
    MODEL,
    NOW,
    _apply,
    _get,
    _monitor,
    _patch_status,
    _write_log,
)
from mlkube.runtime.store import s3
from mlkube.runtime.store.s3 import S3Location


def _upload(local: Path, target: S3Location) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file():
            s3.put_bytes(target / str(path.relative_to(local)), path.read_bytes())


def test_drift_check_reads_the_window_from_s3_and_writes_the_report_there(
    control_plane: ControlPlane,
    crds: list[str],
    namespace: str,
    s3_store: str,
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    store_version(
        store, synthetic_frame(3_000, seed=1, drifted=False)[FEATURES], namespace=namespace
    )
    _write_log(store, namespace, 1_200, NOW - timedelta(minutes=30))
    root = S3Location.parse(s3_store)
    _upload(store, root)
    _apply(control_plane, namespace, MODEL)
    _patch_status(control_plane, namespace, "models.mlkube.io", "churn", {"servingVersion": 1})
    _apply(control_plane, namespace, _monitor("churn-watch", "churn"))

    reports = root / namespace / "churn" / "drift-reports"
    env = {
        **os.environ,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "MLKUBE_STORE_ROOT": s3_store,
        "MLKUBE_REPORT_DIR": str(reports),
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    result = subprocess.run(
        [
            str(MLKUBE),
            "drift-check",
            "--monitor",
            f"{namespace}/churn-watch",
            "--now",
            NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    status = _get(control_plane, namespace, "monitors.mlkube.io", "churn-watch")["status"]
    assert status["verdict"] == "drift" and status["samples"] == 1_200
    assert status["lastReport"].startswith(f"{reports}/")
    assert s3.exists(S3Location.parse(status["lastReport"]))
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr
