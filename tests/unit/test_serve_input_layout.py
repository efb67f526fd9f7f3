"""The pipeline's input layout: trainer-made pipelines take arrays, the server feeds them.

Covers metadata.json's ``input`` written by ``mlkube train`` (float64 for all-numeric
schemas, object arrays with categoricals), the server calling such pipelines with the
arrays it decoded (no DataFrame) and predicting exactly what the pipeline predicts on the
trainer's own inputs, a plain numpy caller (what MLServer's sklearn runtime does), a
feature order other than the schema's, and refusals of layouts it cannot honour. Older
artifacts without ``input`` are covered by the other serve tests (frame-fitted and
array-fitted pipelines written without it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_support import base_metadata, cancer_data
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from train_support import churn_frame, manifest, train_in

from mlkube.runtime.artifact import (
    ArtifactError,
    FeatureSchema,
    load_pipeline,
    read_metadata,
    write_version,
)
from mlkube.runtime.serve.decoding import Schema, decode_v1_instances, decode_v2_inputs
from mlkube.runtime.serve.model import load_model
from mlkube.runtime.train.pipeline import model_inputs


def _train(tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, Any]) -> Path:
    result = train_in(capsys, tmp_path, document)
    assert result.code == 0, result.stderr
    name = document["metadata"]["name"]
    return tmp_path / "store" / "default" / name / "v1"


def test_numeric_trainer_model_is_served_from_the_decoded_matrix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = _train(
        tmp_path,
        capsys,
        manifest("cancer", uri="sklearn://breast_cancer", params={"max_iter": 5000}),
    )
    metadata = read_metadata(version)
    assert metadata["input"]["layout"] == "array"
    assert metadata["input"]["dtype"] == "float64"
    # scikit-learn's engine, so its answer is bit-for-bit the pipeline's; the onnx engine
    # (the default for this version) is compared in test_serve_compiled.py.
    model = load_model(version, None, engine="sklearn")
    assert not model.uses_frame
    x, _, _ = cancer_data()
    schema = Schema(model.features, 1000)
    batch = decode_v2_inputs(
        [{"name": "x", "shape": [5, 30], "datatype": "FP64", "data": x[:5].ravel().tolist()}],
        schema,
    )
    assert model.model_input(batch) is batch.matrix
    pipeline = load_pipeline(version)
    assert np.array_equal(model.predict(batch).proba, pipeline.predict_proba(x[:5]))
    compiled = load_model(version, None)
    assert compiled.engine == "onnx"
    assert compiled.model_input(batch) is batch.matrix
    assert np.allclose(compiled.predict(batch).proba, pipeline.predict_proba(x[:5]), atol=1e-4)


def test_categorical_trainer_model_gets_an_object_array_and_predicts_as_trained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = churn_frame(300)
    frame.loc[::30, "income"] = np.nan
    frame.to_csv(tmp_path / "churn.csv", index=False)
    version = _train(tmp_path, capsys, manifest(uri=str(tmp_path / "churn.csv"), target="churned"))
    metadata = read_metadata(version)
    assert metadata["input"] == {
        "layout": "array",
        "order": ["age", "income", "region", "plan"],
        "dtype": "object",
    }
    model = load_model(version, None)
    assert not model.uses_frame
    rows = frame.drop(columns="churned").head(12).copy()
    rows.loc[rows.index[3], "region"] = "atlantis"  # unseen category
    records = json.loads(rows.to_json(orient="records"))
    batch = decode_v1_instances(records, Schema(model.features, 1000))
    x = model.model_input(batch)
    assert isinstance(x, np.ndarray) and x.dtype == object and x.shape == (12, 4)
    expected = load_pipeline(version).predict_proba(model_inputs(rows, metadata["features"]))
    assert np.allclose(model.predict(batch).proba, expected, rtol=0, atol=1e-12)


def test_trainer_model_takes_a_plain_numpy_array_as_mlserver_passes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = _train(
        tmp_path,
        capsys,
        manifest(
            "forest",
            uri="sklearn://breast_cancer",
            estimator="sklearn.ensemble.RandomForestClassifier",
            params={"n_estimators": 5},
        ),
    )
    pipeline = load_pipeline(version)
    x, y, _ = cancer_data()
    assert pipeline.predict_proba(x[:3]).shape == (3, 2)
    assert np.mean(pipeline.predict(x) == y) > 0.9


def _reversed_order_version(tmp_path: Path, layout: Any, *, on_frame: bool = False) -> Path:
    x, y, names = cancer_data()
    names, x = names[:3], x[:, :3]
    columns: list[Any] = list(reversed(names)) if on_frame else [0, 1, 2]
    pipeline = Pipeline(
        [
            ("pre", ColumnTransformer([("n", SimpleImputer(), columns)])),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    )
    if on_frame:
        import pandas as pd

        pipeline.fit(pd.DataFrame(x[:, ::-1], columns=list(reversed(names))), y)
    else:
        pipeline.fit(x[:, ::-1], y)
    features = [
        FeatureSchema(name=n, kind="numeric", dtype="float64", nullable=False) for n in names
    ]
    metadata = base_metadata("rev", 1, "classification", features)
    metadata["target"] = {"name": "target", "classes": [0, 1]}
    metadata["input"] = layout
    target = tmp_path / "rev" / "v1"
    write_version(target, pipeline, metadata)
    return target


def test_an_input_order_other_than_the_schema_is_honoured(tmp_path: Path) -> None:
    x, _, names = cancer_data()
    order = list(reversed(names[:3]))
    version = _reversed_order_version(
        tmp_path, {"layout": "array", "order": order, "dtype": "float64"}
    )
    model = load_model(version, None)
    batch = decode_v2_inputs(
        [{"name": "x", "shape": [4, 3], "datatype": "FP64", "data": x[:4, :3].ravel().tolist()}],
        Schema(model.features, 1000),
    )
    expected = load_pipeline(version).predict_proba(x[:4, :3][:, ::-1])
    assert np.array_equal(model.predict(batch).proba, expected)


@pytest.mark.parametrize(
    ("layout", "on_frame", "message"),
    [
        ({"layout": "parquet"}, False, "input layout 'parquet' is unknown"),
        ({"layout": "array", "order": ["a", "b", "c"]}, False, "does not list exactly"),
        (None, True, "fitted on named columns"),
    ],
)
def test_layouts_the_server_cannot_honour_refuse_to_load(
    tmp_path: Path, layout: Any, on_frame: bool, message: str
) -> None:
    _, _, names = cancer_data()
    if layout is None:
        layout = {"layout": "array", "order": list(reversed(names[:3])), "dtype": "float64"}
    version = _reversed_order_version(tmp_path, layout, on_frame=on_frame)
    with pytest.raises(ArtifactError, match=message):
        load_model(version, None)
