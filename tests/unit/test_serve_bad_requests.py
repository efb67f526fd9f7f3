"""Client mistakes against a running ``mlkube serve``: each a 4xx naming the problem.

Each case sends one bad request over real HTTP and checks the status code, the V2 error
body ``{"error": ...}`` and words of its message; the server must stay up throughout
(checked after every case and once more at the end, with a good request and a scrape of
the per-code request counter). Also: overload sheds with 503 + Retry-After.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from serve_support import (
    Server,
    cancer_data,
    metric_value,
    v2_by_feature,
    v2_matrix,
    write_cancer_model,
)

INFER = "/v2/models/cancer/infer"
FEEDBACK = "/v2/models/cancer/feedback"
PREDICT = "/v1/models/cancer:predict"
X, _, NAMES = cancer_data()
ROW = X[0].tolist()


@dataclass(frozen=True)
class Bad:
    id: str
    status: int
    words: tuple[str, ...]
    method: str = "POST"
    path: str = INFER
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()


def _matrix(**tensor: Any) -> dict[str, Any]:
    base = {"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": ROW}
    return {"inputs": [{**base, **tensor}]}


def _features(change: dict[str, Any] | None = None, drop: str | None = None) -> dict[str, Any]:
    request = v2_by_feature(X[:2], NAMES)
    request["inputs"] = [t for t in request["inputs"] if t["name"] != drop]
    for tensor in request["inputs"]:
        if change and tensor["name"] in change:
            tensor.update(change[tensor["name"]])
    return request


def _with_extra() -> dict[str, Any]:
    request = _features()
    request["inputs"].append({"name": "zip code", "shape": [2], "datatype": "FP64", "data": [1, 2]})
    return request


def _binary_matrix(size: int) -> bytes:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 30],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": size},
                }
            ],
        }
    )
    return header + X[0].astype("<f8").tobytes()


CASES = [
    Bad("malformed-json", 400, ("not valid JSON",), body=b'{"inputs": [}'),
    Bad("truncated-body", 400, ("not valid JSON",), body=orjson.dumps(_matrix())[:60]),
    Bad("not-an-object", 400, ("JSON object",), body=b"[1, 2, 3]"),
    Bad("no-inputs", 400, ("'inputs'",), body={"id": "x"}),
    Bad("unknown-datatype", 400, ("'input-0'", "FP128"), body=_matrix(datatype="FP128")),
    Bad(
        "bytes-for-numeric", 400, ("'input-0'", "BYTES", "numeric"), body=_matrix(datatype="BYTES")
    ),
    Bad(
        "int-with-fraction",
        400,
        ("'mean radius'", "INT64", "non-integer"),
        body=_features({"mean radius": {"datatype": "INT64"}}),
    ),
    Bad("wrong-shape", 400, ("'input-0'", "[1, 29]"), body=_matrix(shape=[1, 29], data=ROW[:29])),
    Bad("shape-data-mismatch", 400, ("'input-0'", "29 values"), body=_matrix(data=ROW[:29])),
    Bad(
        "ragged-rows",
        400,
        ("'input-0'", "uneven"),
        body=_matrix(shape=[2, 30], data=[ROW, ROW[:3]]),
    ),
    Bad(
        "rows-disagree",
        400,
        ("'mean texture'", "3 rows"),
        body=_features({"mean texture": {"shape": [3], "data": [1.0, 2.0, 3.0]}}),
    ),
    Bad("missing-input", 400, ("missing", "'mean area'"), body=_features(drop="mean area")),
    Bad("extra-input", 400, ("unknown input", "'zip code'"), body=_with_extra()),
    Bad(
        "nan-not-allowed",
        400,
        ("'mean smoothness'", "missing", "row 1"),
        body=_features({"mean smoothness": {"data": [0.1, None]}}),
    ),
    Bad(
        "string-in-numeric",
        400,
        ("'mean area'", "'abc'"),
        body=_matrix(data=[*ROW[:3], "abc", *ROW[4:]]),
    ),
    Bad(
        "numeric-string",
        400,
        ("'worst area'", "'12.5'"),
        body=_features({"worst area": {"data": ["12.5", 3.0]}}),
    ),
    Bad("empty-batch", 400, ("empty batch",), body=_matrix(shape=[0, 30], data=[])),
    Bad("huge-batch", 413, ("200000 rows", "at most 100000"), body=_matrix(shape=[200_000, 30])),
    Bad("oversized-body", 413, ("limit",), body=b" " * (2 * 1024 * 1024)),
    Bad(
        "wrong-content-type",
        415,
        ("text/csv", "application/json"),
        body=b"1,2,3",
        headers=(("Content-Type", "text/csv"),),
    ),
    Bad("unknown-model", 404, ("'iris'", "'cancer'"), path="/v2/models/iris/infer", body=_matrix()),
    Bad(
        "unknown-version",
        404,
        ("version '9'",),
        path="/v2/models/cancer/versions/9/infer",
        body=_matrix(),
    ),
    Bad("unknown-metadata", 404, ("'iris'",), method="GET", path="/v2/models/iris"),
    Bad("unknown-route", 404, ("no route",), method="GET", path="/v3/whatever"),
    Bad("get-on-infer", 405, ("GET", "POST"), method="GET"),
    Bad("post-on-metadata", 405, ("POST", "GET"), path="/v2/models/cancer", body=_matrix()),
    Bad(
        "unknown-output",
        400,
        ("'label'", "predict_proba"),
        body={**_matrix(), "outputs": [{"name": "label"}]},
    ),
    Bad("id-not-string", 400, ("'id'",), body={**_matrix(), "id": 5}),
    Bad("v1-no-instances", 400, ("'instances'",), path=PREDICT, body={"inputs": []}),
    Bad(
        "v1-missing-feature",
        400,
        ("instance 1", "'mean radius'"),
        path=PREDICT,
        body={
            "instances": [
                dict(zip(NAMES, ROW, strict=True)),
                dict(zip(NAMES[1:], ROW[1:], strict=True)),
            ]
        },
    ),
    Bad(
        "v1-unknown-feature",
        400,
        ("instance 0", "'colour'"),
        path=PREDICT,
        body={"instances": [{**dict(zip(NAMES, ROW, strict=True)), "colour": "red"}]},
    ),
    Bad(
        "v1-string-value",
        400,
        ("'mean texture'", "row 0", "'high'"),
        path=PREDICT,
        body={"instances": [{**dict(zip(NAMES, ROW, strict=True)), "mean texture": "high"}]},
    ),
    Bad("v1-empty", 400, ("empty batch",), path=PREDICT, body={"instances": []}),
    Bad(
        "binary-size-past-body",
        400,
        ("'input-0'", "binary_data_size"),
        body=_binary_matrix(size=10_000),
        headers=(("Inference-Header-Content-Length", str(len(_binary_matrix(size=10_000)) - 240)),),
    ),
    # Ground-truth labels (the feedback route): checked whole before anything is written.
    Bad("feedback-not-json", 400, ("not JSON",), path=FEEDBACK, body=b'{"labels": [}'),
    Bad("feedback-no-labels", 400, ('"labels"',), path=FEEDBACK, body={"id": "r1", "label": 1}),
    Bad(
        "feedback-label-wrong-type",
        400,
        ("labels[1].label", "a number"),
        path=FEEDBACK,
        body={"labels": [{"id": "a", "label": 1}, {"id": "b", "label": "malignant"}]},
    ),
    Bad(
        "feedback-unknown-class",
        400,
        ("labels[0].label", "7", "not a class"),
        path=FEEDBACK,
        body={"labels": [{"id": "a", "label": 7}]},
    ),
    Bad(
        "feedback-label-bool",
        400,
        ("labels[0].label",),
        path=FEEDBACK,
        body={"labels": [{"id": "a", "label": True}]},
    ),
    Bad(
        "feedback-no-id",
        400,
        ("labels[0].id",),
        path=FEEDBACK,
        body={"labels": [{"label": 1}]},
    ),
    Bad(
        "feedback-bad-row",
        400,
        ("labels[0].row",),
        path=FEEDBACK,
        body={"labels": [{"id": "a", "row": -1, "label": 1}]},
    ),
    Bad(
        "feedback-huge-batch",
        413,
        ("10001 labels", "at most 10000"),
        path=FEEDBACK,
        body={"labels": [{"id": f"r{i}", "label": 1} for i in range(10_001)]},
    ),
    Bad(
        "feedback-unknown-model",
        404,
        ("'iris'",),
        path="/v2/models/iris/feedback",
        body={"labels": [{"id": "a", "label": 1}]},
    ),
    Bad("feedback-get", 405, ("GET", "POST"), method="GET", path=FEEDBACK),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("store")
    model_dir = write_cancer_model(store)
    running = Server.start(
        store,
        ["--model-dir", str(model_dir), "--max-body-bytes", str(1024 * 1024), "--sample-rate", "1"],
    )
    yield running
    assert running.stop() == 0


def test_there_are_at_least_fifteen_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_request_gets_a_clear_4xx(server: Server, case: Bad) -> None:
    reply = server.request(case.method, case.path, case.body, dict(case.headers))
    assert reply.status == case.status, reply.body
    assert reply.headers["content-type"] == "application/json"
    message = reply.json()["error"]
    for word in case.words:
        assert word in message, message
    if case.status == 405:
        assert reply.headers["allow"]
    assert server.process.poll() is None
    assert server.get("/v2/health/live").status == 200


def test_server_still_serves_after_every_bad_request(server: Server) -> None:
    good = server.post(INFER, v2_matrix(X[:2]))
    assert good.status == 200
    metrics = server.get("/metrics").body.decode()
    assert metric_value(metrics, "mlkube_serve_requests_total", code="500") is None
    assert metric_value(metrics, "mlkube_serve_requests_total", route="infer", code="400")
    assert "Traceback" not in server.log()


def test_truncated_body_with_a_longer_content_length(server: Server) -> None:
    """The client promises more bytes than it sends, then hangs up: no crash, no answer owed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v2/models/cancer/infer HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"inputs": ['
        )
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1024)
    assert server.post(INFER, v2_matrix(X[:1])).status == 200


def test_overload_is_shed_with_503_and_retry_after(tmp_path: Path) -> None:
    """With one slot, a prediction running in the pool holds it: the next request gets 503
    with Retry-After, and readiness says 503 too while no slot is free."""
    model_dir = write_cancer_model(tmp_path)
    server = Server.start(
        tmp_path,
        ["--model-dir", str(model_dir), "--max-in-flight", "1"],
        env={"MLKUBE_SERVE_INLINE_PREDICT_MS": "0.000001"},  # predict in the thread pool
    )
    big = orjson.dumps(v2_matrix(np.tile(X, (60, 1))))
    busy = threading.Event()

    def keep_busy() -> None:
        while not busy.is_set():
            server.post(INFER, big)

    worker = threading.Thread(target=keep_busy, daemon=True)
    worker.start()
    try:
        shed = _wait_for_shed(server)
        assert shed.status == 503
        assert shed.headers["retry-after"] == "1"
        assert "overloaded" in shed.json()["error"]
        assert _wait_for(server, "/v2/health/ready", 503).status == 503
    finally:
        busy.set()
        worker.join(timeout=30)
    assert server.post(INFER, v2_matrix(X[:1])).status == 200
    assert server.get("/v2/health/ready").status == 200
    assert server.stop() == 0


def _wait_for(server: Server, path: str, status: int) -> Any:
    reply = server.get(path)
    for _ in range(200):
        if reply.status == status:
            break
        reply = server.get(path)
    return reply


def _wait_for_shed(server: Server) -> Any:
    reply = server.post(INFER, v2_matrix(X[:1]))
    for _ in range(200):
        if reply.status == 503:
            break
        reply = server.post(INFER, v2_matrix(X[:1]))
    return reply
