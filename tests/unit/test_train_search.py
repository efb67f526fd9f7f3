"""A model search on a laptop (``mlkube train -f --store``, in process and with
``--parallel``): trials from the spec, the winner against scikit-learn's own
``GridSearchCV`` on the same data, folds and grid, a failing trial recorded while the
search goes on, the whole table in ``metadata.json``, and the same version either way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from train_support import manifest, run_cli, write_manifest

from mlkube.runtime.train.search_spec import SearchSpec, expand_trials, parse_search

LOGISTIC = "sklearn.linear_model.LogisticRegression"
TREE = "sklearn.tree.DecisionTreeClassifier"
KNN = "sklearn.neighbors.KNeighborsClassifier"
GRID = {"n_neighbors": [1, 3, 5, 9], "weights": ["uniform", "distance"]}
TREE_GRID = {"max_depth": [1, 2, 4], "min_samples_leaf": [1, 5]}


def _search_manifest(search: dict[str, Any], **validation: Any) -> dict[str, Any]:
    document = manifest(
        "wine", uri="sklearn://wine", validation={"metric": "f1_macro", **validation}
    )
    training = document["spec"]["training"]
    del training["estimator"]
    training["search"] = search
    return document


def _search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, Any], *extra: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    path = write_manifest(tmp_path, document)
    store = tmp_path / "store"
    result = run_cli(
        capsys, "-f", path, "--store", store, "--termination-log", tmp_path / "log", *extra
    )
    assert result.code == 0, result.stderr
    metadata = json.loads((store / "default/wine/v1/metadata.json").read_text())
    return result.summary, metadata


def test_the_winner_is_what_grid_search_cv_picks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    search = {
        "candidates": [
            {"class": KNN, "grid": GRID},
            {"class": TREE, "grid": TREE_GRID},
        ]
    }
    summary, metadata = _search(tmp_path, capsys, _search_manifest(search, folds=5, randomSeed=3))

    data = load_wine()
    positions = np.arange(len(data.target))
    train, _ = train_test_split(
        positions, test_size=0.2, random_state=3, shuffle=True, stratify=data.target
    )
    train = np.sort(train)
    x, y = data.data[train], data.target[train]
    # The trainer median-imputes before the estimator; wine has nothing to impute, so a
    # scaler-free pipeline of the estimator alone sees the same numbers.
    reference = GridSearchCV(
        Pipeline([("scale", StandardScaler(with_mean=False, with_std=False)), ("model", None)]),
        [
            {"model": [_knn()], **{f"model__{k}": v for k, v in GRID.items()}},
            {"model": [_tree()], **{f"model__{k}": v for k, v in TREE_GRID.items()}},
        ],
        scoring="f1_macro",
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=3),
    ).fit(x, y)

    table = metadata["search"]["trials"]
    best = table[metadata["search"]["bestTrial"]]
    expected = {k.removeprefix("model__"): v for k, v in reference.best_params_.items()}
    expected_class = type(expected.pop("model")).__name__
    assert best["estimator"].rsplit(".", 1)[-1] == expected_class
    assert {k: best["params"][k] for k in expected} == expected
    assert best["score"] == pytest.approx(reference.best_score_, abs=1e-9)
    means = reference.cv_results_["mean_test_score"]
    assert [row["score"] for row in table] == pytest.approx(list(means), abs=1e-9)
    assert summary["search"]["bestTrial"] == best["trial"]
    assert metadata["estimator"]["class"] == best["estimator"]
    assert metadata["crossValidation"]["mean"] == round(best["score"], 6)


def test_folds_with_missing_values_are_scored_through_the_imputer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Folds leave the median imputer out only where it changes nothing; with missing
    values they score the whole pipeline, as GridSearchCV does on the same folds."""
    data = load_wine(as_frame=True)
    frame = data.frame.copy()
    holes = np.random.default_rng(0).random((len(frame), 2)) < 0.04
    for position, column in enumerate(["alcohol", "proline"]):
        frame.loc[holes[:, position], column] = np.nan
    frame.to_parquet(tmp_path / "wine.parquet")
    search = {"candidates": [{"class": KNN, "grid": {"n_neighbors": [3, 7]}},
                             {"class": TREE, "grid": {"max_depth": [2, 4]}}]}  # fmt: skip
    document = _search_manifest(search, folds=4, randomSeed=2)
    document["spec"]["training"]["data"]["uri"] = str(tmp_path / "wine.parquet")
    _, metadata = _search(tmp_path, capsys, document)

    x, y = frame.drop(columns="target").to_numpy(), frame["target"].to_numpy()
    train, _ = train_test_split(
        np.arange(len(y)), test_size=0.2, random_state=2, shuffle=True, stratify=y
    )
    train = np.sort(train)
    reference = GridSearchCV(
        Pipeline([("impute", SimpleImputer(strategy="median")), ("model", None)]),
        [{"model": [_knn()], "model__n_neighbors": [3, 7]},
         {"model": [DecisionTreeClassifier(random_state=2)], "model__max_depth": [2, 4]}],
        scoring="f1_macro",
        cv=StratifiedKFold(n_splits=4, shuffle=True, random_state=2),
    ).fit(x[train], y[train])  # fmt: skip
    table = metadata["search"]["trials"]
    assert [row["status"] for row in table] == ["Completed"] * 4
    means = list(reference.cv_results_["mean_test_score"])
    assert [row["score"] for row in table] == pytest.approx(means, abs=1e-9)


def _knn() -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier()


def _tree() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(random_state=3)


def test_a_failing_trial_is_recorded_and_the_best_of_the_rest_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    search = {
        "candidates": [
            # l1 with lbfgs cannot work: scikit-learn refuses it when fitting.
            {"class": LOGISTIC, "params": {"penalty": "l1", "solver": "lbfgs"}},
            {"class": KNN, "grid": {"n_neighbors": [1, 5, 9, 15]}},
        ]
    }
    summary, metadata = _search(tmp_path, capsys, _search_manifest(search))
    table = metadata["search"]["trials"]
    assert len(table) == 5
    assert table[0]["status"] == "Failed"
    assert "l1" in table[0]["error"]
    assert table[0]["score"] is None
    assert all(row["status"] == "Completed" for row in table[1:])
    completed = [row["score"] for row in table[1:]]
    assert metadata["search"]["bestTrial"] == 1 + int(np.argmax(completed))
    assert summary["search"]["trials"] == {"total": 5, "succeeded": 4, "failed": 1}
    assert len(table[1]["foldScores"]) == 5


def test_parallel_processes_give_the_same_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    search = {
        "method": "random",
        "trials": 4,
        "seed": 11,
        "candidates": [
            {
                "class": TREE,
                "distributions": {"max_depth": {"kind": "randint", "low": 1, "high": 8}},
            },
            {
                "class": KNN,
                "distributions": {"n_neighbors": {"kind": "randint", "low": 1, "high": 20}},
            },
        ],
    }
    document = _search_manifest(search, folds=3)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    serial, serial_meta = _search(tmp_path / "one", capsys, document)
    parallel, parallel_meta = _search(tmp_path / "two", capsys, document, "--parallel", "2")
    # which trials kept a pipeline depends on the order they ended in, not the result
    strip = ("fitSeconds", "sha256", "pipeline", "beatenBy")
    rows = [
        [{k: v for k, v in r.items() if k not in strip} for r in m["search"]["trials"]]
        for m in (serial_meta, parallel_meta)
    ]
    assert rows[0] == rows[1]
    assert serial["score"] == parallel["score"]
    assert serial["search"] == parallel["search"]


def test_trials_are_the_same_from_the_same_spec_and_seed() -> None:
    raw = {
        "method": "random",
        "trials": 6,
        "seed": 5,
        "candidates": [
            {
                "class": TREE,
                "grid": {"criterion": ["gini", "entropy"]},
                "distributions": {"max_depth": {"kind": "randint", "low": 1, "high": 20}},
            },
            {"class": LOGISTIC, "distributions": {"C": {"kind": "uniform", "low": 0.1, "high": 2}}},
        ],
    }
    first = _parsed(raw)
    assert expand_trials(first) == expand_trials(_parsed(raw))
    assert [plan.index for plan in expand_trials(first)] == list(range(6))
    assert [plan.class_path for plan in expand_trials(first)] == [TREE, LOGISTIC] * 3
    assert expand_trials(first) != expand_trials(_parsed({**raw, "seed": 6}))


def _parsed(raw: dict[str, Any]) -> SearchSpec:
    parsed = parse_search({"search": raw}, "f1", ("f1", "accuracy"), 0)
    assert parsed is not None
    return parsed


def test_a_rerun_keeps_ended_trials_and_redoes_stale_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As after a killed pod: a trial whose pipeline was written but whose result does
    not say so yet keeps that pipeline; a result of another trial is not trusted."""
    search = {"candidates": [{"class": KNN, "grid": {"n_neighbors": [1, 5, 9, 15]}}]}
    document = _search_manifest(search)
    _, first = _search(tmp_path, capsys, document)
    store = tmp_path / "store" / "default" / "wine"
    root = store / "search-v1"
    # trial 0 ended first (in process, in order), so it kept its pipeline
    interrupted = json.loads((root / "trial-0000.json").read_text())
    kept_sha = interrupted.pop("sha256")
    assert interrupted.pop("pipeline") is True
    (root / "trial-0000.json").write_text(json.dumps(interrupted))
    stale = json.loads((root / "trial-0002.json").read_text())
    (root / "trial-0002.json").write_text(json.dumps({**stale, "params": {"n_neighbors": 2}}))
    shutil.rmtree(store / "v1")
    path = write_manifest(tmp_path, document)
    again = run_cli(capsys, "-f", path, "--store", tmp_path / "store", "--version", "1")
    assert again.code == 0, again.stderr
    second = json.loads((store / "v1" / "metadata.json").read_text())
    rows = second["search"]["trials"]
    assert rows[0]["sha256"] == kept_sha and rows[0]["pipeline"] is True
    assert rows[2]["params"] == {"n_neighbors": 9} and rows[2]["status"] == "Completed"
    assert [r["score"] for r in rows] == [r["score"] for r in first["search"]["trials"]]


# Trial 0 (a stump) scores below the two others, whose trees grow whole either way: the
# same tree, the same mean, so trial 1 wins on the lower index, as GridSearchCV ranks.
TIED = {"candidates": [{"class": TREE, "grid": {"max_depth": [1, 50, 100]}}]}


def _trials_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], order: list[int]
) -> dict[int, dict[str, Any]]:
    """Runs the trials one by one in ``order``, as pods that end in that order would."""
    path = write_manifest(tmp_path, _search_manifest(TIED, folds=3))
    rows = {}
    for index in order:
        result = run_cli(
            capsys, "-f", path, "--store", tmp_path / "store", "--version", "1",
            "--trial", str(index), "--termination-log", tmp_path / "log",
        )  # fmt: skip
        assert result.code == 0, result.stderr
        rows[index] = result.summary
    return rows


def _select(tmp_path: Path, capsys: pytest.CaptureFixture[str], store: Path) -> Any:
    path = write_manifest(tmp_path, _search_manifest(TIED, folds=3))
    result = run_cli(
        capsys, "-f", path, "--store", store, "--version", "1", "--select",
        "--termination-log", tmp_path / "log",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    metadata = json.loads((store / "default/wine/v1/metadata.json").read_text())
    return result, metadata


@pytest.mark.parametrize(
    ("order", "kept", "beaten_by"),
    [
        # trial 2 is first and keeps one; 0 ranks below it; 1 ties 2 at a lower index
        ([2, 0, 1], {1, 2}, {0: 2}),
        # the winner first: the tie at a higher index and the stump cannot win
        ([1, 2, 0], {1}, {0: 1, 2: 1}),
    ],
)
def test_only_a_trial_that_can_still_win_keeps_its_pipeline(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    order: list[int],
    kept: set[int],
    beaten_by: dict[int, int],
) -> None:
    rows = _trials_in_order(tmp_path, capsys, order)
    assert rows[1]["score"] == rows[2]["score"] > rows[0]["score"]
    root = tmp_path / "store" / "default" / "wine" / "search-v1"
    assert {k for k, row in rows.items() if row["pipeline"]} == kept
    assert {k: row["beatenBy"] for k, row in rows.items() if not row["pipeline"]} == beaten_by
    assert all("sha256" not in rows[k] for k in beaten_by)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        f"trial-{k:04d}" for k in sorted(kept)
    ]
    _, metadata = _select(tmp_path, capsys, tmp_path / "store")
    assert metadata["search"]["bestTrial"] == 1
    assert metadata["search"]["refit"] is False
    assert [r["status"] for r in metadata["search"]["trials"]] == ["Completed"] * 3


def test_the_select_step_fits_the_winner_that_kept_no_pipeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The winner's pod died in its final fit after the others had skipped theirs: its
    result is recorded, its pipeline is not, and the select step fits the same one."""
    _trials_in_order(tmp_path, capsys, [1, 2, 0])
    shutil.copytree(tmp_path / "store", tmp_path / "killed")
    root = tmp_path / "killed" / "default" / "wine" / "search-v1"
    killed = json.loads((root / "trial-0001.json").read_text())
    del killed["sha256"], killed["pipeline"]
    (root / "trial-0001.json").write_text(json.dumps(killed))
    shutil.rmtree(root / "trial-0001")

    _, kept = _select(tmp_path, capsys, tmp_path / "store")
    result, refit = _select(tmp_path, capsys, tmp_path / "killed")
    assert "trial 1 kept no pipeline: fitting it on the training rows" in result.stderr
    assert (refit["search"]["bestTrial"], refit["search"]["refit"]) == (1, True)
    assert refit["search"]["trials"][1]["status"] == "Completed"
    assert refit["metrics"] == kept["metrics"]
    assert refit["estimator"] == kept["estimator"]
