"""``mlkube train`` end to end on real data: bundled data sets and a synthetic CSV.

Covers classification and regression runs through the real CLI, the artifact reloading
through the safe loader and predicting exactly what was measured before saving, the
sha256 in the summary and metadata matching the file, the metadata's profile, schema
and lineage, k-fold, slices (including one below its minimum, which is recorded, not
fatal), version numbering, --model-json with --namespace, and Parquet / JSON lines input.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from train_support import (
    churn_frame,
    manifest,
    run_cli,
    run_process,
    train_in,
    train_manifest_process,
    write_manifest,
)

from mlkube.runtime.artifact import load_pipeline, read_metadata, write_version
from mlkube.runtime.train.pipeline import (
    build_pipeline,
    infer_schema,
    model_inputs,
    resolve_estimator,
)
from mlkube.runtime.train.validate import holdout_split


def test_classification_on_breast_cancer_through_a_real_process(tmp_path: Path) -> None:
    document = manifest(
        "cancer",
        estimator="sklearn.ensemble.RandomForestClassifier",
        params={"n_estimators": 25, "max_depth": 6},
        uri="sklearn://breast_cancer",
        validation={
            "metric": "roc_auc",
            "folds": 3,
            "randomSeed": 3,
            "slices": [
                {"name": "large", "query": "mean_radius > 15", "minScore": 0.5},
                {"name": "impossible", "query": "mean_radius <= 15", "minScore": 1.01},
            ],
        },
    )
    log = tmp_path / "termination-log"
    result = train_manifest_process(
        tmp_path,
        document,
        log,
        "--trigger",
        "initial",
        "--training-job",
        "cancer-v1",
    )
    assert result.code == 0, result.stderr
    summary = result.summary
    assert log.read_bytes().decode() == result.stdout.strip()
    assert len(log.read_bytes()) <= 4096
    assert summary["version"] == 1
    assert summary["metric"] == "roc_auc" and summary["higherIsBetter"] is True
    assert 0.9 < summary["score"] <= 1.0
    assert set(summary["metrics"]) >= {"roc_auc", "accuracy", "f1_macro", "log_loss"}
    assert summary["rows"] == {"train": 455, "test": 114}
    assert summary["crossValidation"]["folds"] == 3
    slices = {s["name"]: s for s in summary["slices"]}
    assert slices["large"]["passed"] is True and slices["large"]["rows"] > 0
    assert slices["impossible"]["passed"] is False
    assert slices["large"]["rows"] + slices["impossible"]["rows"] == 114
    version_dir = tmp_path / "store" / "default" / "cancer" / "v1"
    assert summary["artifact"]["uri"] == str(version_dir)
    file_hash = hashlib.sha256((version_dir / "model.skops").read_bytes()).hexdigest()
    assert summary["artifact"]["sha256"] == file_hash
    metadata = read_metadata(version_dir)
    assert metadata["artifact"]["sha256"] == file_hash
    assert metadata["lineage"] == {"trigger": "initial", "reason": "", "trainingJob": "cancer-v1"}
    assert metadata["estimator"]["params"]["random_state"] == 3
    assert len(metadata["crossValidation"]["scores"]) == 3
    assert "progress" not in result.stdout and "cross-validation" in result.stderr


def test_artifact_reloads_and_predicts_what_was_measured(tmp_path: Path) -> None:
    """Recomputes the holdout from the recorded seed: the reloaded model's predictions
    give exactly the recorded metrics, so the artifact is the model that was scored."""
    document = manifest(
        "wine",
        uri="sklearn://wine",
        params={"max_iter": 2000},
        validation={"metric": "accuracy", "randomSeed": 5},
    )
    store = tmp_path / "store"
    with pytest.MonkeyPatch.context():
        result = run_process(
            "-f",
            write_manifest(tmp_path, document),
            "--store",
            store,
            "--termination-log",
            tmp_path / "log",
        )
    assert result.code == 0, result.stderr
    version_dir = store / "default" / "wine" / "v1"
    metadata = read_metadata(version_dir)
    model = load_pipeline(version_dir)
    from mlkube.runtime.train.data import _load_sklearn

    frame = _load_sklearn("sklearn://wine").frame
    y = frame["target"].to_numpy()
    _, test, stratified = holdout_split(y, "classification", 0.2, 5)
    assert stratified
    assert metadata["input"] == {
        "layout": "array",
        "order": [f["name"] for f in metadata["features"]],
        "dtype": "float64",
    }
    inputs = model_inputs(frame, metadata["features"])[test]
    assert inputs.dtype == np.float64
    predicted = model.predict(inputs)
    assert np.mean(predicted == y[test]) == pytest.approx(metadata["metrics"]["accuracy"], abs=1e-6)
    assert metadata["target"]["classes"] == [0, 1, 2]
    profile = metadata["profile"]
    assert set(profile["features"]) == {f["name"] for f in metadata["features"]}
    assert profile["features"]["alcohol"]["kind"] == "numeric"
    assert profile["features"]["alcohol"]["binCounts"]


def test_saved_pipeline_predicts_identically_after_reload(tmp_path: Path) -> None:
    frame = churn_frame(300)
    features = ["age", "income", "region", "plan"]
    schema = infer_schema(frame, features)
    estimator = resolve_estimator(
        "sklearn.ensemble.HistGradientBoostingClassifier",
        {"max_iter": 30},
        "classification",
        ("sklearn.",),
        0,
    )
    model = build_pipeline(schema, estimator)
    inputs = model_inputs(frame, schema)
    model.fit(inputs, frame["churned"].to_numpy())
    write_version(tmp_path / "v1", model, {"name": "churn", "version": 1})
    loaded = load_pipeline(tmp_path / "v1")
    assert inputs.dtype == object
    unseen = model_inputs(frame.head(20).assign(region="atlantis"), schema)
    for rows in (inputs, unseen):
        assert (loaded.predict(rows) == model.predict(rows)).all()
        assert np.array_equal(loaded.predict_proba(rows), model.predict_proba(rows))


def test_regression_on_diabetes_with_rmse_and_kfold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = manifest(
        "diabetes",
        task="regression",
        estimator="sklearn.linear_model.Ridge",
        params={"alpha": 0.5},
        uri="sklearn://diabetes",
        validation={
            "metric": "rmse",
            "folds": 4,
            "slices": [{"name": "older", "query": "age > 0", "minScore": 70}],
        },
    )
    result = train_in(capsys, tmp_path, document)
    assert result.code == 0, result.stderr
    summary = result.summary
    assert summary["metric"] == "rmse" and summary["higherIsBetter"] is False
    assert 40 < summary["score"] < 70
    assert set(summary["metrics"]) == {"rmse", "r2", "mae"}
    assert summary["slices"][0]["passed"] is (summary["slices"][0]["score"] <= 70)
    metadata = read_metadata(tmp_path / "store" / "default" / "diabetes" / "v1")
    assert metadata["task"] == "regression"
    assert "classes" not in metadata["target"]
    cross = metadata["crossValidation"]
    assert cross["folds"] == 4 and cross["stratified"] is False
    assert cross["mean"] == pytest.approx(np.mean(cross["scores"]), abs=1e-5)
    assert load_pipeline(tmp_path / "store" / "default" / "diabetes" / "v1").predict(
        model_inputs(
            pd.DataFrame([{f["name"]: 0.01 for f in metadata["features"]}]), metadata["features"]
        )
    ).shape == (1,)


def test_csv_with_categories_missing_values_and_a_compound_slice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = churn_frame(500)
    frame.loc[::50, "income"] = np.nan  # 2 % missing, under the 5 % default
    frame.to_csv(tmp_path / "churn.csv", index=False)
    document = manifest(
        uri=str(tmp_path / "churn.csv"),
        target="churned",
        validation={
            "metric": "f1",
            "slices": [
                {"name": "north-older", "query": 'age > 40 and region == "north"'},
                {"name": "not-basic", "query": "not (plan in ['basic']) or income is null"},
            ],
        },
    )
    result = train_in(capsys, tmp_path, document)
    assert result.code == 0, result.stderr
    version_dir = tmp_path / "store" / "default" / "churn" / "v1"
    metadata = read_metadata(version_dir)
    schema = {f["name"]: f for f in metadata["features"]}
    assert schema["region"]["kind"] == "categorical"
    assert schema["region"]["categories"] == ["east", "north", "south", "west"]
    assert schema["age"] == {"name": "age", "kind": "numeric", "dtype": "int64", "nullable": False}
    assert schema["income"]["nullable"] is True
    assert metadata["target"]["classes"] == ["no", "yes"]
    assert metadata["profile"]["features"]["region"]["kind"] == "categorical"
    assert (
        metadata["data"]["sha256"]
        == hashlib.sha256((tmp_path / "churn.csv").read_bytes()).hexdigest()
    )
    test = frame.iloc[holdout_split(frame["churned"].to_numpy(), "classification", 0.2, 0)[1]]
    expected_rows = int(((test["age"] > 40) & (test["region"] == "north")).sum())
    assert result.summary["slices"][0]["rows"] == expected_rows
    assert all(s["passed"] for s in result.summary["slices"])


def test_versions_increment_and_model_json_overrides_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    document = manifest("iris", validation={"metric": "accuracy"})
    first = run_cli(
        capsys,
        "--model-json",
        json.dumps(document),
        "--store",
        store,
        "--namespace",
        "team-a",
        "--termination-log",
        tmp_path / "log",
        "--store-uri",
        "pvc://models/root",
    )
    second = run_cli(
        capsys,
        "--model-json",
        json.dumps(document),
        "--store",
        store,
        "--namespace",
        "team-a",
        "--termination-log",
        tmp_path / "log",
        "--trigger",
        "drift",
        "--reason",
        "psi 0.4 on petal_width_cm",
    )
    assert (first.code, second.code) == (0, 0), first.stderr + second.stderr
    assert first.summary["artifact"]["uri"] == "pvc://models/root/team-a/iris/v1"
    assert second.summary["version"] == 2
    assert sorted(p.name for p in (store / "team-a" / "iris").iterdir()) == ["v1", "v2"]
    lineage = read_metadata(store / "team-a" / "iris" / "v2")["lineage"]
    assert lineage["trigger"] == "drift" and lineage["reason"].startswith("psi 0.4")
    explicit = run_cli(
        capsys,
        "--model-json",
        json.dumps(document),
        "--store",
        store,
        "--namespace",
        "team-a",
        "--version",
        "7",
        "--termination-log",
        tmp_path / "log",
    )
    assert explicit.code == 0 and explicit.summary["version"] == 7


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_parquet_and_json_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    frame = churn_frame(200)
    path = tmp_path / f"churn.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    document = manifest(
        uri=f"file://{path}",
        target="churned",
        features=["age", "region"],
        validation={"metric": "accuracy"},
    )
    result = train_in(capsys, tmp_path, document)
    assert result.code == 0, result.stderr
    metadata = read_metadata(tmp_path / "store" / "default" / "churn" / "v1")
    assert [f["name"] for f in metadata["features"]] == ["age", "region"]
    assert metadata["data"]["format"] == fmt


def test_pvc_uri_reads_under_the_configured_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pvc" / "datasets" / "churn").mkdir(parents=True)
    churn_frame(200).to_csv(tmp_path / "pvc" / "datasets" / "churn" / "data.csv", index=False)
    monkeypatch.setenv("MLKUBE_PVC_ROOT", str(tmp_path / "pvc"))
    document = manifest(uri="pvc://datasets/churn/data.csv", target="churned")
    result = train_in(capsys, tmp_path, document)
    assert result.code == 0, result.stderr
    assert read_metadata(tmp_path / "store" / "default" / "churn" / "v1")["data"]["uri"] == (
        "pvc://datasets/churn/data.csv"
    )


@pytest.mark.parametrize("example", ["iris.yaml", "diabetes.yaml", "gpu.yaml"])
def test_the_official_examples_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], example: str
) -> None:
    """The samples users copy must train as they are (multi-document files included)."""
    path = Path(__file__).resolve().parents[2] / "manifests" / "examples" / example
    result = run_cli(
        capsys, "-f", path, "--store", tmp_path / "store", "--termination-log", tmp_path / "log"
    )
    assert result.code == 0, result.stderr
    assert result.summary["version"] == 1
    assert result.summary["metric"] in ("f1_macro", "r2", "accuracy")
