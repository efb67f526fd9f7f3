"""The batch/v1 Job running ``mlkube train`` for one TrainingJob.

TrainingJob resources themselves are built in ``mlkube.api.resources``, which the drift
checker shares.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlkube.api import names
from mlkube.api.errors import EXIT_BAD_INPUT
from mlkube.api.resources import Body, Manifest, base_labels, metadata
from mlkube.api.search import search_parallelism, search_trial_count
from mlkube.controller.builders import common
from mlkube.controller.builders.store import trainer_store
from mlkube.controller.settings import OperatorSettings
from mlkube.controller.spec import (
    data_claim,
    effective_model_manifest,
    effective_training,
    name_of,
    namespace_of,
    storage_of,
)


def build_trainer_job(
    model: Body, training_job: Body, version: int, settings: OperatorSettings
) -> Manifest:
    """The Job running one training; owned by the TrainingJob, named after it.

    With ``spec.training.search`` it is the search's trials: an Indexed Job whose index
    K runs trial K (``--trial`` reads ``JOB_COMPLETION_INDEX``), each index retried on
    its own (``backoffLimitPerIndex``) so one crashed trial does not end the others.
    """
    search = effective_training(model, training_job).get("search")
    if not search:
        return _trainer_job(
            model, training_job, version, settings, job_name=names.job_name, step=[]
        )
    job = _trainer_job(
        model, training_job, version, settings, job_name=names.job_name, step=["--trial"]
    )
    trials = search_trial_count(search)
    spec = job["spec"]
    per_index = spec.pop("backoffLimit")
    spec.update(
        {
            "completionMode": "Indexed",
            "completions": trials,
            "parallelism": search_parallelism(search, trials),
            "backoffLimitPerIndex": per_index,
        }
    )
    return job


def build_select_job(
    model: Body, training_job: Body, version: int, settings: OperatorSettings
) -> Manifest:
    """The Job that runs once a search's trials have ended: ``mlkube train --select``
    makes the best completed trial the version. Its name is fixed by the TrainingJob's,
    so a restarted operator finds it instead of starting a second one."""
    return _trainer_job(
        model, training_job, version, settings, job_name=names.select_job_name, step=["--select"]
    )


def build_data_check_job(
    model: Body, name: str, expected_sha256: str, settings: OperatorSettings
) -> Manifest:
    """The Job of one schedule firing with ``retrainWhen: DataChanged``: the trainer's pod
    (same image, mounts, data access and limits), owned by the Model, running
    ``mlkube train --check-data``, which reads the data and writes nothing."""
    job = _trainer_job(
        model,
        model,
        0,
        settings,
        job_name=lambda _: name,
        step=["--check-data", expected_sha256],
    )
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        labels.pop(names.LABEL_TRAINING_JOB, None)
        labels.pop(names.LABEL_VERSION, None)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    for flag in ("--version", "--training-job", "--trigger", "--reason", "--prune-below", "--keep"):
        if flag in args:
            at = args.index(flag)
            del args[at : at + 2]
    return job


def _trainer_job(
    model: Body,
    training_job: Body,
    version: int,
    settings: OperatorSettings,
    *,
    job_name: Callable[[str], str],
    step: list[str],
) -> Manifest:
    model_name = name_of(model)
    tj_name = name_of(training_job)
    tj_spec = training_job.get("spec") or {}
    training = effective_training(model, training_job)
    storage = storage_of(model, settings)
    store = trainer_store(storage, namespace_of(model), model_name)
    labels = base_labels(model_name, "trainer")
    labels[names.LABEL_TRAINING_JOB] = tj_name
    labels[names.LABEL_VERSION] = str(version)
    manifest = effective_model_manifest(model, training_job)
    args = [
        "train",
        "--model-json",
        json.dumps(manifest, sort_keys=True, separators=(",", ":")),
        *store.args,
        "--store-uri",
        storage.uri,
        "--version",
        str(version),
        "--namespace",
        namespace_of(model),
        "--trigger",
        str(tj_spec.get("trigger") or "manual"),
        "--reason",
        str(tj_spec.get("reason") or ""),
        "--training-job",
        tj_name,
        "--termination-log",
        "/dev/termination-log",
        *step,
    ]
    args += _prune_arguments(model, settings)
    live_rows = tj_spec.get("liveRows")
    if live_rows and ((training.get("liveData") or {}).get("include")):
        # labelled live rows of a performance-triggered window, when the Model opts in
        args += ["--live-rows", json.dumps(live_rows, sort_keys=True, separators=(",", ":"))]
    volumes = [*store.volumes, common.tmp_volume()]
    mounts = [*store.mounts, {"name": common.TMP_VOLUME, "mountPath": common.TMP_PATH}]
    claim = data_claim(training)
    if claim is not None:
        volumes.append(
            {"name": "data", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": "data", "mountPath": f"{common.PVC_ROOT}/{claim}", "readOnly": True})
    env = [
        *common.base_env(),
        {"name": "MLKUBE_PVC_ROOT", "value": common.PVC_ROOT},
        {"name": "MLKUBE_ESTIMATOR_ALLOWLIST", "value": ",".join(settings.estimator_allowlist)},
        *store.env,
    ]
    if settings.allowed_internal_hosts:
        hosts = ",".join(settings.allowed_internal_hosts)
        env.append({"name": "MLKUBE_ALLOWED_INTERNAL_HOSTS", "value": hosts})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": common.pod_security_context(settings),
        "containers": [
            {
                "name": "trainer",
                "image": settings.runtime_image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": ["mlkube"],
                "args": args,
                "env": env,
                "resources": common.resources(
                    training.get("resources"), settings.trainer_resources
                ),
                "securityContext": common.container_security_context(settings),
                "volumeMounts": mounts,
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": volumes,
    }
    if store.service_account:
        pod_spec["serviceAccountName"] = store.service_account
    if training.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(training["nodeSelector"])
    if training.get("tolerations"):
        pod_spec["tolerations"] = list(training["tolerations"])
    backoff = training.get("backoffLimit")
    deadline = training.get("activeDeadlineSeconds")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(training_job, job_name(tj_name), labels),
        "spec": {
            "backoffLimit": settings.default_backoff_limit if backoff is None else int(backoff),
            "activeDeadlineSeconds": settings.default_active_deadline_seconds
            if deadline is None
            else int(deadline),
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "trainer",
                            "operator": "In",
                            "values": [EXIT_BAD_INPUT],
                        },
                    },
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget"}],
                    },
                ]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _prune_arguments(model: Body, settings: OperatorSettings) -> list[str]:
    """With ``prune_store_versions``: the trainer deletes versions older than the oldest one
    the Model still lists, never the serving or the pinned one (only older ones: a run
    going on beside this one always has a newer number)."""
    listed = [int(v["version"]) for v in (model.get("status") or {}).get("versions") or []]
    if not settings.prune_store_versions or not listed:
        return []
    pin = ((model.get("spec") or {}).get("serving") or {}).get("version")
    serving = (model.get("status") or {}).get("servingVersion")
    keep = sorted(int(v) for v in (serving, pin) if v is not None)
    args = ["--prune-below", str(min(listed))]
    if keep:
        args += ["--keep", ",".join(str(v) for v in keep)]
    return args
