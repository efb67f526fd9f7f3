"""Faults of the S3 store on the real server: a trainer killed between its uploads and its
commit, an endpoint that is down while the predictor logs, and a wrong secret."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from harness.objectstore import ObjectStore
from integration.s3_support import IRIS, IRIS_ROWS, MLKUBE, CommitKiller, mlkube, serving, train
from mlkube.runtime.store import s3, versions
from mlkube.runtime.store.s3 import S3Location


@pytest.mark.timeout(900)
def test_a_trainer_killed_before_its_commit_leaves_no_version_and_the_retry_makes_one(
    s3_store: str, objectstore: ObjectStore, tmp_path: Path
) -> None:
    model = S3Location.parse(s3_store) / "default/iris"
    with CommitKiller(objectstore.endpoint) as proxy:
        proc = subprocess.Popen(
            [
                str(MLKUBE),
                "train",
                "-f",
                str(IRIS),
                "--store",
                s3_store,
                "--version",
                "1",
                "--termination-log",
                str(tmp_path / "termination"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "AWS_ENDPOINT_URL": proxy.endpoint},
        )
        proxy.victim = proc.pid
        _, stderr = proc.communicate(timeout=600)
    assert proxy.killed.is_set(), stderr.decode()
    assert proc.returncode == -9
    assert any(p.endswith("/v1/model.skops") for p in proxy.forwarded)  # the objects went up
    assert versions.committed_versions(model) == []  # but no version is visible
    assert s3.exists(model / "v1/model.skops") and not s3.exists(model / "v1/metadata.json")
    fetched = mlkube("serve", "--model-dir", f"{model}/v1", "--port", "0")
    assert fetched.returncode == 2 and "not a (committed) model version" in fetched.stderr

    retried = train(s3_store, "--version", "1")
    assert retried["version"] == 1
    assert versions.committed_versions(model) == [1]
    local = versions.fetch_version(model / "v1", tmp_path / "cache", retried["artifact"]["sha256"])
    assert (local / "metadata.json").is_file()


@pytest.mark.timeout(900)
def test_logging_to_a_stopped_server_costs_rows_never_requests(tmp_path: Path) -> None:
    store = tmp_path / "store"
    summary = train(str(store))
    dead = ObjectStore(tmp_path / "dead").start()
    dead.stop()  # stopped: its loopback port now refuses connections
    env = {
        **dead.env,
        "MLKUBE_SERVE_LOG_BATCH_ROWS": "3",
        "MLKUBE_SERVE_LOG_PENDING_BYTES": "4096",
        "MLKUBE_SERVE_LOG_QUEUE_ROWS": "300",
    }
    args = [
        "--model-dir",
        str(store / "default/iris/v1"),
        "--sha256",
        summary["artifact"]["sha256"],
        "--sample-rate",
        "1",
        "--log-dir",
        dead.uri("default/iris/inference"),
    ]
    with serving(args, tmp_path / "serve.log", env=env) as server:
        for _ in range(200):
            assert server.predict(IRIS_ROWS)["predictions"] == [0, 2, 2]
        labels = {"model_name": "iris"}
        # The uploads fail on the sink's own thread, after the requests have been answered.
        deadline = time.monotonic() + 60
        while (
            server.metric("mlkube_serve_inference_log_write_errors_total", **labels) < 1
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert server.metric("mlkube_serve_inference_log_write_errors_total", **labels) >= 1
        dropped = server.metric("mlkube_serve_inference_log_dropped_rows_total", **labels)
        stored = server.metric("mlkube_serve_inference_log_rows_total", **labels)
        assert dropped > 0 and stored == 0
        assert server.stop() == 0  # the shutdown is not held up by the dead endpoint either


@pytest.mark.timeout(900)
def test_a_wrong_secret_is_refused_without_showing_it(
    s3_store: str, objectstore: ObjectStore, tmp_path: Path
) -> None:
    wrong_secret = "wrong-" + objectstore.secret_key[6:]
    # As in a pod the operator made: the Secret's name (never its values) is in the env.
    env = {"AWS_SECRET_ACCESS_KEY": wrong_secret, "MLKUBE_S3_SECRET_NAME": "team-store"}
    log = tmp_path / "termination"
    result = mlkube(
        "train", "-f", str(IRIS), "--store", s3_store, "--termination-log", str(log), env=env
    )
    assert result.returncode == 2
    assert "SignatureDoesNotMatch" in result.stderr or "AccessDenied" in result.stderr
    assert "credentials from Secret 'team-store'" in log.read_text()
    shown = result.stdout + result.stderr + log.read_text()
    for secret in (wrong_secret, objectstore.secret_key, objectstore.access_key):
        assert secret not in shown
    served = mlkube("serve", "--model-dir", f"{s3_store}/default/iris/v1", "--port", "0", env=env)
    assert served.returncode == 2
    assert wrong_secret not in served.stderr and objectstore.access_key not in served.stderr
