"""``mlkube drift-check --monitor NS/NAME``: the check as a Monitor's CronJob pod runs it.

It reads the Monitor and its Model, checks the serving version against the inference log
in the store, writes ``Monitor.status`` in one patch, and on drift with ``action:
retrain`` creates a TrainingJob (trigger ``drift``, owned by the Model) unless a
TrainingJob of that model is still running or the cooldown has not passed.

Concurrency: the TrainingJob's name is deterministic per cooldown period
(``<model>-drift-<period start, epoch seconds>``), so two checks running at the same
moment ask for the same name and the API server lets one create it (the other gets
AlreadyExists and reports it). The status patch carries the resourceVersion it was
computed from and is recomputed on conflict, so concurrent writers never lose fields.

Condition ownership: the operator owns ``Ready`` of a Monitor (it reflects the CronJob);
the checker owns ``Drifted`` (True: dataset drift; False: no drift; Unknown: not enough
data, or the check could not run, with the reason and message saying which).
Uses the pod's ServiceAccount (in-cluster config) or ``KUBECONFIG`` outside a pod.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from mlkube.api import names
from mlkube.api.conditions import DRIFTED, set_condition
from mlkube.api.status import (
    DataQualityStatus,
    FeatureDrift,
    MonitorStatus,
    QualityFinding,
    Reason,
    Verdict,
)
from mlkube.runtime.drift.check import CheckResult, DriftInputError, LiveOptions
from mlkube.runtime.drift.groundtruth import live_condition, performance_status
from mlkube.runtime.drift.perfspec import PerformanceSettings, performance_from_monitor
from mlkube.runtime.drift.remote import check_anywhere
from mlkube.runtime.drift.report import rfc3339, top_features
from mlkube.runtime.drift.retrain import blocked, training_job_body, wanted_trigger
from mlkube.runtime.drift.spec import DriftSettings, SpecError, settings_from_monitor
from mlkube.runtime.store.s3 import S3Location, location

STATUS_FEATURES: Final = 20
STATUS_FINDINGS: Final = 10
# The Drifted condition's status and reason for each verdict.
ConditionStatus = bool | Literal["Unknown"]
_DRIFTED_BY_VERDICT: Final[dict[Verdict, tuple[ConditionStatus, Reason]]] = {
    Verdict.DRIFT: (True, Reason.DATASET_DRIFT),
    Verdict.NO_DRIFT: (False, Reason.NO_DRIFT),
    Verdict.INSUFFICIENT_DATA: ("Unknown", Reason.INSUFFICIENT_DATA),
}

CONFLICT_RETRIES: Final = 5


@dataclass(frozen=True)
class ClusterSettings:
    """Settings of the in-cluster check, from the environment, read once at start.

    ``MLKUBE_STORE_ROOT``: where the model store is mounted in the pod (default /mnt/store),
    read-only in a CronJob pod, or ``s3://bucket/prefix``. ``MLKUBE_REPORT_DIR``: the
    writable directory (or ``s3://`` prefix) reports go to (default: beside the inference
    log, ``<store>/<ns>/<model>/drift``).
    """

    store_root: Path | S3Location
    report_dir: Path | S3Location | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClusterSettings:
        env = os.environ if environ is None else environ
        reports = env.get("MLKUBE_REPORT_DIR")
        return cls(
            store_root=location(env.get("MLKUBE_STORE_ROOT", "/mnt/store")),
            report_dir=location(reports) if reports else None,
        )


@dataclass
class Outcome:
    exit_code: int
    message: str
    result: CheckResult | None = None
    training_job: str | None = None


def load_client() -> Any:
    """An ApiClient from the pod's ServiceAccount, or from KUBECONFIG outside a pod."""
    from kubernetes import client, config

    # the client's config loaders carry no annotations; call them through Any
    loaders: Any = config
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        loaders.load_incluster_config()
    else:
        loaders.load_kube_config()
    return client.ApiClient()


class MonitorCheck:
    """One check of one Monitor against the API server."""

    def __init__(
        self, api_client: Any, settings: ClusterSettings, namespace: str, name: str, now: datetime
    ) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.settings = settings
        self.namespace = namespace
        self.name = name
        self.now = now

    def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            found: Any = self.api.get_namespaced_custom_object(
                names.GROUP, names.VERSION, self.namespace, plural, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(found)

    def run(self, fail_on_drift: bool = False) -> Outcome:
        monitor = self._get(names.PLURALS[names.MONITOR], self.name)
        if monitor is None:
            return Outcome(2, f"Monitor {self.namespace}/{self.name} not found")
        try:
            drift = settings_from_monitor(monitor)
            perf = performance_from_monitor(monitor)
        except SpecError as error:
            return self._failed(Reason.INVALID_SPEC, str(error))
        model_name = drift.model or ""
        model = self._get(names.PLURALS[names.MODEL], model_name)
        if model is None:
            return self._failed(Reason.MODEL_NOT_FOUND, f"Model {model_name!r} not found")
        serving = (model.get("status") or {}).get("servingVersion")
        if not isinstance(serving, int):
            return self._failed(
                Reason.NO_SERVING_VERSION, f"Model {model_name!r} serves no version yet"
            )
        model_dir = self.settings.store_root / names.version_dir(
            self.namespace, model_name, serving
        )
        try:
            live = self._live_path(monitor, model_name)
            report = None
            if self.settings.report_dir is not None:
                report = self.settings.report_dir / f"{self.now.strftime('%Y%m%dT%H%M%SZ')}.json"
            late = perf.labels_uri if perf is not None else None
            options = LiveOptions(
                perf, model, self._store_path(late, "spec.performance.labels.uri") if late else None
            )
            result = check_anywhere(
                model_dir, live, drift, self.now, report_path=report, options=options
            )
        except DriftInputError as error:
            return self._failed(Reason.CHECK_FAILED, str(error))
        job, decision = self._maybe_retrain(drift, perf, model, result)
        self._write_status(monitor, drift, result, serving, job)
        code = 3 if fail_on_drift and result.report["verdict"] == Verdict.DRIFT else 0
        return Outcome(code, decision, result, job)

    def _live_path(self, monitor: Mapping[str, Any], model: str) -> Path | S3Location:
        uri = ((monitor.get("spec") or {}).get("data") or {}).get("uri")
        if isinstance(uri, str) and uri:
            return self._store_path(uri, "spec.data.uri")
        return self.settings.store_root / names.inference_dir(self.namespace, model)

    def _store_path(self, uri: str, where: str) -> Path | S3Location:
        # Only the store: a file:// or absolute path would let a Monitor's author read the
        # drift pod's own files (its ServiceAccount token among them) into the status.
        relative = uri.removeprefix("store://")
        if not uri.startswith("store://") or any(
            part in ("", ".", "..") for part in relative.split("/")
        ):
            raise DriftInputError(
                f"{where} {uri!r}: in a cluster the drift check reads store://<path> "
                "inside the model store, without '.', '..' or empty segments"
            )
        return self.settings.store_root / relative

    def _training_jobs(self, model: str) -> list[dict[str, Any]]:
        listed: Any = self.api.list_namespaced_custom_object(
            names.GROUP, names.VERSION, self.namespace, names.PLURALS[names.TRAINING_JOB]
        )
        return [
            tj
            for tj in listed.get("items", [])
            if ((tj.get("spec") or {}).get("modelRef") or {}).get("name") == model
        ]

    def _maybe_retrain(
        self,
        drift: DriftSettings,
        perf: PerformanceSettings | None,
        model: dict[str, Any],
        result: CheckResult,
    ) -> tuple[str | None, str]:
        from kubernetes.client.exceptions import ApiException

        trigger, found = wanted_trigger(drift, perf, result)
        if trigger is None:
            return None, found
        model_name = model["metadata"]["name"]
        why_not = blocked(self._training_jobs(model_name), self.now, drift.cooldown, found)
        if why_not is not None:
            return None, why_not
        body = training_job_body(self.name, model, trigger, drift, result, now=self.now)
        name = str(body["metadata"]["name"])
        try:
            self.api.create_namespaced_custom_object(
                names.GROUP, names.VERSION, self.namespace, names.PLURALS[names.TRAINING_JOB], body
            )
        except ApiException as error:
            if error.status == 409:
                return name, f"{found}; TrainingJob {name} already created by another check"
            raise
        return name, f"{found}; created TrainingJob {name}"

    def _write_status(
        self,
        monitor: dict[str, Any],
        drift: DriftSettings,
        result: CheckResult,
        version: int,
        job: str | None,
    ) -> None:
        report = result.report
        verdict = report["verdict"]
        state = _DRIFTED_BY_VERDICT[Verdict(verdict)]
        message = (
            f"{report['samples']['live']} live rows, {report['driftShare']:.0%} of "
            f"features drifted (threshold {drift.dataset_drift_share:.0%})"
        )
        features: dict[str, FeatureDrift | None] = {
            r.name: {
                "method": r.method,
                "score": r.score,
                "threshold": r.threshold,
                "drifted": r.drifted,
            }
            for r in top_features(result.evaluation, STATUS_FEATURES)
            if r.score is not None and r.threshold is not None
        }
        fields: MonitorStatus = {
            "lastCheckTime": rfc3339(self.now),
            "checkedVersion": version,
            "verdict": verdict,
            "samples": report["samples"]["live"],
            "datasetDrift": report["datasetDrift"],
            "driftShare": report["driftShare"],
            "features": features,
            "lastReport": str(result.report_path),
            "dataQuality": data_quality(result.evaluation.findings),
        }
        previous = (monitor.get("status") or {}).get("performance")
        performance = performance_status(result.live, previous, rfc3339(self.now))
        if performance is not None:
            fields["performance"] = performance
        if result.live.outputs is not None:
            fields["predictionDrift"] = result.live.outputs.as_status()
        if job is not None:
            fields["lastTrainingJob"] = job
            fields["lastRetrainTime"] = rfc3339(self.now)
        self._patch_status(monitor, fields, state[0], state[1], message)

    def _failed(self, reason: str, message: str) -> Outcome:
        monitor = self._get(names.PLURALS[names.MONITOR], self.name)
        if monitor is not None:
            self._patch_status(monitor, {}, "Unknown", reason, message)
        return Outcome(2, message)

    def _patch_status(
        self,
        monitor: dict[str, Any],
        fields: MonitorStatus,
        status: ConditionStatus,
        reason: str,
        message: str,
    ) -> None:
        """One merge patch of status guarded by resourceVersion; recomputed on conflict."""
        from kubernetes.client.exceptions import ApiException

        for _ in range(CONFLICT_RETRIES):
            generation = int(monitor["metadata"].get("generation", 1))
            previous = list((monitor.get("status") or {}).get("conditions") or [])
            body = {
                "metadata": {"resourceVersion": monitor["metadata"]["resourceVersion"]},
                "status": {
                    **fields,
                    "observedGeneration": generation,
                    "conditions": live_condition(
                        set_condition(
                            previous,
                            DRIFTED,
                            status,
                            reason,
                            message[:4000],
                            generation=generation,
                            now=self.now,
                        ),
                        fields.get("performance"),
                        generation,
                        self.now,
                    ),
                },
            }
            if "features" in fields:
                old = (monitor.get("status") or {}).get("features") or {}
                body["status"]["features"] = {**dict.fromkeys(old), **fields["features"]}
            try:
                self.api.patch_namespaced_custom_object_status(
                    names.GROUP,
                    names.VERSION,
                    self.namespace,
                    names.PLURALS[names.MONITOR],
                    self.name,
                    body,
                    _content_type="application/merge-patch+json",
                )
                return
            except ApiException as error:
                if error.status != 409:
                    raise
            fresh = self._get(names.PLURALS[names.MONITOR], self.name)
            if fresh is None:
                return
            monitor = fresh
        raise DriftInputError(
            f"Monitor {self.namespace}/{self.name}: status kept changing; gave up after retries"
        )


def data_quality(findings: list[dict[str, Any]]) -> DataQualityStatus:
    """The live window's data-quality findings for status: counted, the worst few listed.

    Missing values beyond the Monitor's limit, columns with no values, non-numbers in a
    numeric feature, categories never seen in training: each is one violation.
    """
    listed: list[QualityFinding] = [
        {
            "feature": str(f["feature"]),
            "finding": str(f["finding"]),
            "value": float(f["value"]),
            "limit": None if f.get("limit") is None else float(f["limit"]),
        }
        for f in findings[:STATUS_FINDINGS]
    ]
    return {"violations": len(findings), "findings": listed}


def run_monitor(
    reference: str,
    now: datetime | None = None,
    fail_on_drift: bool = False,
    api_client: Any = None,
    settings: ClusterSettings | None = None,
) -> Outcome:
    """Checks Monitor ``NS/NAME``; the Outcome carries the exit code and a one-line summary."""
    namespace, _, name = reference.partition("/")
    if not namespace or not name or "/" in name:
        raise DriftInputError(f"--monitor takes NAMESPACE/NAME, got {reference!r}")
    moment = now or datetime.now(UTC)  # to the microsecond: the window ends at this moment
    check = MonitorCheck(
        api_client or load_client(), settings or ClusterSettings.from_env(), namespace, name, moment
    )
    return check.run(fail_on_drift)
