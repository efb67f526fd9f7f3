"""Compiled inference with categorical features (issue 16): every trainer task agrees.

Real ``mlkube train`` runs on a churn-like CSV with numeric and categorical features and
missing values in both, for a LogisticRegression and a RandomForest classifier and a
RandomForest regressor; real ``mlkube serve`` processes on loopback, engine ``auto``
(onnxruntime) beside engine ``sklearn``. What must hold:

- the trainer converts the pipeline with one ONNX input per column, verifies it on the
  holdout plus one probe row per category and per missing category, and records the
  columns (kind, categories, the text a missing category becomes);
- both engines answer every row of the table, and rows with missing values, with the
  same labels and probabilities / predictions within the tolerance;
- a category the ONNX model was not verified on goes to scikit-learn: the answer is
  scikit-learn's to the last bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from serve_support import Server
from test_serve_compiled import assert_v1_agree, train
from train_support import churn_frame, manifest

from mlkube.runtime.artifact import read_metadata
from mlkube.runtime.compiled import ONNX_FILE

CASES = {
    "churn-lr": ("classification", "sklearn.linear_model.LogisticRegression", "churned"),
    "churn-rf": ("classification", "sklearn.ensemble.RandomForestClassifier", "churned"),
    "churn-income": ("regression", "sklearn.ensemble.RandomForestRegressor", "income"),
}
PARAMS = {"sklearn.linear_model.LogisticRegression": {"max_iter": 5000}}


def table() -> pd.DataFrame:
    frame = churn_frame(400)
    frame["age"] = frame["age"].astype("float64")
    frame.loc[::23, "age"] = np.nan
    frame.loc[::29, "region"] = None
    return frame


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("categorical")
    table().to_csv(directory / "churn.csv", index=False)
    out = {}
    for name, (task, estimator, target) in CASES.items():
        document = manifest(
            name,
            task=task,
            estimator=estimator,
            params=PARAMS.get(estimator, {"n_estimators": 30}),
            uri=str(directory / "churn.csv"),
            target=target,
        )
        out[name] = train(directory, name, document)
    return out


def instances(name: str) -> list[dict[str, Any]]:
    target = CASES[name][2]
    frame = table().drop(columns=[target])
    rows: list[dict[str, Any]] = frame.astype(object).to_dict("records")
    for row in rows:  # JSON has null, not NaN
        for key, value in row.items():
            if isinstance(value, float) and np.isnan(value):
                row[key] = None
    return rows


@pytest.mark.parametrize("name", sorted(CASES))
def test_categorical_pipelines_compile_and_agree_with_sklearn(
    trained: dict[str, Path], name: str, tmp_path: Path
) -> None:
    model_dir = trained[name]
    record = read_metadata(model_dir)["compiled"]
    assert record["verified"] is True, record
    assert (model_dir / ONNX_FILE).exists()
    kinds = {c["kind"] for c in record["columns"]}
    assert kinds == {"numeric", "categorical"}
    region = next(c for c in record["columns"] if "north" in c.get("categories", []))
    assert region["missing"] == "__missing__"
    rows = instances(name)
    compiled = Server.start(tmp_path, ["--model-dir", str(model_dir)])
    plain = Server.start(tmp_path, ["--model-dir", str(model_dir), "--engine", "sklearn"])
    try:
        assert compiled.get(f"/v2/models/{name}").json()["parameters"]["engine"] == "onnx"
        got = compiled.post(f"/v1/models/{name}:predict", {"instances": rows})
        want = plain.post(f"/v1/models/{name}:predict", {"instances": rows})
        assert (got.status, want.status) == (200, 200), got.body + want.body
        assert_v1_agree(got.json(), want.json())
        # A region never seen in training: scikit-learn answers, to the last bit.
        unseen = [{**row, "region": "mars"} for row in rows[:20]]
        got = compiled.post(f"/v1/models/{name}:predict", {"instances": unseen})
        want = plain.post(f"/v1/models/{name}:predict", {"instances": unseen})
        assert (got.status, want.status) == (200, 200), got.body + want.body
        assert got.json() == want.json()
    finally:
        assert compiled.stop() == 0
        assert plain.stop() == 0
