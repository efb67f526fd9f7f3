"""The TrainingJob reconciler on a search, through the in-memory API: one Indexed Job
with the search's numbers, trial counts and the best so far from its pods, the select
Job once the trials end (made once, also across a restart), then the version."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kube_memory import MemoryKube, controller, sync
from test_reconcile_memory import NS, SETTINGS, model_body, model_pass, pod_of, run_pass, status

from mlkube.api import names
from mlkube.controller.builders import build_trainer_job

SEARCH = {
    "parallelism": 3,
    "candidates": [
        {"class": "sklearn.neighbors.KNeighborsClassifier", "grid": {"n_neighbors": [1, 3]}},
        {"class": "sklearn.tree.DecisionTreeClassifier", "grid": {"max_depth": [1, 2, 3, 4]}},
        {"class": "sklearn.svm.SVC", "grid": {"C": [0.1, 1], "kernel": ["rbf", "linear", "poly"]}},
    ],
}


def search_model() -> dict[str, Any]:
    body = model_body()
    del body["spec"]["training"]["estimator"]
    body["spec"]["training"]["search"] = SEARCH
    return body


def trial(index: int, score: float | None) -> str:
    result: dict[str, Any] = {
        "trial": index,
        "estimator": "sklearn.svm.SVC",
        "params": {"C": index},
        "status": "Completed" if score is not None else "Failed",
        "metric": "f1",
        "foldScores": [score] if score is not None else [],
        "score": score,
        "std": 0.0,
        "fitSeconds": 0.5,
    }
    if score is None:
        result["error"] = "impossible"
    return json.dumps(result)


def trial_pod(kube: MemoryKube, index: int, score: float | None) -> None:
    job = kube.find("Job", NS, "iris-v1-train")
    assert job is not None
    pod = pod_of(job, f"iris-v1-train-{index}", trial(index, score))
    pod["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
    kube.put(pod)


def end_job(kube: MemoryKube, name: str, **extra: Any) -> None:
    job = kube.find("Job", NS, name)
    assert job is not None
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}], **extra}
    kube.put(job)


def test_the_trials_job_is_indexed_with_the_search_numbers() -> None:
    model = search_model()
    run = {"kind": "TrainingJob", "metadata": {"name": "iris-v1", "namespace": NS, "uid": "u1"}}
    job = build_trainer_job(model, run, 1, SETTINGS)
    spec = job["spec"]
    assert job["metadata"]["name"] == "iris-v1-train"
    assert spec["completionMode"] == "Indexed"
    assert (spec["completions"], spec["parallelism"], spec["backoffLimitPerIndex"]) == (12, 3, 1)
    assert "backoffLimit" not in spec
    assert spec["podFailurePolicy"]["rules"][0]["action"] == "FailJob"
    args = spec["template"]["spec"]["containers"][0]["args"]
    assert args[-1] == "--trial" and args[args.index("--version") + 1] == "1"


@pytest.mark.asyncio
async def test_counts_best_so_far_then_one_select_job_across_a_restart() -> None:
    kube = MemoryKube()
    kube.put(search_model())
    ctl = controller(kube, SETTINGS)
    await model_pass(ctl)
    await run_pass(ctl, "iris-v1")
    for index, score in [(0, 0.7), (1, 0.9), (2, None), (3, 0.9)]:
        trial_pod(kube, index, score)
    sync(ctl)
    await run_pass(ctl, "iris-v1")
    running = status(kube, "TrainingJob", "iris-v1")
    assert running["trials"] == {"total": 12, "succeeded": 3, "failed": 1}
    assert (running["bestTrial"], running["bestScore"]) == (1, 0.9)  # a tie: the lower index
    assert [row["status"] for row in running["trialResults"]] == ["Completed"] * 2 + [
        "Failed",
        "Completed",
    ]
    assert kube.find("Job", NS, names.select_job_name("iris-v1")) is None

    end_job(kube, "iris-v1-train", failedIndexes="10-11")
    restarted = controller(kube, SETTINGS)
    await run_pass(restarted, "iris-v1")
    await run_pass(controller(kube, SETTINGS), "iris-v1")
    select = kube.find("Job", NS, "iris-v1-select")
    assert select is not None
    assert select["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "--select"
    creates = [name for verb, kind, name in kube.requests if verb == "create" and kind == "Job"]
    assert sorted(set(creates)) == ["iris-v1-select", "iris-v1-train"]
    assert status(kube, "TrainingJob", "iris-v1")["trials"]["failed"] == 3

    summary = {
        "version": 1, "metric": "f1", "higherIsBetter": True, "score": 0.88,
        "metrics": {"f1": 0.88}, "slices": [],
        "artifact": {"uri": f"pvc://store/{NS}/iris/v1", "sha256": "b" * 64},
        "search": {"trials": {"total": 12, "succeeded": 3, "failed": 3}, "bestTrial": 1,
                   "estimator": "sklearn.svm.SVC", "params": {"C": 1}},
    }  # fmt: skip
    kube.put(pod_of(select, "iris-v1-select-pod", json.dumps(summary)))
    end_job(kube, "iris-v1-select")
    sync(restarted)
    await run_pass(restarted, "iris-v1")
    done = status(kube, "TrainingJob", "iris-v1")
    assert done["phase"] == "Succeeded" and done["score"] == 0.88
    assert done["jobName"] == "iris-v1-select" and "(trial 1)" in done["message"]
    assert done["trials"] == {"total": 12, "succeeded": 3, "failed": 3}


@pytest.mark.parametrize(
    ("search", "fragment"),
    [
        ({"candidates": [{"class": "os.system"}]}, "outside the operator's allow-list"),
        (
            {"candidates": [{"class": "sklearn.svm.SVC", "grid": {"C": list(range(100)),
                                                                 "gamma": list(range(11))}}]},
            "more than the 1000 allowed",
        ),
        ({"trials": 5, "candidates": [{"class": "sklearn.svm.SVC"}]}, "the grid has 1 points"),
        (
            {"candidates": [{"class": "sklearn.ensemble.RandomForestClassifier",
                             "grid": {"n_jobs": [1, 4]}}]},
            "n_jobs=4 exceeds the trainer's CPU limit",
        ),
    ],
)  # fmt: skip
def test_a_search_that_cannot_run_is_an_invalid_spec(search: dict[str, Any], fragment: str) -> None:
    from mlkube.controller.spec import training_problem

    model = search_model()
    model["spec"]["training"]["search"] = search
    model["spec"]["training"]["resources"] = {"limits": {"cpu": "2"}}
    assert fragment in str(training_problem(model, None, SETTINGS))
    model["spec"]["training"]["search"] = SEARCH
    assert training_problem(model, None, SETTINGS) is None
