"""What a Model can make the operator do: bounded schedules, bounded trainers, no escapes.

Each test fails on the code before the rule: a year-old every-minute schedule walked half
a million cron steps on the event loop; a scheduled run started while the last one ran;
``n_jobs: -1`` or a GPU-only ``limits`` left a trainer without CPU or memory bounds;
``pvc://claim//etc`` named an absolute path past the claim.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from croniter import croniter
from kube_memory import MemoryKube, controller, sync

from mlkube.api import names
from mlkube.controller import schedule
from mlkube.controller.builders import (
    build_drift_cronjob,
    build_predictor_deployment,
    build_trainer_job,
)
from mlkube.controller.handlers.model import reconcile_model
from mlkube.controller.settings import OperatorSettings
from mlkube.controller.spec import training_problem

NS = "team"
SETTINGS = OperatorSettings(runtime_image="registry.local/mlkube-runtime:1")


def model(training: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    base = {
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        "data": {"uri": "sklearn://iris", "target": "target"},
    }
    return {
        "apiVersion": names.API_VERSION,
        "kind": "Model",
        "metadata": {"name": "iris", "namespace": NS, "uid": "uid-iris", **meta},
        "spec": {"task": "classification", "training": {**base, **(training or {})}},
    }


class CountingCron(croniter):  # type: ignore[misc]
    steps = 0

    def get_next(self, *args: Any, **kwargs: Any) -> Any:
        CountingCron.steps += 1
        return super().get_next(*args, **kwargs)

    def get_prev(self, *args: Any, **kwargs: Any) -> Any:
        CountingCron.steps += 1
        return super().get_prev(*args, **kwargs)


def test_a_year_of_missed_minutes_costs_two_cron_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule, "croniter", CountingCron)
    now = datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC)
    fired, nxt = schedule.last_fire("* * * * *", now - timedelta(days=365), now)
    assert fired == datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert nxt == datetime(2026, 12, 1, 12, 1, tzinfo=UTC)
    assert CountingCron.steps <= 2


def scheduled_model(last: datetime) -> dict[str, Any]:
    body = model({"schedule": "0 * * * *"}, creationTimestamp="2026-01-01T00:00:00Z")
    body["status"] = {
        "lastScheduledTraining": last.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": [{"version": 1, "decision": "Promoted", "score": 0.9, "promoted": True}],
        "servingVersion": 1,
        "allocatedVersion": 1,
    }
    return body


def scheduled_runs(kube: MemoryKube) -> list[str]:
    return [
        t["metadata"]["name"]
        for t in kube.of_kind("TrainingJob")
        if t["spec"]["trigger"] == "schedule"
    ]


@pytest.mark.asyncio
async def test_after_downtime_one_missed_firing_runs_not_all_of_them() -> None:
    kube = MemoryKube()
    kube.put(scheduled_model(datetime.now(UTC) - timedelta(hours=30)))
    ctl = controller(kube, SETTINGS)
    await reconcile_model(ctl, NS, "iris")
    assert len(scheduled_runs(kube)) == 1


@pytest.mark.asyncio
async def test_a_firing_is_skipped_while_the_previous_scheduled_run_still_runs() -> None:
    kube = MemoryKube()
    kube.put(scheduled_model(datetime.now(UTC) - timedelta(hours=3)))
    kube.put(
        {
            "apiVersion": names.API_VERSION,
            "kind": "TrainingJob",
            "metadata": {"name": "iris-s2601010000", "namespace": NS},
            "spec": {"modelRef": {"name": "iris"}, "trigger": "schedule"},
            "status": {"phase": "Running", "version": 2},
        }
    )
    ctl = controller(kube, SETTINGS)
    await reconcile_model(ctl, NS, "iris")
    sync(ctl)
    assert scheduled_runs(kube) == ["iris-s2601010000"]
    last = kube.find("Model", NS, "iris")
    assert last is not None
    assert last["status"]["lastScheduledTraining"] > "2026-01-01"  # the firing was consumed


@pytest.mark.parametrize(
    ("params", "resources", "problem"),
    [
        ({"n_jobs": -1}, None, "n_jobs=-1 exceeds the trainer's CPU limit (2)"),
        ({"n_jobs": 8}, None, "set n_jobs between 1 and 2"),
        ({"n_jobs": 4}, {"limits": {"cpu": "4"}}, None),
        ({"n_jobs": 2}, {"limits": {"nvidia.com/gpu": 1}}, None),
        ({"n_jobs": 3}, {"limits": {"cpu": "2500m"}}, None),
    ],
)
def test_n_jobs_cannot_exceed_the_trainers_cpu_limit(
    params: dict[str, Any], resources: dict[str, Any] | None, problem: str | None
) -> None:
    training: dict[str, Any] = {
        "estimator": {"class": "sklearn.ensemble.RandomForestClassifier", "params": params}
    }
    if resources is not None:
        training["resources"] = resources
    found = training_problem(model(training), None, SETTINGS)
    assert (found is None) if problem is None else (problem in str(found))


def test_a_trainer_asking_only_for_a_gpu_still_gets_cpu_and_memory_limits() -> None:
    body = model({"resources": {"limits": {"nvidia.com/gpu": 1}, "requests": {"memory": "3Gi"}}})
    tj = {
        "apiVersion": names.API_VERSION,
        "kind": "TrainingJob",
        "metadata": {"name": "iris-v1", "namespace": NS, "uid": "uid-tj"},
        "spec": {"modelRef": {"name": "iris"}, "trigger": "initial"},
    }
    job = build_trainer_job(body, tj, 1, SETTINGS)
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    # the default memory limit (2Gi) is below the request, so the request is the limit
    assert limits == {"nvidia.com/gpu": 1, "cpu": "2", "memory": "3Gi"}


@pytest.mark.parametrize(
    "uri", ["pvc://claim//etc/passwd", "pvc://claim/a//b.csv", "pvc://claim/../other/x.csv"]
)
def test_a_pvc_uri_cannot_leave_its_claim(uri: str) -> None:
    problem = training_problem(model({"data": {"uri": uri, "target": "y"}}), None, SETTINGS)
    assert problem is not None and "(and empty ones) are not allowed" in problem


def mounts_of(pod_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in pod_spec["containers"][0]["volumeMounts"]}


def test_predictors_read_versions_read_only_and_log_to_their_own_corner() -> None:
    body = model()
    body["spec"]["storage"] = {"uri": "pvc://models/prod"}
    deployment = build_predictor_deployment(body, 3, "a" * 64, SETTINGS)
    pod = deployment["spec"]["template"]["spec"]
    mounts = mounts_of(pod)
    assert mounts["/mnt/store"]["readOnly"] is True
    assert mounts["/mnt/inference"]["subPath"] == "prod/team/iris/inference"
    assert not mounts["/mnt/inference"].get("readOnly")
    args = pod["containers"][0]["args"]
    assert args[args.index("--log-dir") + 1] == "/mnt/inference"


def test_drift_checks_read_the_store_read_only_and_write_only_reports() -> None:
    monitor = {
        "apiVersion": names.API_VERSION,
        "kind": "Monitor",
        "metadata": {"name": "iris-watch", "namespace": NS, "uid": "uid-mon"},
        "spec": {"modelRef": {"name": "iris"}},
    }
    cronjob = build_drift_cronjob(monitor, model(), SETTINGS)
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    mounts = mounts_of(pod)
    assert mounts["/mnt/store"]["readOnly"] is True
    assert mounts["/mnt/drift-reports"]["subPath"] == "team/iris/drift"
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["MLKUBE_REPORT_DIR"] == "/mnt/drift-reports"


def test_a_trainer_sees_only_its_own_models_directory_of_the_store() -> None:
    tj = {
        "apiVersion": names.API_VERSION,
        "kind": "TrainingJob",
        "metadata": {"name": "iris-v2", "namespace": NS, "uid": "uid-tj"},
        "spec": {"modelRef": {"name": "iris"}, "trigger": "manual"},
    }
    pod = build_trainer_job(model(), tj, 2, SETTINGS)["spec"]["template"]["spec"]
    store_mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "store"]
    assert store_mounts == [{"name": "store", "mountPath": "/mnt/model", "subPath": "team/iris"}]
    args = pod["containers"][0]["args"]
    assert args[args.index("--model-root") + 1] == "/mnt/model"


def finished_run(model_body: dict[str, Any], version: int, *, owned: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"iris-r{version}", "namespace": NS}
    if owned:
        meta["ownerReferences"] = [
            {"kind": "Model", "name": "iris", "uid": model_body["metadata"]["uid"]}
        ]
    return {
        "apiVersion": names.API_VERSION,
        "kind": "TrainingJob",
        "metadata": meta,
        "spec": {"modelRef": {"name": "iris"}, "trigger": "drift" if owned else "manual"},
        "status": {"phase": "Failed", "version": version, "message": "boom"},
    }


@pytest.mark.asyncio
async def test_old_runs_the_operator_made_are_pruned_never_users_or_the_serving_one() -> None:
    kube = MemoryKube()
    body = model()
    body["status"] = {
        "versions": [{"version": 2, "decision": "Promoted", "score": 0.9, "promoted": True}],
        "servingVersion": 2,
        "allocatedVersion": 9,
    }
    created = kube.put(body)
    for version in range(1, 9):
        kube.put(finished_run(created, version, owned=version != 3))
    ctl = controller(kube, OperatorSettings(runtime_image="img:1", max_training_jobs=2))
    await reconcile_model(ctl, NS, "iris")
    left = sorted(int(t["status"]["version"]) for t in kube.of_kind("TrainingJob"))
    # 7 and 8 are the newest two it owns; 2 serves; 3 is a user's
    assert left == [2, 3, 7, 8]


def test_the_trainer_prunes_versions_older_than_the_oldest_listed(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from train_support import manifest, run_cli, write_manifest

    store = tmp_path / "store"
    model_dir = store / "default" / "iris"
    for version in (1, 2, 3, 4):
        (model_dir / f"v{version}").mkdir(parents=True)
    path = write_manifest(tmp_path, manifest("iris"))
    result = run_cli(
        capsys, "-f", path, "--store", store, "--version", "5", "--prune-below", "4", "--keep", "2"
    )
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in model_dir.iterdir()) == ["v2", "v4", "v5"]


def test_the_operator_asks_for_pruning_only_when_the_setting_is_on() -> None:
    body = model()
    body["status"] = {"versions": [{"version": 4}, {"version": 6}], "servingVersion": 2}
    tj = {
        "apiVersion": names.API_VERSION,
        "kind": "TrainingJob",
        "metadata": {"name": "iris-v7", "namespace": NS, "uid": "uid-tj"},
        "spec": {"modelRef": {"name": "iris"}, "trigger": "manual"},
    }

    def args_of(settings: OperatorSettings) -> list[str]:
        job = build_trainer_job(body, tj, 7, settings)
        return list(job["spec"]["template"]["spec"]["containers"][0]["args"])

    assert "--prune-below" not in args_of(SETTINGS)
    args = args_of(OperatorSettings(runtime_image="img:1", prune_store_versions=True))
    assert args[args.index("--prune-below") + 1] == "4"
    assert args[args.index("--keep") + 1] == "2"


@pytest.mark.parametrize(
    "uri",
    [
        "file:///var/run/secrets/kubernetes.io/serviceaccount/token",
        "/etc/passwd",
        "store://../other/inference",
        "store:///abs",
    ],
)
def test_an_in_cluster_drift_check_reads_only_inside_the_store(uri: str, tmp_path: Any) -> None:
    from datetime import UTC, datetime

    from kubernetes import client

    from mlkube.runtime.drift.check import DriftInputError
    from mlkube.runtime.drift.incluster import ClusterSettings, MonitorCheck

    check = MonitorCheck(
        client.ApiClient(), ClusterSettings(store_root=tmp_path), NS, "w", datetime.now(UTC)
    )
    with pytest.raises(DriftInputError, match="reads store://"):
        check._live_path({"spec": {"data": {"uri": uri}}}, "iris")
    inside = check._live_path({"spec": {"data": {"uri": "store://team/tables/live.csv"}}}, "iris")
    assert inside == tmp_path / "team" / "tables" / "live.csv"
    # late labels (spec.performance.labels.uri) go through the same rule
    with pytest.raises(DriftInputError, match=r"spec\.performance\.labels\.uri"):
        check._store_path(uri, "spec.performance.labels.uri")


def test_live_rows_reach_the_trainer_only_when_the_model_opts_in() -> None:
    """A TrainingJob's spec.liveRows (anyone who may create TrainingJobs can write one)
    adds rows to a Model's training data only if the Model itself says liveData.include."""
    live_rows = {"path": "drift/live-rows-20261202T120000Z.jsonl", "rows": 300}
    tj = {
        "apiVersion": names.API_VERSION,
        "kind": "TrainingJob",
        "metadata": {"name": "iris-perf-1", "namespace": NS, "uid": "uid-tj"},
        "spec": {"modelRef": {"name": "iris"}, "trigger": "performance", "liveRows": live_rows},
    }

    def args_of(body: dict[str, Any]) -> list[str]:
        job = build_trainer_job(body, tj, 2, SETTINGS)
        return list(job["spec"]["template"]["spec"]["containers"][0]["args"])

    assert "--live-rows" not in args_of(model())
    assert "--live-rows" not in args_of(model({"liveData": {"include": False}}))
    args = args_of(model({"liveData": {"include": True}}))
    assert json.loads(args[args.index("--live-rows") + 1]) == live_rows


def test_trainers_get_the_operators_allowed_internal_hosts() -> None:
    tj = {
        "apiVersion": names.API_VERSION,
        "kind": "TrainingJob",
        "metadata": {"name": "iris-v1", "namespace": NS, "uid": "uid-tj"},
        "spec": {"modelRef": {"name": "iris"}, "trigger": "initial"},
    }
    settings = OperatorSettings.from_env({"MLKUBE_ALLOWED_INTERNAL_HOSTS": "data.corp,10.1.0.0/16"})
    job = build_trainer_job(model(), tj, 1, settings)
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLKUBE_ALLOWED_INTERNAL_HOSTS"] == "data.corp,10.1.0.0/16"
    plain = build_trainer_job(model(), tj, 1, SETTINGS)["spec"]["template"]["spec"]
    assert "MLKUBE_ALLOWED_INTERNAL_HOSTS" not in {e["name"] for e in plain["containers"][0]["env"]}


def test_live_data_quality_reaches_monitor_status_and_a_gauge() -> None:
    from mlkube.controller import metrics
    from mlkube.controller.main import Operator
    from mlkube.runtime.drift.incluster import data_quality

    findings = [
        {"feature": "age", "finding": "missing-fraction", "value": 0.2, "limit": 0.05},
        {"feature": "plan", "finding": "unseen-categories", "value": 0.1, "limit": 0.0},
        {"feature": "x", "finding": "reference-empty", "value": 0, "limit": None},
    ]
    quality = data_quality(findings)
    assert quality["violations"] == 3 and quality["findings"][0]["feature"] == "age"
    monitor = {
        "metadata": {"name": "w", "namespace": NS, "resourceVersion": "1"},
        "spec": {"modelRef": {"name": "iris"}},
        "status": {"verdict": "no-drift", "driftShare": 0.0, "dataQuality": quality},
    }
    operator = Operator(SETTINGS)
    operator.cache.store("Monitor", monitor)
    operator._drift_gauges()
    gauge = metrics.DATA_QUALITY_VIOLATIONS.labels(NS, "w", "iris")
    assert gauge._value.get() == 3
