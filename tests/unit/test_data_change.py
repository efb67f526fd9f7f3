"""Retrain when the data changes: the check a firing runs, and what the operator does.

``mlkube train --check-data`` runs as a real process on a real CSV file: unchanged, it
says so; rewritten, it reports the new digest. The Model reconciler on the in-memory API
plays the schedule: a firing makes a check Job (not a run); an unchanged check starts no
run; a changed one starts exactly one, with trigger ``data-change``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kube_memory import MemoryKube, controller, sync
from test_reconcile_memory import NS, SETTINGS, model_body, model_pass, pod_of, run_pass, status
from train_support import churn_frame, manifest, train_manifest_process

from mlkube.api import names
from mlkube.api.conditions import now_iso
from mlkube.api.datacheck import parse_data_check
from mlkube.controller.children import Controller

DIGEST_V1 = "1" * 64
DIGEST_NEW = "2" * 64


def test_the_check_reads_the_file_and_says_whether_it_moved(tmp_path: Path) -> None:
    data = tmp_path / "churn.csv"
    churn_frame(seed=1).to_csv(data, index=False)
    document = manifest(uri=str(data), target="churned")
    log = tmp_path / "termination-log"
    first = train_manifest_process(tmp_path, document, log, "--check-data", "0" * 64)
    assert first.code == 0, first.stderr
    digest = json.loads(first.stdout)["dataSha256"]
    assert parse_data_check(log.read_text()) == {"dataSha256": digest, "changed": True}

    same = train_manifest_process(tmp_path, document, log, "--check-data", digest)
    assert json.loads(same.stdout) == {"dataSha256": digest, "changed": False}
    assert not (tmp_path / "store").exists()  # a check writes no version

    churn_frame(seed=2).to_csv(data, index=False)  # new data arrives, in place
    moved = train_manifest_process(tmp_path, document, log, "--check-data", digest)
    result = json.loads(moved.stdout)
    assert result["changed"] is True and result["dataSha256"] != digest


def test_a_missing_file_fails_the_check_as_bad_input(tmp_path: Path) -> None:
    document = manifest(uri=str(tmp_path / "gone.csv"), target="churned")
    result = train_manifest_process(tmp_path, document, tmp_path / "log", "--check-data", DIGEST_V1)
    assert result.code == 2 and "gone.csv" in result.stderr


def summary_with_data(version: int, data_sha256: str) -> str:
    return json.dumps(
        {
            "version": version,
            "metric": "accuracy",
            "higherIsBetter": True,
            "score": 0.9,
            "metrics": {"accuracy": 0.9},
            "slices": [],
            "artifact": {"uri": f"pvc://store/{NS}/iris/v{version}", "sha256": "a" * 64},
            "lineage": {"data": {"uri": "pvc://data/iris.csv", "sha256": data_sha256}},
        }
    )


def complete(kube: MemoryKube, job_name: str, message: str) -> None:
    job = kube.find("Job", NS, job_name)
    assert job is not None
    kube.put(pod_of(job, f"{job_name}-pod", message))
    job["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    kube.put(job)


def fire(kube: MemoryKube, ctl: Controller) -> None:
    """The schedule's next firing comes: the last one moves an hour back."""
    model = kube.find("Model", NS, "iris")
    assert model is not None
    model["status"]["lastScheduledTraining"] = "2020-01-01T00:00:00Z"
    kube.put(model)
    sync(ctl)


def runs(kube: MemoryKube) -> list[tuple[str, str]]:
    return [(t["metadata"]["name"], t["spec"]["trigger"]) for t in kube.of_kind("TrainingJob")]


@pytest.mark.asyncio
async def test_an_unchanged_file_starts_no_run_and_a_rewritten_one_starts_one() -> None:
    kube = MemoryKube()
    body: dict[str, Any] = model_body()
    body["spec"]["training"].update({"schedule": "0 3 * * *", "retrainWhen": "DataChanged"})
    body["metadata"]["creationTimestamp"] = now_iso()  # no firing until the test says so
    kube.put(body)
    ctl = controller(kube, SETTINGS)
    await model_pass(ctl)  # the initial run, then its Job
    await run_pass(ctl, "iris-v1")
    job = kube.find("Job", NS, "iris-v1-train")
    assert job is not None
    complete(kube, "iris-v1-train", summary_with_data(1, DIGEST_V1))
    sync(ctl)
    await run_pass(ctl, "iris-v1")
    await model_pass(ctl)
    assert status(kube, "Model", "iris")["servingVersion"] == 1

    fire(kube, ctl)
    await model_pass(ctl)
    check = status(kube, "Model", "iris")["dataCheck"]
    assert check["expectedSha256"] == DIGEST_V1 and "checkedAt" not in check
    assert runs(kube) == [("iris-v1", "initial")]  # a check, not a run
    check_job = kube.find("Job", NS, check["job"])
    assert check_job is not None
    args = check_job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--check-data") + 1] == DIGEST_V1 and "--version" not in args
    assert check_job["metadata"]["ownerReferences"][0]["kind"] == "Model"
    assert names.LABEL_TRAINING_JOB not in check_job["metadata"]["labels"]

    complete(kube, check["job"], json.dumps({"dataSha256": DIGEST_V1, "changed": False}))
    sync(ctl)
    await model_pass(ctl)
    check = status(kube, "Model", "iris")["dataCheck"]
    assert check["changed"] is False and check["checkedAt"]
    assert runs(kube) == [("iris-v1", "initial")]  # unchanged: no run

    for kind, name in (("Job", check["job"]), ("Pod", f"{check['job']}-pod")):
        await kube.delete(kind, NS, name)  # the Job's TTL: the next firing's name is free
    sync(ctl)
    fire(kube, ctl)
    await model_pass(ctl)
    check = status(kube, "Model", "iris")["dataCheck"]
    complete(kube, check["job"], json.dumps({"dataSha256": DIGEST_NEW, "changed": True}))
    sync(ctl)
    await model_pass(ctl)
    check = status(kube, "Model", "iris")["dataCheck"]
    assert check["changed"] is True and check["sha256"] == DIGEST_NEW, check
    (run,) = [t for t in kube.of_kind("TrainingJob") if t["spec"]["trigger"] == "data-change"]
    assert run["metadata"]["name"] == check["trainingJob"]
    assert run["metadata"]["name"].startswith("iris-d")
    assert (
        run["spec"]["reason"] == "data changed: sha256 222222222222 (last trained on 111111111111)"
    )
    await model_pass(ctl)
    assert len(runs(kube)) == 2  # read once: no second run from the same check
