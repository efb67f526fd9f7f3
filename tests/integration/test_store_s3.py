"""The S3 store on a real S3-compatible server (SeaweedFS on loopback), from a laptop:
``mlkube train --store s3://…``, ``mlkube serve --model-dir s3://…/vN`` and
``mlkube drift-check --model-dir s3://…/vN`` with only the standard AWS environment."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest

from harness.objectstore import ObjectStore
from integration.s3_support import IRIS_ROWS, mlkube, serving, train
from mlkube.runtime.store import s3, versions
from mlkube.runtime.store.s3 import S3Location


def keys(where: S3Location) -> list[str]:
    return sorted(s3.list_keys(where))


def logged_rows(inference: S3Location) -> dict[str, int]:
    """Rows per logged object, the planted 2001 partition aside."""
    return {
        key: gzip.decompress(s3.get_bytes(inference / key, 1 << 26) or b"").count(b"\n")
        for key in keys(inference)
        if not key.startswith("2001-")
    }


@pytest.mark.timeout(900)
def test_train_commits_versions_and_never_overwrites(s3_store: str) -> None:
    first = train(s3_store)
    assert first["version"] == 1
    model = S3Location.parse(s3_store) / "default/iris"
    assert first["artifact"]["uri"] == f"{model}/v1"
    assert {"v1/model.skops", "v1/metadata.json"} <= set(keys(model))
    metadata = orjson.loads(s3.get_bytes(model / "v1/metadata.json", 1 << 26) or b"")
    assert metadata["artifact"]["sha256"] == first["artifact"]["sha256"]
    assert train(s3_store)["version"] == 2  # the next version is counted in the bucket
    before = {k: s3.get_bytes(model / k, 1 << 26) for k in keys(model)}
    again = mlkube(
        "train",
        "-f",
        str(Path(__file__).parents[2] / "manifests/examples/iris.yaml"),
        "--store",
        s3_store,
        "--version",
        "1",
    )
    assert again.returncode == 2
    assert "already exists; versions are never overwritten" in again.stderr
    assert {k: s3.get_bytes(model / k, 1 << 26) for k in keys(model)} == before
    assert versions.committed_versions(model) == [1, 2]


def test_the_commit_is_a_conditional_put_the_server_honours(s3_store: str, tmp_path: Path) -> None:
    version = S3Location.parse(s3_store) / "ns/m/v1"
    assert s3.put_bytes(version / "metadata.json", b"{}", if_absent=True)
    assert not s3.put_bytes(version / "metadata.json", b"{}", if_absent=True)
    (tmp_path / "metadata.json").write_bytes(b'{"other": true}')
    (tmp_path / "model.skops").write_bytes(b"other")
    try:
        versions.publish_version(tmp_path, version)
    except Exception as error:
        assert "already exists" in str(error)
    else:
        raise AssertionError("an existing version was overwritten")
    assert s3.get_bytes(version / "metadata.json", 100) == b"{}"
    assert not s3.exists(version / "model.skops")


@pytest.mark.timeout(900)
def test_serve_from_s3_verifies_the_pinned_digest(s3_store: str, tmp_path: Path) -> None:
    summary = train(s3_store)
    uri, digest = summary["artifact"]["uri"], summary["artifact"]["sha256"]
    cache = tmp_path / "cache"
    args = ["--model-dir", uri, "--sha256", digest, "--model-cache", str(cache)]
    with serving(args, tmp_path / "serve.log") as server:
        answer = server.predict(IRIS_ROWS)
    assert answer["predictions"] == [0, 2, 2]
    assert (cache / "v1" / "model.skops").is_file()

    wrong = mlkube(
        "serve",
        "--model-dir",
        uri,
        "--sha256",
        "0" * 64,
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--model-cache",
        str(tmp_path / "c2"),
    )
    assert wrong.returncode == 2 and "sha256 mismatch" in wrong.stderr
    assert not list((tmp_path / "c2").glob("v1")), "a refused version left files in the cache"

    model = S3Location.parse(uri)
    original = s3.get_bytes(model / "model.skops", 1 << 28) or b""
    s3.put_bytes(model / "model.skops", original[:-1] + bytes([original[-1] ^ 1]))
    tampered = mlkube(
        "serve",
        "--model-dir",
        uri,
        "--sha256",
        digest,
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--model-cache",
        str(tmp_path / "c3"),
    )
    assert tampered.returncode == 2 and "sha256 mismatch" in tampered.stderr
    unpinned = mlkube(
        "serve",
        "--model-dir",
        uri,
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--model-cache",
        str(tmp_path / "c4"),
    )
    assert unpinned.returncode == 2 and "sha256 mismatch" in unpinned.stderr


@pytest.mark.timeout(900)
def test_inference_log_to_s3_and_drift_check_from_it(
    s3_store: str, objectstore: ObjectStore, tmp_path: Path
) -> None:
    summary = train(s3_store)
    uri = summary["artifact"]["uri"]
    model = S3Location.parse(uri).parent
    # A partition far outside any window: listing or reading it would fail the check.
    s3.put_bytes(model / "inference/2001-01-01/00/planted.jsonl.gz", b"not gzip")
    args = ["--model-dir", uri, "--sha256", summary["artifact"]["sha256"], "--sample-rate", "1"]
    env = {"MLKUBE_SERVE_LOG_BATCH_ROWS": "20"}
    with serving(args, tmp_path / "serve.log", env=env) as server:
        for _ in range(15):
            server.predict(IRIS_ROWS)
        code = server.stop()
    assert code == 0, server.log.read_text()
    logged = logged_rows(model / "inference")
    assert logged and all(k.endswith(".jsonl.gz") for k in logged)
    assert len(logged) >= 2  # 45 rows in batches of 20 rows: several objects
    assert sum(logged.values()) == 45, logged

    checked = mlkube("drift-check", "--model-dir", uri, "--no-plot")
    assert checked.returncode == 0, checked.stderr
    report_uri = checked.stdout.split("report: ", 1)[1].split()[0]
    assert report_uri.startswith(f"{model}/drift/") and report_uri.endswith(".json")
    report = json.loads(s3.get_bytes(S3Location.parse(report_uri), 1 << 26) or b"")
    # The check runs within a second of the last row: the window must end at this instant.
    assert report["samples"]["live"] == 45, (report["samples"], report["window"], logged)
    assert report["live"] == str(model / "inference")  # names the bucket, not a temp copy
    assert objectstore.secret_key not in checked.stdout + checked.stderr


SEARCH = """
apiVersion: mlkube.io/v1alpha1
kind: Model
metadata: {name: wine}
spec:
  task: classification
  training:
    data: {uri: "sklearn://wine", target: target}
    validation: {testFraction: 0.2, folds: 3, metric: f1_macro, randomSeed: 7}
    search:
      method: grid
      candidates:
        - class: sklearn.neighbors.KNeighborsClassifier
          grid: {n_neighbors: [3, 9]}
"""


@pytest.mark.timeout(900)
def test_a_search_commits_its_winner_and_the_distributed_form_is_refused(
    s3_store: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "wine.yaml"
    manifest.write_text(SEARCH)
    result = mlkube("train", "-f", str(manifest), "--store", s3_store)
    assert result.returncode == 0, result.stderr
    model = S3Location.parse(s3_store) / "default/wine"
    assert versions.committed_versions(model) == [1]
    assert not [k for k in keys(model) if not k.startswith("v1/")]  # trials stayed local
    for step in (["--trial", "0"], ["--select"]):
        refused = mlkube("train", "-f", str(manifest), "--store", s3_store, *step)
        assert refused.returncode == 2 and "need a store shared by the trial pods" in refused.stderr
    mounted = mlkube("train", "-f", str(manifest), "--store", s3_store, "--model-root", "/tmp/x")
    assert mounted.returncode == 2 and "--model-root" in mounted.stderr


@pytest.mark.timeout(900)
def test_prune_below_removes_old_versions_commit_first(s3_store: str, tmp_path: Path) -> None:
    train(s3_store)
    model = S3Location.parse(s3_store) / "default/iris"
    local = versions.fetch_version(model / "v1", tmp_path / "cache")
    for n in (2, 3):  # copies stand in for older versions (prune looks at names only)
        versions.publish_version(local, model / f"v{n}")
    train(s3_store, "--prune-below", "4", "--keep", "1")
    assert versions.committed_versions(model) == [1, 4]
    assert not [k for k in keys(model) if k.startswith(("v2/", "v3/"))]


MONITOR = """
apiVersion: mlkube.io/v1alpha1
kind: Monitor
metadata: {name: iris}
spec:
  modelRef: {name: iris}
  window: {duration: 24h, minSamples: 10}
  performance: {metric: accuracy, minScore: 0.5, minLabels: 10}
"""


@pytest.mark.timeout(900)
def test_labels_to_s3_and_the_live_score_from_them(s3_store: str, tmp_path: Path) -> None:
    """Feedback labels go beside the log in the bucket; the check joins them (issue 17 on
    an S3 store): both partitions are staged from the window's prefixes only."""
    summary = train(s3_store)
    uri = summary["artifact"]["uri"]
    model = S3Location.parse(uri).parent
    args = ["--model-dir", uri, "--sha256", summary["artifact"]["sha256"], "--sample-rate", "1"]
    env = {"MLKUBE_SERVE_LOG_BATCH_ROWS": "20"}
    truth = [0, 2, 2]  # setosa, virginica, virginica: what IRIS_ROWS are
    with serving(args, tmp_path / "serve.log", env=env) as server:
        for i in range(10):
            server.predict(IRIS_ROWS, request_id=f"r{i}")
        labels = [
            {"id": f"r{i}", "row": j, "label": y} for i in range(10) for j, y in enumerate(truth)
        ]
        assert server.post("/v2/models/iris/feedback", {"labels": labels}) == {"accepted": 30}
        assert server.stop() == 0
    assert any(k.endswith(".jsonl.gz") for k in keys(model / "inference" / "labels"))
    monitor = tmp_path / "monitor.yaml"
    monitor.write_text(MONITOR)
    checked = mlkube("drift-check", "--model-dir", uri, "-f", str(monitor), "--no-plot")
    assert checked.returncode == 0, checked.stderr
    report_uri = checked.stdout.split("report: ", 1)[1].split()[0]
    report = json.loads(s3.get_bytes(S3Location.parse(report_uri), 1 << 26) or b"")
    performance = report["performance"]
    assert performance["labels"]["matched"] == 30 and performance["metric"] == "accuracy"
    assert 0.0 <= performance["score"] <= 1.0
