"""Compiled inference (issue 16): the trainer's ONNX file, verified, and the server's engines.

Real scikit-learn, skl2onnx and onnxruntime, real ``mlkube train`` runs on bundled data
sets, real ``mlkube serve`` processes on loopback. What must hold:

- LogisticRegression and RandomForest pipelines (breast_cancer, iris; diabetes for
  regression; categorical features in ``test_serve_compiled_categorical``) get a
  ``model.onnx`` whose verdict, largest difference, tolerance and sha256 are in ``metadata.json``;
- the server with engine ``auto`` serves them through onnxruntime and answers the same
  labels, the same response shapes and types, and probabilities / predictions within the
  tolerance as engine ``sklearn``, on every row of the data set (the holdout included);
- a pipeline that cannot convert, or does not match, is recorded with the reason, gets
  no ONNX file, and serves through scikit-learn (``--engine onnx`` then refuses to start);
- a tampered ``model.onnx`` (digest not updated) is refused; ``--onnx-sha256`` wins over
  metadata.json; an ONNX file pointing at data outside itself is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import sklearn.datasets
from serve_support import Server, v2_matrix
from test_serve_lifecycle import assert_refused, serve_once
from train_support import manifest, write_manifest

from mlkube.cli import main
from mlkube.runtime.artifact import load_pipeline, read_metadata
from mlkube.runtime.compiled import (
    ONNX_FILE,
    TOLERANCE,
    CompiledModelError,
    check_graph,
    compile_pipeline,
)

LR = ("sklearn.linear_model.LogisticRegression", {"max_iter": 5000})
RF = ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 100})
CASES: dict[str, tuple[str, str, tuple[str, dict[str, Any]]]] = {
    "cancer-lr": ("breast_cancer", "classification", LR),
    "cancer-rf": ("breast_cancer", "classification", RF),
    "iris-lr": ("iris", "classification", LR),
    "iris-rf": ("iris", "classification", RF),
    "diabetes-rf": (
        "diabetes",
        "regression",
        ("sklearn.ensemble.RandomForestRegressor", {"n_estimators": 50}),
    ),
    "diabetes-ridge": ("diabetes", "regression", ("sklearn.linear_model.Ridge", {})),
    # Its leaves reach protobuf as bools: "unconvertible" under protobuf 7 (pyproject pins <7).
    "cancer-hgb": (
        "breast_cancer",
        "classification",
        ("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 50}),
    ),
}


def train(directory: Path, name: str, document: dict[str, Any]) -> Path:
    path = write_manifest(directory, document, f"{name}.json")
    store = directory / "store"
    code = main(["train", "-f", str(path), "--store", str(store), "--termination-log", "/dev/null"])
    assert code == 0
    return store / "default" / name / "v1"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("compiled")
    out = {}
    for name, (data, task, (estimator, params)) in CASES.items():
        document = manifest(
            name, task=task, estimator=estimator, params=params, uri=f"sklearn://{data}"
        )
        out[name] = train(directory, name, document)
    return out


def all_rows(name: str) -> np.ndarray[Any, Any]:
    data = CASES[name][0]
    x: np.ndarray[Any, Any] = getattr(sklearn.datasets, f"load_{data}")(return_X_y=True)[0]
    return x


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_trainer_writes_a_verified_onnx_file(trained: dict[str, Path], name: str) -> None:
    model_dir = trained[name]
    metadata = read_metadata(model_dir)
    record = metadata["compiled"]
    assert record["verified"] is True, record
    assert record["verdict"] == "verified"
    assert record["tolerance"] == TOLERANCE
    assert record["rows"] == metadata["data"]["testRows"]
    assert record["labelsEqual"] is True
    assert 0.0 <= record["maxDifference"] <= TOLERANCE
    onnx_bytes = (model_dir / ONNX_FILE).read_bytes()
    assert record["file"] == ONNX_FILE
    assert record["sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    assert record["bytes"] == len(onnx_bytes)


def infer_both(server: Server, name: str, rows: np.ndarray[Any, Any]) -> dict[str, Any]:
    v2 = server.post(f"/v2/models/{name}/infer", v2_matrix(rows))
    v1 = server.post(f"/v1/models/{name}:predict", {"instances": rows.tolist()})
    single = server.post(f"/v2/models/{name}/infer", v2_matrix(rows[:1]))
    assert (v2.status, v1.status, single.status) == (200, 200, 200), v2.body + v1.body
    meta = server.get(f"/v2/models/{name}").json()
    return {"v2": v2.json(), "v1": v1.json(), "single": single.json(), "meta": meta}


def assert_same_answers(onnx_side: dict[str, Any], sklearn_side: dict[str, Any]) -> None:
    """Same keys, shapes, datatypes and labels; numbers within the tolerance."""
    for route in ("v2", "single"):
        got, want = onnx_side[route], sklearn_side[route]
        assert got.keys() == want.keys()
        assert [o["name"] for o in got["outputs"]] == [o["name"] for o in want["outputs"]]
        for mine, theirs in zip(got["outputs"], want["outputs"], strict=True):
            assert (mine["shape"], mine["datatype"]) == (theirs["shape"], theirs["datatype"])
            if mine["datatype"] == "FP64" and mine["name"] == "predict_proba":
                assert np.allclose(mine["data"], theirs["data"], rtol=0, atol=TOLERANCE)
            elif mine["datatype"] == "FP64":  # regression
                scale = np.maximum(1.0, np.abs(theirs["data"]))
                assert np.max(np.abs(np.subtract(mine["data"], theirs["data"])) / scale) <= (
                    TOLERANCE
                )
            else:
                assert mine["data"] == theirs["data"]
    assert_v1_agree(onnx_side["v1"], sklearn_side["v1"])


def assert_v1_agree(got: dict[str, Any], want: dict[str, Any]) -> None:
    """V1 answers of the two engines: same labels and classes, numbers within tolerance."""
    assert got.keys() == want.keys()
    if "probabilities" in want:
        assert got["predictions"] == want["predictions"]
        assert got["classes"] == want["classes"]
        assert np.allclose(got["probabilities"], want["probabilities"], rtol=0, atol=TOLERANCE)
    else:
        mine, theirs = np.array(got["predictions"]), np.array(want["predictions"])
        scale = np.maximum(1.0, np.abs(theirs))
        assert np.max(np.abs(mine - theirs) / scale) <= TOLERANCE


@pytest.mark.parametrize("name", ["cancer-lr", "cancer-rf", "iris-rf", "diabetes-rf"])
def test_auto_serves_onnx_with_the_same_answers_as_sklearn(
    trained: dict[str, Path], name: str, tmp_path: Path
) -> None:
    rows = all_rows(name)
    model_dir = str(trained[name])
    compiled = Server.start(tmp_path, ["--model-dir", model_dir])
    plain = Server.start(
        tmp_path, ["--model-dir", model_dir], env={"MLKUBE_SERVE_ENGINE": "sklearn"}
    )
    try:
        onnx_side = infer_both(compiled, name, rows)
        sklearn_side = infer_both(plain, name, rows)
        assert onnx_side["meta"]["parameters"]["engine"] == "onnx"
        assert sklearn_side["meta"]["parameters"]["engine"] == "sklearn"
        assert "verified at training" in onnx_side["meta"]["parameters"]["engine_reason"]
        assert "engine onnx: model.onnx verified at training" in compiled.log()
        assert "engine sklearn: forced by --engine sklearn" in plain.log()
        assert_same_answers(onnx_side, sklearn_side)
        meta_keys = {k for k in onnx_side["meta"] if k != "parameters"}
        for key in meta_keys:
            assert onnx_side["meta"][key] == sklearn_side["meta"][key]
    finally:
        assert compiled.stop() == 0
        assert plain.stop() == 0


def test_two_workers_serve_the_onnx_engine(trained: dict[str, Path], tmp_path: Path) -> None:
    rows = all_rows("cancer-rf")
    server = Server.start(tmp_path, ["--model-dir", str(trained["cancer-rf"]), "--workers", "2"])
    try:
        pipeline = load_pipeline(trained["cancer-rf"])
        for _ in range(4):  # new connections, so both workers answer some
            reply = server.post("/v2/models/cancer-rf/infer", v2_matrix(rows))
            assert reply.status == 200, reply.body
            labels = reply.json()["outputs"][0]["data"]
            assert labels == pipeline.predict(rows).tolist()
    finally:
        assert server.stop() == 0


def test_a_pipeline_without_a_converter_is_recorded_and_served_by_sklearn(
    tmp_path: Path,
) -> None:
    # skl2onnx has no converter for KernelRidge: a real conversion failure.
    document = manifest(
        "kernel",
        task="regression",
        estimator="sklearn.kernel_ridge.KernelRidge",
        uri="sklearn://diabetes",
    )
    model_dir = train(tmp_path, "kernel", document)
    record = read_metadata(model_dir)["compiled"]
    assert record["verified"] is False
    assert record["verdict"] == "unconvertible"
    assert "KernelRidge" in record["reason"]
    assert not (model_dir / ONNX_FILE).exists()
    server = Server.start(tmp_path, ["--model-dir", str(model_dir)])
    try:
        rows = all_rows("diabetes-rf")[:5]
        reply = server.post("/v2/models/kernel/infer", v2_matrix(rows))
        assert reply.status == 200, reply.body
        expected = load_pipeline(model_dir).predict(rows)
        assert reply.json()["outputs"][0]["data"] == expected.tolist()
        parameters = server.get("/v2/models/kernel").json()["parameters"]
        assert parameters["engine"] == "sklearn"
        assert "unconvertible" in parameters["engine_reason"]
        assert "engine sklearn: the ONNX conversion was not verified (unconvertible)" in (
            server.log()
        )
    finally:
        assert server.stop() == 0
    forced = serve_once("--model-dir", str(model_dir), "--engine", "onnx")
    assert_refused(forced, "--engine onnx", "unconvertible")


def test_a_mismatch_beyond_the_tolerance_is_refused_with_its_reason(
    trained: dict[str, Path],
) -> None:
    pipeline = load_pipeline(trained["cancer-rf"])
    rows = all_rows("cancer-rf")
    loose = compile_pipeline(pipeline, rows, "classification")
    assert loose.onnx is not None
    assert loose.record["maxDifference"] > 0.0  # float32 differs somewhere in the last bits
    strict = compile_pipeline(pipeline, rows, "classification", tolerance=0.0)
    assert strict.onnx is None
    assert strict.record["verified"] is False
    assert strict.record["verdict"] == "mismatch"
    assert strict.record["maxDifference"] == loose.record["maxDifference"]
    assert "outputs differ from scikit-learn" in strict.record["reason"]


def test_a_tampered_onnx_file_is_refused(trained: dict[str, Path], tmp_path: Path) -> None:
    model_dir = tmp_path / "v1"
    model_dir.mkdir()
    for path in trained["cancer-lr"].iterdir():
        (model_dir / path.name).write_bytes(path.read_bytes())
    onnx_path = model_dir / ONNX_FILE
    genuine = onnx_path.read_bytes()
    data = bytearray(genuine)
    data[len(data) // 2] ^= 0xFF
    onnx_path.write_bytes(bytes(data))
    for engine in ("auto", "onnx"):
        refused = serve_once("--model-dir", str(model_dir), "--engine", engine)
        assert_refused(refused, "sha256 mismatch", ONNX_FILE, "refusing")
    onnx_path.write_bytes(genuine)
    wrong = "0" * 64
    assert_refused(
        serve_once("--model-dir", str(model_dir), "--onnx-sha256", wrong), "sha256 mismatch"
    )
    # The operator's digest wins over metadata.json's: a rewritten record is not believed.
    metadata_path = model_dir / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["compiled"]["sha256"] = wrong
    metadata_path.write_text(json.dumps(metadata))
    digest = hashlib.sha256(genuine).hexdigest()
    server = Server.start(tmp_path, ["--model-dir", str(model_dir), "--onnx-sha256", digest])
    try:
        assert server.get("/v2/models/cancer-lr").json()["parameters"]["engine"] == "onnx"
    finally:
        assert server.stop() == 0


def test_an_onnx_file_reading_data_outside_itself_is_refused(trained: dict[str, Path]) -> None:
    proto = onnx.load_model_from_string((trained["cancer-lr"] / ONNX_FILE).read_bytes())
    proto.graph.initializer.append(
        onnx.helper.make_tensor("planted", onnx.TensorProto.FLOAT, [1], [0.0])
    )
    tensor = proto.graph.initializer[-1]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../../etc/passwd"
    with pytest.raises(CompiledModelError, match="outside its file"):
        check_graph(proto.SerializeToString())
