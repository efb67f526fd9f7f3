"""The operator's settings, read once from ``MLKUBE_…`` environment variables at start.

Everything a cluster administrator may want to change without editing a Model lives
here (images, defaults, limits) and is passed down to the pure builders, which is what
lets them stay pure and unit-testable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

S3_ADDRESSING_STYLES: Final = ("auto", "path", "virtual")
SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class SettingsError(ValueError):
    """An ``MLKUBE_…`` variable has a value the operator cannot use."""


def _default_trainer_resources() -> dict[str, dict[str, str]]:
    return {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}}


def _default_predictor_resources() -> dict[str, dict[str, str]]:
    return {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }


@dataclass(frozen=True)
class OperatorSettings:
    """Settings of one ``mlkube operator`` process.

    - ``runtime_image`` (``MLKUBE_RUNTIME_IMAGE``): the image running ``mlkube train``,
      ``mlkube serve`` and ``mlkube drift-check``.
    - ``image_pull_policy`` (``MLKUBE_IMAGE_PULL_POLICY``, default IfNotPresent).
    - ``default_storage`` (``MLKUBE_DEFAULT_STORAGE``, default ``pvc://mlkube-models``): the
      store of Models that name none.
    - ``estimator_allowlist`` (``MLKUBE_ESTIMATOR_ALLOWLIST``, comma-separated import-path
      prefixes, default ``sklearn.``): checked before a Job is made, so a forbidden class is
      reported on the Model instead of failing inside a pod.
    - ``job_ttl_seconds`` (``MLKUBE_JOB_TTL_SECONDS``, default 86400): ``ttlSecondsAfterFinished``
      of trainer Jobs; the TrainingJob keeps the outcome, so the Job may go.
    - ``default_backoff_limit`` / ``default_active_deadline_seconds``
      (``MLKUBE_JOB_BACKOFF_LIMIT``, ``MLKUBE_JOB_DEADLINE_SECONDS``): used when the schema
      default is absent (objects stored before the default existed).
    - ``trainer_resources`` / ``predictor_resources``: default requests and limits
      (``MLKUBE_TRAINER_CPU``, ``MLKUBE_TRAINER_MEMORY``, ``MLKUBE_PREDICTOR_CPU``,
      ``MLKUBE_PREDICTOR_MEMORY`` set the request; limits stay as documented defaults).
    - ``run_as_user`` (``MLKUBE_RUN_AS_USER``, default 65532): numeric UID of every pod, which
      the restricted Pod Security profile needs to verify runAsNonRoot.
    - ``metrics_port`` (``MLKUBE_METRICS_PORT``, default 8000; 0 disables).
    - ``namespaces`` (``MLKUBE_NAMESPACES``, comma-separated; empty means all namespaces).
    - ``workers`` (``MLKUBE_WORKERS``, default 8): concurrent reconciles.
    - ``max_versions`` (``MLKUBE_MAX_VERSIONS``, default 50): length of ``status.versions``.
    - ``log_tail_lines`` (``MLKUBE_LOG_TAIL_LINES``, default 20): log lines quoted on failure.
    - ``leader_election`` (``MLKUBE_LEADER_ELECTION``, true/false, default false; the
      manifests turn it on): only the holder of a coordination.k8s.io Lease reconciles, so
      several replicas can run and at most one acts.
    - ``leader_election_namespace`` (``MLKUBE_LEADER_ELECTION_NAMESPACE``; default the pod's
      namespace from its service account, else ``default``) and ``leader_election_name``
      (``MLKUBE_LEADER_ELECTION_NAME``, default ``mlkube-operator``): where the Lease lives.
    - ``lease_duration_seconds`` (``MLKUBE_LEADER_LEASE_SECONDS``, default 15): how long a
      silent holder keeps the Lease; ``renew_period_seconds`` (``MLKUBE_LEADER_RENEW_SECONDS``,
      default 5, at most half the lease): how often the holder renews it.
    - ``max_training_jobs`` (``MLKUBE_MAX_TRAINING_JOBS``, default 20): finished TrainingJobs
      the operator made (initial, scheduled, drift) kept per Model; older ones are deleted,
      never the serving or pinned version's. Users' own TrainingJobs are left alone.
    - ``prune_store_versions`` (``MLKUBE_PRUNE_STORE_VERSIONS``, true/false, default false):
      the next trainer of a Model deletes the store's versions older than the oldest one
      ``status.versions`` still lists, except the serving and pinned ones.
    - ``allowed_internal_hosts`` (``MLKUBE_ALLOWED_INTERNAL_HOSTS``, comma-separated names,
      IPs or CIDRs): internal data hosts trainers may fetch https data from; every other
      private, loopback, link-local or cluster address is refused (docs/security.md).
    - S3 stores (docs/storage.md): ``s3_endpoint`` (``MLKUBE_S3_ENDPOINT``; empty means the
      AWS default for the region), ``s3_region`` (``MLKUBE_S3_REGION``), ``s3_addressing_style``
      (``MLKUBE_S3_ADDRESSING_STYLE``: auto, path or virtual), ``s3_secret``
      (``MLKUBE_S3_SECRET``: the Secret, in each Model's namespace, holding the credentials of
      Models that name none; empty means the pods' own identity), ``s3_allowed_endpoints``
      (``MLKUBE_S3_ALLOWED_ENDPOINTS``, comma-separated: the endpoints a Model may name besides
      the default one, since pods connect to whatever a Model names) and
      ``pod_service_account`` (``MLKUBE_POD_SERVICE_ACCOUNT``: the service account of trainer
      and predictor pods, for IRSA, EKS Pod Identity or GKE Workload Identity).
    """

    runtime_image: str = "mlkube/runtime:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    default_storage: str = "pvc://mlkube-models"
    estimator_allowlist: tuple[str, ...] = ("sklearn.",)
    job_ttl_seconds: int = 86400
    default_backoff_limit: int = 1
    default_active_deadline_seconds: int = 3600
    trainer_resources: dict[str, dict[str, str]] = field(default_factory=_default_trainer_resources)
    predictor_resources: dict[str, dict[str, str]] = field(
        default_factory=_default_predictor_resources
    )
    run_as_user: int = 65532
    metrics_port: int = 8000
    namespaces: tuple[str, ...] = ()
    workers: int = 8
    max_versions: int = 50
    log_tail_lines: int = 20
    leader_election: bool = False
    leader_election_namespace: str = "default"
    leader_election_name: str = "mlkube-operator"
    lease_duration_seconds: int = 15
    renew_period_seconds: int = 5
    max_training_jobs: int = 20
    prune_store_versions: bool = False
    allowed_internal_hosts: tuple[str, ...] = ()
    s3_endpoint: str = ""
    s3_region: str = ""
    s3_addressing_style: str = "auto"
    s3_secret: str = ""
    s3_allowed_endpoints: tuple[str, ...] = ()
    pod_service_account: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if environ is None else environ
        allow = tuple(p for p in _csv(env.get("MLKUBE_ESTIMATOR_ALLOWLIST", "sklearn.")) if p)
        if not allow:
            raise SettingsError("MLKUBE_ESTIMATOR_ALLOWLIST is set but names no prefix")
        trainer = _default_trainer_resources()
        predictor = _default_predictor_resources()
        _override(trainer, env, "MLKUBE_TRAINER_CPU", "cpu")
        _override(trainer, env, "MLKUBE_TRAINER_MEMORY", "memory")
        _override(predictor, env, "MLKUBE_PREDICTOR_CPU", "cpu")
        _override(predictor, env, "MLKUBE_PREDICTOR_MEMORY", "memory")
        storage = env.get("MLKUBE_DEFAULT_STORAGE", "pvc://mlkube-models")
        if not storage.startswith(("pvc://", "s3://")):
            raise SettingsError(f"MLKUBE_DEFAULT_STORAGE={storage!r}: expected pvc:// or s3://")
        lease = _int(env, "MLKUBE_LEADER_LEASE_SECONDS", 15, minimum=2)
        renew = _int(env, "MLKUBE_LEADER_RENEW_SECONDS", 5, minimum=1)
        if renew * 2 > lease:
            raise SettingsError(
                f"MLKUBE_LEADER_RENEW_SECONDS={renew} must be at most half of "
                f"MLKUBE_LEADER_LEASE_SECONDS={lease}"
            )
        return cls(
            runtime_image=env.get("MLKUBE_RUNTIME_IMAGE", "mlkube/runtime:0.1.0"),
            image_pull_policy=env.get("MLKUBE_IMAGE_PULL_POLICY", "IfNotPresent"),
            default_storage=storage,
            estimator_allowlist=allow,
            job_ttl_seconds=_int(env, "MLKUBE_JOB_TTL_SECONDS", 86400, minimum=0),
            default_backoff_limit=_int(env, "MLKUBE_JOB_BACKOFF_LIMIT", 1, minimum=0),
            default_active_deadline_seconds=_int(
                env, "MLKUBE_JOB_DEADLINE_SECONDS", 3600, minimum=1
            ),
            trainer_resources=trainer,
            predictor_resources=predictor,
            run_as_user=_int(env, "MLKUBE_RUN_AS_USER", 65532, minimum=1),
            metrics_port=_int(env, "MLKUBE_METRICS_PORT", 8000, minimum=0),
            namespaces=tuple(_csv(env.get("MLKUBE_NAMESPACES", ""))),
            workers=_int(env, "MLKUBE_WORKERS", 8, minimum=1),
            max_versions=_int(env, "MLKUBE_MAX_VERSIONS", 50, minimum=1),
            log_tail_lines=_int(env, "MLKUBE_LOG_TAIL_LINES", 20, minimum=0),
            leader_election=_bool(env, "MLKUBE_LEADER_ELECTION", False),
            leader_election_namespace=env.get("MLKUBE_LEADER_ELECTION_NAMESPACE")
            or _own_namespace(),
            leader_election_name=env.get("MLKUBE_LEADER_ELECTION_NAME") or "mlkube-operator",
            lease_duration_seconds=lease,
            renew_period_seconds=renew,
            max_training_jobs=_int(env, "MLKUBE_MAX_TRAINING_JOBS", 20, minimum=1),
            prune_store_versions=_bool(env, "MLKUBE_PRUNE_STORE_VERSIONS", False),
            allowed_internal_hosts=tuple(_csv(env.get("MLKUBE_ALLOWED_INTERNAL_HOSTS", ""))),
            **_s3_settings(env),
        )

    def replace(self, **changes: Any) -> OperatorSettings:
        """A copy with command-line flags applied over the environment."""
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values.update(changes)
        return OperatorSettings(**values)


def _s3_settings(env: Mapping[str, str]) -> dict[str, Any]:
    style = (env.get("MLKUBE_S3_ADDRESSING_STYLE") or "auto").strip().lower()
    if style not in S3_ADDRESSING_STYLES:
        raise SettingsError(f"MLKUBE_S3_ADDRESSING_STYLE={style!r}: expected auto, path or virtual")
    return {
        "s3_endpoint": (env.get("MLKUBE_S3_ENDPOINT") or "").strip().rstrip("/"),
        "s3_region": (env.get("MLKUBE_S3_REGION") or "").strip(),
        "s3_addressing_style": style,
        "s3_secret": (env.get("MLKUBE_S3_SECRET") or "").strip(),
        "s3_allowed_endpoints": tuple(
            e.rstrip("/") for e in _csv(env.get("MLKUBE_S3_ALLOWED_ENDPOINTS", ""))
        ),
        "pod_service_account": (env.get("MLKUBE_POD_SERVICE_ACCOUNT") or "").strip(),
    }


def _csv(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _override(
    resources: dict[str, dict[str, str]], env: Mapping[str, str], name: str, key: str
) -> None:
    value = env.get(name)
    if value:
        resources["requests"][key] = value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r}: expected true or false")


def _own_namespace() -> str:
    """The pod's namespace (its service account says it); ``default`` outside a pod."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or "default"
    except OSError:
        return "default"
