"""One request's cost is bounded by its size, and slow clients cannot starve fast ones (issue 13).

Real HTTP against a real ``mlkube serve`` on loopback:

- an output named twice in V2 ``outputs`` is a 400 (it repeated the whole tensor);
- a batch whose response would exceed ``32 x body + 64 KiB`` is a 413 before predicting
  (rows of zeros against a 10-class model multiplied the body a hundredfold);
- a request id over 128 characters, in the body or the ``x-request-id`` header, is a 400;
- the inference log grows by at most ``16 x body + 4 KiB`` for one request, however its
  rows are shaped (rows beyond the budget are dropped and counted);
- bodies that arrive one byte at a time hold no prediction slot: honest requests get 200
  and readiness stays truthful while they trickle, and after ``--body-timeout`` they get
  408 and their connection is closed;
- JSON nested 100,000 deep is a 400 on both protocols.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from serve_support import (
    Server,
    base_metadata,
    cancer_data,
    metric_value,
    v2_matrix,
    write_cancer_model,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline

from mlkube.runtime.artifact import FeatureSchema, write_version
from mlkube.runtime.serve.inferencelog import log_budget

INFER = "/v2/models/cancer/infer"
PREDICT = "/v1/models/cancer:predict"
X, _, NAMES = cancer_data()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    model_dir = write_cancer_model(tmp_path / "store")
    running = Server.start(
        tmp_path,
        ["--model-dir", str(model_dir), "--max-in-flight", "4"],
        env={"MLKUBE_SERVE_BODY_TIMEOUT": "3"},
    )
    try:
        yield running
    finally:
        running.stop()


def test_an_output_named_twice_is_refused(server: Server) -> None:
    once = server.post(INFER, v2_matrix(X[:50], outputs=[{"name": "predict_proba"}]))
    assert once.status == 200
    repeated = v2_matrix(X[:50], outputs=[{"name": "predict_proba"}] * 500)
    reply = server.post(INFER, repeated)
    assert reply.status == 400 and "more than once" in reply.json()["error"]
    assert len(reply.body) < 200


def test_a_response_cannot_outgrow_its_request(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 500).reshape(-1, 1)
    model = LogisticRegression(max_iter=2000).fit(x, (x[:, 0] * 10).astype(int).clip(0, 9))
    feature = FeatureSchema(name="f", kind="numeric", dtype="float64", nullable=False)
    metadata = base_metadata("cancer", 1, "classification", [feature])
    metadata["target"] = {"name": "t", "classes": list(range(10))}
    write_version(tmp_path / "default/cancer/v1", Pipeline([("clf", model)]), metadata)
    server = Server.start(tmp_path, ["--model-dir", str(tmp_path / "default/cancer/v1")])
    try:
        zeros = orjson.dumps(v2_matrix(np.zeros((50_000, 1), dtype=int)))
        refused = server.post(INFER, zeros)
        assert refused.status == 413 and "fewer rows" in refused.json()["error"]
        only_labels = orjson.loads(zeros) | {"outputs": [{"name": "predict"}]}
        labels = server.post(INFER, only_labels)
        assert labels.status == 200 and len(labels.body) <= 32 * len(zeros) + 65536
        normal = server.post(INFER, v2_matrix(x[:100]))
        assert normal.status == 200 and len(normal.json()["outputs"][1]["data"]) == 1000
        v1 = server.post(PREDICT, {"instances": [[0]] * 30_000})
        assert v1.status == 413
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("where", ["header", "body"])
def test_a_long_request_id_is_refused(server: Server, where: str) -> None:
    long_id = "r" * 129
    body = v2_matrix(X[:1], **({"id": long_id} if where == "body" else {}))
    headers = {"x-request-id": long_id} if where == "header" else {}
    reply = server.post(INFER, body, headers)
    assert reply.status == 400 and "at most 128" in reply.json()["error"]
    if where == "header":
        assert server.post(PREDICT, {"instances": [X[0].tolist()]}, headers).status == 400
    fits = server.post(INFER, v2_matrix(X[:1], id="r" * 128))
    assert fits.status == 200 and fits.json()["id"] == "r" * 128


def _log_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*.jsonl"))


def _one_feature_model(store: Path) -> Path:
    """A regressor on one feature with a long name, which every logged row repeats."""
    pipeline = Pipeline([("reg", LinearRegression())]).fit(X[:, :1], X[:, 1])
    feature = FeatureSchema(name=LONG_NAME, kind="numeric", dtype="float64", nullable=False)
    target = store / "default" / "cancer" / "v1"
    write_version(target, pipeline, base_metadata("cancer", 1, "regression", [feature]))
    return target


LONG_NAME = "a_feature_whose_name_is_long_enough_to_dwarf_its_value_in_the_log"


def test_log_growth_is_bounded_by_the_body_size(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    args = ["--model-dir", str(_one_feature_model(tmp_path / "store")), "--sample-rate", "1"]
    server = Server.start(tmp_path, [*args, "--log-dir", str(log_dir)])
    rows = 20_000
    compact = orjson.dumps({"id": "i" * 128, **v2_matrix(np.zeros((rows, 1), dtype=int))})
    normal = orjson.dumps(v2_matrix(X[:20, :1]))
    try:
        assert server.post(INFER, compact).status == 200
        assert server.post(INFER, normal).status == 200
        time.sleep(1.0)
        metrics = server.get("/metrics").body.decode()
    finally:
        assert server.stop() == 0
    growth = _log_bytes(log_dir)
    assert 0 < growth <= log_budget(len(compact)) + log_budget(len(normal))
    name = "mlkube_serve_inference_log_dropped_rows_total"
    dropped = metric_value(metrics, name, reason="over_budget")
    assert dropped is not None and 0 < dropped < rows
    assert metric_value(metrics, "mlkube_serve_inference_log_rows_total") == rows - dropped + 20


def _trickle(port: int, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(
        b"POST /v2/models/cancer/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
        b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:5]
    )
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test)."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_slow_bodies_hold_no_slot_and_time_out(server: Server) -> None:
    body = orjson.dumps(v2_matrix(X[:1]))
    slow = [_trickle(server.port, body) for _ in range(20)]
    try:
        started = time.monotonic()
        time.sleep(0.3)
        for index, sock in enumerate(slow):
            sock.sendall(body[5 + index % 3 : 6 + index % 3])
        replies = [server.post(INFER, body).status for _ in range(20)]
        ready = server.get("/v2/health/ready").status
        assert time.monotonic() - started < 3
        assert replies == [200] * 20 and ready == 200
        answers = [_read_until_closed(sock) for sock in slow]
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]
    finally:
        for sock in slow:
            sock.close()
    assert server.post(INFER, body).status == 200


@pytest.mark.parametrize("path", [INFER, PREDICT])
def test_json_nested_100000_deep_is_a_400(server: Server, path: str) -> None:
    key = b'"inputs"' if path == INFER else b'"instances"'
    deep = b"{" + key + b": " + b"[" * 100_000 + b"]" * 100_000 + b"}"
    reply = server.post(path, deep)
    assert reply.status == 400 and "JSON" in reply.json()["error"]
    assert server.post(INFER, v2_matrix(X[:1])).status == 200
