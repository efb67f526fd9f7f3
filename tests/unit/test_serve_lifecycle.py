"""Starting and stopping ``mlkube serve`` as a real process.

Refusals (one line on stderr, exit 2): a tampered artifact, a wrong ``--sha256`` (the
flag wins over the env), a missing artifact, a file constructing an untrusted type, a
directory that is not a version, a bad setting. Stopping: SIGTERM lets a request whose
body is still arriving finish, flushes the inference log and exits 0; ``--workers 2``
serves from two processes and stops both. And a model produced by ``mlkube train``
serves the same predictions the trainer's pipeline makes.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
from serve_support import Server, base_metadata, cancer_data, v2_matrix, write_cancer_model
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from train_support import churn_frame, manifest, train_manifest_process

from mlkube.runtime.artifact import FeatureSchema, load_pipeline, read_metadata, write_version
from mlkube.runtime.train.pipeline import model_inputs

X, _, NAMES = cancer_data()
INFER = "/v2/models/cancer/infer"


def serve_once(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlkube", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("mlkube serve: error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_tampered_artifact_is_refused(tmp_path: Path) -> None:
    model_dir = write_cancer_model(tmp_path)
    artifact = model_dir / "model.skops"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    assert_refused(serve_once("--model-dir", str(model_dir)), "sha256 mismatch", "refusing")


def test_expected_sha256_from_the_flag_wins_over_the_env(tmp_path: Path) -> None:
    import os

    model_dir = write_cancer_model(tmp_path)
    right = read_metadata(model_dir)["artifact"]["sha256"]
    env = {**os.environ, "MLKUBE_SERVE_SHA256": right}
    result = serve_once("--model-dir", str(model_dir), "--sha256", "ab" * 32, env=env)
    assert_refused(result, "sha256 mismatch", "ab" * 32)


def test_missing_artifact_and_non_version_dirs_are_refused(tmp_path: Path) -> None:
    model_dir = write_cancer_model(tmp_path)
    (model_dir / "model.skops").unlink()
    assert_refused(serve_once("--model-dir", str(model_dir)), "cannot read", "model.skops")
    assert_refused(serve_once("--model-dir", str(tmp_path)), "not a model version")


def shout(values: np.ndarray) -> np.ndarray:  # a function skops cannot vouch for
    return values


def test_untrusted_types_are_refused(tmp_path: Path) -> None:
    pipeline = Pipeline([("f", FunctionTransformer(shout))]).fit(X[:, :2])
    features = [
        FeatureSchema(name=n, kind="numeric", dtype="float64", nullable=False) for n in "ab"
    ]
    target = tmp_path / "default/odd/v1"
    write_version(target, pipeline, base_metadata("odd", 1, "regression", features))
    assert_refused(serve_once("--model-dir", str(target)), "untrusted types", "shout")


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    model_dir = write_cancer_model(tmp_path)
    assert_refused(serve_once("--model-dir", str(model_dir), "--sample-rate", "2"), "sample_rate")
    assert_refused(serve_once(), "--model-dir")


def test_sigterm_finishes_the_request_in_flight_and_flushes_the_log(tmp_path: Path) -> None:
    model_dir = write_cancer_model(tmp_path)
    server = Server.start(tmp_path, ["--model-dir", str(model_dir), "--sample-rate", "1"])
    for _ in range(30):
        assert server.post(INFER, v2_matrix(X[:2])).status == 200
    body = orjson.dumps(v2_matrix(X[:1], id="last"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as slow:
        slow.sendall(
            b"POST /v2/models/cancer/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:20]
        )
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.process.poll() is None, "exited with a request in flight"
        slow.sendall(body[20:])
        reply = b""
        while chunk := slow.recv(65536):
            reply += chunk
    try:
        assert b"200 OK" in reply
        assert b'"id":"last"' in reply
        assert server.process.wait(30) == 0
    finally:
        server.stop()
    lines = [
        json.loads(line)
        for path in (tmp_path / "default/cancer/inference").rglob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(lines) == 61
    assert any(r["request_id"] == "last" for r in lines)


def test_two_workers_serve_and_stop_together(tmp_path: Path) -> None:
    model_dir = write_cancer_model(tmp_path)
    server = Server.start(
        tmp_path, ["--model-dir", str(model_dir), "--workers", "2", "--sample-rate", "1"]
    )
    deadline = time.monotonic() + 30
    while server.log().count("Application startup complete") < 2:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    for _ in range(40):
        assert server.post(INFER, v2_matrix(X[:1])).status == 200
    assert server.stop() == 0
    assert "Traceback" not in server.log()
    files = list((tmp_path / "default/cancer/inference").rglob("*.jsonl"))
    assert sum(len(p.read_text().splitlines()) for p in files) == 40
    assert all("-w" in p.name for p in files)


def test_serves_a_model_trained_by_mlkube_train(tmp_path: Path) -> None:
    frame = churn_frame(400)
    frame.loc[::40, "income"] = np.nan
    frame.to_csv(tmp_path / "churn.csv", index=False)
    document = manifest(uri=str(tmp_path / "churn.csv"), target="churned")
    trained = train_manifest_process(
        tmp_path,
        document,
        tmp_path / "termination",
    )
    assert trained.code == 0, trained.stderr
    model_dir = tmp_path / "store/default/churn/v1"
    server = Server.start(tmp_path, ["--model-dir", str(model_dir)])
    try:
        rows = frame.drop(columns="churned").head(8)
        records = json.loads(rows.to_json(orient="records"))
        reply = server.post("/v1/models/churn:predict", {"instances": records})
        assert reply.status == 200, reply.body
        pipeline = load_pipeline(model_dir)
        expected = pipeline.predict(model_inputs(rows, read_metadata(model_dir)["features"]))
        assert reply.json()["predictions"] == expected.tolist()
        meta = server.get("/v2/models/churn/versions/1").json()
        assert {i["name"]: i["datatype"] for i in meta["inputs"]}["region"] == "BYTES"
    finally:
        assert server.stop() == 0
