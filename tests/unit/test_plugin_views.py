"""The plugin's pure views: tables, rollback choice, promotable versions, TrainingJob body."""

from __future__ import annotations

from typing import Any

import pytest

from mlkube.plugin import views


def model(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "churn", "namespace": "ml", "uid": "u-1"}, "status": status}


def test_table_pads_columns_and_marks_missing_values() -> None:
    text = views.table(["A", "LONGER"], [["x", None], ["yyyy", 0.123456]])
    assert text.splitlines() == ["A      LONGER", "x      <none>", "yyyy   0.1235"]


def test_rollback_goes_to_the_version_before_the_current_one_and_back() -> None:
    promotions = [{"version": 1}, {"version": 2, "previous": 1}, {"version": 3, "previous": 2}]
    assert views.previous_serving_version(model(servingVersion=3, promotions=promotions)) == 2
    after_rollback = [*promotions, {"version": 2, "previous": 3}]
    assert views.previous_serving_version(model(servingVersion=2, promotions=after_rollback)) == 3
    with pytest.raises(views.ViewError, match="serves no version"):
        views.previous_serving_version(model())
    with pytest.raises(views.ViewError, match="no previous serving version"):
        views.previous_serving_version(model(servingVersion=1, promotions=promotions[:1]))


def test_only_versions_with_an_artifact_are_promotable() -> None:
    versions = [
        {"version": 1, "decision": "Rejected", "sha256": "ab"},
        {"version": 2, "decision": "Failed"},
    ]
    assert views.check_promotable(model(versions=versions), 1)["version"] == 1
    with pytest.raises(views.ViewError, match="no trained artifact"):
        views.check_promotable(model(versions=versions), 2)
    with pytest.raises(views.ViewError, match=r"known: \[1, 2\]"):
        views.check_promotable(model(versions=versions), 5)


def test_status_picks_the_latest_checked_monitor_per_model() -> None:
    def monitor(name: str, when: str, verdict: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": "ml"},
            "spec": {"modelRef": {"name": "churn"}},
            "status": {"lastCheckTime": when, "verdict": verdict, "driftShare": 0.5},
        }

    older = monitor("a", "2026-01-01T00:00:00Z", "no-drift")
    newer = monitor("b", "2026-01-02T00:00:00Z", "drift")
    text = views.status_table([model(servingVersion=1)], [newer, older], all_namespaces=False)
    assert "drift (50%) at 2026-01-02T00:00:00Z" in text.splitlines()[1]


def test_training_job_is_manual_and_owned_by_its_model() -> None:
    body = views.training_job_body(model(), "because")
    assert body["spec"] == {"modelRef": {"name": "churn"}, "trigger": "manual", "reason": "because"}
    assert body["metadata"]["generateName"] == "churn-manual-"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert views.serving_pin(3) == {"spec": {"serving": {"version": 3}}}


def lineage_model() -> dict[str, Any]:
    def entry(version: int, data: str, params: str, sklearn: str) -> dict[str, Any]:
        return {
            "version": version,
            "trigger": "spec-change" if version == 2 else "initial",
            "generation": version,
            "decision": "Promoted",
            "score": 0.9,
            "lineage": {
                "data": {"uri": "https://data.example/iris.csv", "sha256": data * 64},
                "paramsDigest": params * 64,
                "libraries": {"scikit-learn": sklearn, "mlkube": "0.1.0"},
            },
        }

    return {
        "metadata": {"name": "iris"},
        "status": {
            "servingVersion": 2,
            "versions": [entry(1, "a", "b", "1.7.0"), entry(2, "a", "c", "1.7.1")],
        },
    }


def _search_run(name: str) -> dict[str, Any]:
    rows = [
        {"trial": 0, "estimator": "SVC", "params": "C=1", "status": "Completed", "score": 0.8,
         "fitSeconds": 1.0, "pipeline": False},
        {"trial": 1, "estimator": "SVC", "params": "C=10", "status": "Completed", "score": 0.9,
         "fitSeconds": 1.2, "pipeline": True},
        {"trial": 2, "estimator": "LogisticRegression", "params": "penalty=l1",
         "status": "Failed", "fitSeconds": 0.1, "error": "l1 needs liblinear or saga"},
    ]  # fmt: skip
    return {
        "metadata": {"name": name},
        "status": {
            "trials": {"total": 3, "succeeded": 2, "failed": 1},
            "bestTrial": 1,
            "bestScore": 0.9,
            "trialResults": rows,
        },
    }


def test_versions_show_the_data_and_params_digests() -> None:
    out = views.versions_table(lineage_model())
    row = next(line for line in out.splitlines() if line.startswith("2*"))
    assert "a" * 12 in row and "c" * 12 in row and "spec-change" in row


def test_diff_lists_only_what_differs_between_two_versions() -> None:
    out = views.version_diff(lineage_model(), 1, 2)
    fields = [line.split()[0] for line in out.splitlines()[1:]]
    assert fields == [
        "generation",
        "lineage.libraries.scikit-learn",
        "lineage.paramsDigest",
        "trigger",
    ]
    assert "1.7.0" in out and "1.7.1" in out
    with pytest.raises(views.ViewError):
        views.version_diff(lineage_model(), 1, 9)


def test_trials_table_marks_the_best_and_counts_the_outcomes() -> None:
    lines = views.trials_table(_search_run("churn-v2")).splitlines()
    assert lines[0].split() == [
        "TRIAL",
        "ESTIMATOR",
        "PARAMS",
        "STATUS",
        "SCORE",
        "SECONDS",
        "PIPELINE",
        "ERROR",
    ]
    assert lines[1].split()[:7] == ["0", "SVC", "C=1", "Completed", "0.8", "1", "skipped"]
    assert lines[2].split()[:7] == ["1*", "SVC", "C=10", "Completed", "0.9", "1.2", "kept"]
    assert "l1 needs liblinear" in lines[3]
    assert lines[-1] == "2 succeeded, 1 failed, 3 in all (* best)"
    with pytest.raises(views.ViewError, match="not a search"):
        views.trials_table({"metadata": {"name": "churn-v1"}, "status": {"phase": "Succeeded"}})


def test_versions_name_the_winning_trial_only_when_a_version_came_from_a_search() -> None:
    versions = [
        {"version": 1, "trainingJob": "churn-v1", "score": 0.8},
        {"version": 2, "trainingJob": "churn-v2", "score": 0.9},
    ]
    winners = views.winning_trials([_search_run("churn-v2"), {"metadata": {"name": "churn-v1"}}])
    assert winners == {"churn-v2": "trial 1 of 3 (SVC C=10)"}
    text = views.versions_table(model(versions=versions), winners)
    assert "SEARCH" in text.splitlines()[0]
    assert "trial 1 of 3 (SVC C=10)" in text.splitlines()[2]
    assert "SEARCH" not in views.versions_table(model(versions=versions[:1]), winners)
