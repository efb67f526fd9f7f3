"""Every route of ``mlkube serve`` over real HTTP on loopback, against real fitted models.

Covers health, server and model metadata (with and without a version), readiness, V2
inference with one 2-D tensor and with one tensor per feature, requested outputs, the
echoed id, the plain V1 route, a regression model, a model with a categorical feature
fitted on a DataFrame, and the Prometheus metrics with their model labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
    write_mixed_model,
    write_regression_model,
)

from mlkube.runtime.artifact import load_pipeline


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    write_cancer_model(root, version=3)
    write_mixed_model(root)
    write_regression_model(root)
    return root


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[Server]:
    running = Server.start(store, ["--model-dir", str(store / "default/cancer/v3")])
    yield running
    assert running.stop() == 0


def test_health_and_server_metadata(server: Server) -> None:
    assert server.get("/v2/health/live").json() == {"live": True}
    assert server.get("/v2/health/ready").json() == {"ready": True}
    meta = server.get("/v2").json()
    assert meta["name"] == "mlkube"
    assert "version" in meta


@pytest.mark.parametrize("path", ["/v2/models/cancer", "/v2/models/cancer/versions/3"])
def test_model_metadata_lists_the_input_schema(server: Server, path: str) -> None:
    meta = server.get(path).json()
    _, _, names = cancer_data()
    assert meta["name"] == "cancer"
    assert meta["versions"] == ["3"]
    assert [i["name"] for i in meta["inputs"]] == names
    assert meta["inputs"][0]["datatype"] == "FP64"
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
    assert meta["outputs"][1]["shape"] == [-1, 2]
    assert meta["parameters"]["classes"] == [0, 1]


@pytest.mark.parametrize(
    "path", ["/v2/models/cancer/ready", "/v2/models/cancer/versions/3/ready", "/v1/models/cancer"]
)
def test_model_ready(server: Server, path: str) -> None:
    reply = server.get(path)
    assert reply.status == 200
    assert reply.json() == {"name": "cancer", "ready": True}


def test_v2_infer_with_a_2d_tensor_matches_the_pipeline(server: Server, store: Path) -> None:
    x, _, _ = cancer_data()
    reply = server.post("/v2/models/cancer/infer", v2_matrix(x[:25], id="req-7"))
    assert reply.status == 200, reply.body
    doc = reply.json()
    assert doc["model_name"] == "cancer"
    assert doc["model_version"] == "3"
    assert doc["id"] == "req-7"
    predict, proba = doc["outputs"]
    pipeline = load_pipeline(store / "default/cancer/v3")
    assert predict == {
        "name": "predict",
        "shape": [25],
        "datatype": "INT64",
        "data": pipeline.predict(x[:25]).tolist(),
    }
    assert proba["shape"] == [25, 2]
    assert proba["datatype"] == "FP64"
    np.testing.assert_allclose(
        np.array(proba["data"]).reshape(25, 2), pipeline.predict_proba(x[:25]), rtol=1e-12
    )


def test_v2_infer_with_one_tensor_per_feature_and_a_version(server: Server) -> None:
    x, _, names = cancer_data()
    by_feature = server.post("/v2/models/cancer/versions/3/infer", v2_by_feature(x[:5], names))
    matrix = server.post("/v2/models/cancer/infer", v2_matrix(x[:5]))
    assert by_feature.status == 200, by_feature.body
    assert by_feature.json()["outputs"] == matrix.json()["outputs"]


def test_v2_feature_tensors_may_be_column_vectors_and_other_numeric_types(server: Server) -> None:
    x, _, names = cancer_data()
    request = v2_by_feature(x[:2], names)
    for tensor in request["inputs"]:
        tensor["shape"] = [2, 1]
        tensor["datatype"] = "FP32"
    assert server.post("/v2/models/cancer/infer", request).status == 200


def test_v2_requested_outputs_only(server: Server) -> None:
    x, _, _ = cancer_data()
    reply = server.post("/v2/models/cancer/infer", v2_matrix(x[:3], outputs=[{"name": "predict"}]))
    assert [o["name"] for o in reply.json()["outputs"]] == ["predict"]


def test_v1_predict_with_records_and_rows(server: Server) -> None:
    x, _, names = cancer_data()
    records = [dict(zip(names, row, strict=True)) for row in x[:4].tolist()]
    reply = server.post("/v1/models/cancer:predict", {"instances": records})
    assert reply.status == 200, reply.body
    doc = reply.json()
    expected = server.post("/v2/models/cancer/infer", v2_matrix(x[:4])).json()["outputs"]
    assert doc["predictions"] == expected[0]["data"]
    assert doc["classes"] == [0, 1]
    np.testing.assert_allclose(np.array(doc["probabilities"]).ravel(), expected[1]["data"])
    rows = server.post("/v1/models/cancer:predict", {"instances": x[:4].tolist()})
    assert rows.json()["predictions"] == doc["predictions"]


def test_metrics_carry_model_labels(server: Server) -> None:
    x, _, _ = cancer_data()
    before = server.get("/metrics").body.decode()
    server.post("/v2/models/cancer/infer", v2_matrix(x[:10]))
    server.post("/v2/models/nope/infer", v2_matrix(x[:1]))
    reply = server.get("/metrics")
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.body.decode()
    labels = {"model_name": "cancer", "model_version": "3"}
    ok = metric_value(text, "mlkube_serve_requests_total", route="infer", code="200", **labels)
    ok_before = metric_value(before, "mlkube_serve_requests_total", route="infer", code="200") or 0
    assert ok is not None
    assert ok >= ok_before + 1
    assert metric_value(text, "mlkube_serve_requests_total", route="infer", code="404") == 1
    assert metric_value(
        text, "mlkube_serve_request_duration_seconds_count", route="infer", **labels
    )
    assert metric_value(text, "mlkube_serve_batch_size_bucket", le="10.0", **labels)
    predicted = sum(
        metric_value(text, "mlkube_serve_predictions_total", **{"class": c}, **labels) or 0
        for c in ("0", "1")
    )
    assert predicted >= 10
    assert (
        metric_value(text, "mlkube_serve_model_info", estimator="LogisticRegression", **labels) == 1
    )
    assert metric_value(text, "process_cpu_seconds_total") is not None


def test_regression_model(store: Path, tmp_path: Path) -> None:
    x, _, names = cancer_data()
    server = Server.start(tmp_path, ["--model-dir", str(store / "default/price/v2")])
    try:
        reply = server.post(
            "/v2/models/price/versions/2/infer", v2_by_feature(x[:3, :3], names[:3])
        )
        assert reply.status == 200, reply.body
        (predict,) = reply.json()["outputs"]
        assert predict["datatype"] == "FP64"
        expected = load_pipeline(store / "default/price/v2").predict(x[:3, :3])
        np.testing.assert_allclose(predict["data"], expected)
        v1 = server.post("/v1/models/price:predict", {"instances": x[:3, :3].tolist()}).json()
        assert set(v1) == {"predictions"}
        metrics = server.get("/metrics").body.decode()
        assert metric_value(metrics, "mlkube_serve_predictions_total", model_name="price") == 6
    finally:
        assert server.stop() == 0


def test_model_with_a_categorical_feature(store: Path, tmp_path: Path) -> None:
    server = Server.start(tmp_path, ["--model-dir", str(store / "default/churn/v1")])
    try:
        reply = server.post(
            "/v1/models/churn:predict",
            {
                "instances": [
                    {"age": 70, "plan": "basic"},
                    {"age": None, "plan": "pro"},
                    {"age": 20, "plan": "new"},
                ]
            },
        )
        assert reply.status == 200, reply.body
        doc = reply.json()
        assert doc["classes"] == ["no", "yes"]
        assert doc["predictions"][:2] == ["yes", "yes"]
        v2 = server.post(
            "/v2/models/churn/infer",
            {
                "inputs": [
                    {"name": "age", "shape": [1], "datatype": "INT64", "data": [30]},
                    {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]},
                ]
            },
        )
        assert v2.status == 200, v2.body
        assert v2.json()["outputs"][0] == {
            "name": "predict",
            "shape": [1],
            "datatype": "BYTES",
            "data": ["no"],
        }
        meta = server.get("/v2/models/churn").json()
        assert [i["datatype"] for i in meta["inputs"]] == ["FP64", "BYTES"]
        refused = server.post("/v1/models/churn:predict", {"instances": [{"age": 1, "plan": None}]})
        assert refused.status == 400
        assert "'plan'" in refused.json()["error"]
    finally:
        assert server.stop() == 0


def test_v2_binary_tensor_extension_round_trip(server: Server) -> None:
    """What tritonclient sends by default: JSON header, raw FP64 input, binary outputs."""
    x, _, _ = cancer_data()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [4, 30],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 4 * 30 * 8},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    reply = server.post(
        "/v2/models/cancer/infer",
        header + x[:4].astype("<f8").tobytes(),
        {
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert reply.status == 200, reply.body
    json_length = int(reply.headers["inference-header-content-length"])
    doc = orjson.loads(reply.body[:json_length])
    predict, _proba = doc["outputs"]
    assert "data" not in predict
    tail = reply.body[json_length:]
    labels = np.frombuffer(tail[: predict["parameters"]["binary_data_size"]], dtype="<i8")
    probabilities = np.frombuffer(tail[predict["parameters"]["binary_data_size"] :], dtype="<f8")
    expected = server.post("/v2/models/cancer/infer", v2_matrix(x[:4])).json()["outputs"]
    assert labels.tolist() == expected[0]["data"]
    np.testing.assert_allclose(probabilities, expected[1]["data"])
