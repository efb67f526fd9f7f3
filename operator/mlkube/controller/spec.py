"""Reading the user's objects: effective training spec, storage, checks the schema cannot do.

Pure functions over plain dicts (the bodies kopf hands over), so the reconcilers and the
builders agree on one interpretation of a spec.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from croniter import croniter

from mlkube.api import names
from mlkube.api.resources import Body
from mlkube.api.search import SearchSpecError, search_trial_count
from mlkube.controller.settings import OperatorSettings


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: maps merge key by key, everything else is replaced."""
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def name_of(body: Body) -> str:
    return str(body["metadata"]["name"])


def namespace_of(body: Body) -> str:
    return str(body["metadata"].get("namespace") or "default")


def generation_of(body: Body) -> int:
    return int(body["metadata"].get("generation") or 0)


def spec_of(body: Body) -> Mapping[str, Any]:
    return body.get("spec") or {}


def status_of(body: Body) -> Mapping[str, Any]:
    return body.get("status") or {}


def model_ref(body: Body) -> str:
    """The Model a TrainingJob or Monitor belongs to."""
    return str((spec_of(body).get("modelRef") or {}).get("name", ""))


# What decides what a run trains. Placement (resources, nodeSelector, tolerations), retries
# and the schedule change how or when it runs, not the model, so editing them trains nothing.
TRAINING_FIELDS: Final = ("estimator", "data", "validation", "dataQuality")


def training_digest(model: Body) -> str:
    """A digest of the parts of a Model's spec that change what training produces."""
    training = spec_of(model).get("training") or {}
    material = {
        "task": spec_of(model).get("task"),
        **{key: training.get(key) for key in TRAINING_FIELDS},
    }
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()[:32]


def effective_training(model: Body, training_job: Body | None) -> dict[str, Any]:
    """The Model's training template with the TrainingJob's overrides deep-merged over it."""
    template = spec_of(model).get("training") or {}
    overrides = spec_of(training_job).get("overrides") or {} if training_job else {}
    return deep_merge(template, overrides)


def effective_model_manifest(model: Body, training_job: Body | None) -> dict[str, Any]:
    """What the trainer receives with ``--model-json``: a Model manifest it can parse."""
    spec = spec_of(model)
    return {
        "apiVersion": model.get("apiVersion", "mlkube.io/v1alpha1"),
        "kind": "Model",
        "metadata": {"name": name_of(model), "namespace": namespace_of(model)},
        "spec": {"task": spec.get("task"), "training": effective_training(model, training_job)},
    }


@dataclass(frozen=True)
class Storage:
    """Where a Model's versions live: a claim (mounted at /mnt/store) or a bucket, and a
    prefix in it; for a bucket, how pods reach it and with which credentials."""

    scheme: str
    location: str
    prefix: str
    endpoint: str = ""
    region: str = ""
    addressing_style: str = "auto"
    secret: str = ""
    service_account: str = ""

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.location}" + (f"/{self.prefix}" if self.prefix else "")

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    @property
    def mount_path(self) -> str:
        """The store root inside a pod: the claim's mount plus the prefix."""
        return "/mnt/store" + (f"/{self.prefix}" if self.prefix else "")

    @property
    def root(self) -> str:
        """The store root as a pod names it: the mount path, or the bucket's URI."""
        return self.uri if self.is_s3 else self.mount_path


def parse_storage_uri(uri: str) -> Storage:
    scheme, _, rest = uri.partition("://")
    location, _, prefix = rest.partition("/")
    return Storage(scheme=scheme, location=location, prefix=prefix.strip("/"))


def storage_of(model: Body, settings: OperatorSettings) -> Storage:
    """The Model's store, with the operator's S3 defaults where the Model sets none."""
    spec = spec_of(model).get("storage") or {}
    storage = parse_storage_uri(str(spec.get("uri") or settings.default_storage))
    if not storage.is_s3:
        return storage
    own = bool(spec.get("uri"))
    secret = (spec.get("secretRef") or {}).get("name") or ("" if own else settings.s3_secret)
    return replace(
        storage,
        endpoint=str(spec.get("endpoint") or settings.s3_endpoint).rstrip("/"),
        region=str(spec.get("region") or settings.s3_region),
        addressing_style=str(spec.get("addressingStyle") or settings.s3_addressing_style),
        secret=str(secret),
        service_account=str(spec.get("serviceAccountName") or settings.pod_service_account),
    )


def data_claim(training: Mapping[str, Any]) -> str | None:
    """The claim holding the training data when it comes from ``pvc://claim/path``."""
    uri = str((training.get("data") or {}).get("uri", ""))
    if not uri.startswith("pvc://"):
        return None
    return uri[len("pvc://") :].split("/", 1)[0] or None


_QUANTITY_SUFFIXES: Final = {
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}


def quantity(value: Any) -> Decimal:
    """A Kubernetes resource quantity ("500m", "2", "1.5Gi") as a number; ValueError if not."""
    text = str(value).strip()
    for suffix in sorted(_QUANTITY_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            return Decimal(text[: -len(suffix)]) * _QUANTITY_SUFFIXES[suffix]
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a resource quantity") from None


def effective_resources(
    requested: Mapping[str, Any] | None, default: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Requests as given (else the default); limits as given, with the default CPU and
    memory limits filled in where the spec names none, raised to the request if it is higher.

    So a spec that only asks for a GPU still gets bounded CPU and memory.
    """
    requested = requested or {}
    requests = dict(requested.get("requests") or default.get("requests") or {})
    limits = dict(requested.get("limits") or {})
    for key, bound in (default.get("limits") or {}).items():
        if key in limits:
            continue
        try:
            raise_to_request = key in requests and quantity(requests[key]) > quantity(bound)
        except ValueError:
            raise_to_request = False
        limits[key] = requests[key] if raise_to_request else bound
    return {"requests": requests, "limits": limits}


def n_jobs_problem(training: Mapping[str, Any], default: Mapping[str, Any]) -> str | None:
    """``n_jobs`` beyond the trainer's CPU limit would oversubscribe it (or, at -1, ask for
    every core of the node): refused, with the largest value that fits."""
    n_jobs = ((training.get("estimator") or {}).get("params") or {}).get("n_jobs")
    if n_jobs is None:
        return None
    limit = effective_resources(training.get("resources"), default)["limits"].get("cpu")
    try:
        cores = max(1, math.ceil(quantity(limit))) if limit is not None else None
    except ValueError:
        return None  # the API server refuses a bad quantity itself
    if cores is not None and (not isinstance(n_jobs, int) or n_jobs < 1 or n_jobs > cores):
        return (
            f"estimator param n_jobs={n_jobs!r} exceeds the trainer's CPU limit ({limit}); "
            f"set n_jobs between 1 and {cores}, or raise spec.training.resources.limits.cpu"
        )
    return None


def training_problem(
    model: Body, training_job: Body | None, settings: OperatorSettings
) -> str | None:
    """Why this training can never run (checks the schema cannot do), or None."""
    name = str((model.get("metadata") or {}).get("name", ""))
    if not names.is_valid_model_name(name):
        return (
            f"Model name {name!r} is too long for the names derived from it: use a DNS label "
            f"of at most {names.MAX_MODEL_NAME} characters"
        )
    training = effective_training(model, training_job)
    schedule = training.get("schedule")
    if schedule and not croniter.is_valid(str(schedule)):
        return f"spec.training.schedule {schedule!r} is not a valid cron expression"
    problem = estimator_problem(training, settings)
    if problem is not None:
        return problem
    data = training.get("data") or {}
    if not data.get("uri") or not data.get("target"):
        return "spec.training.data needs uri and target"
    for estimator in _estimators(training):
        jobs = n_jobs_problem({**training, "estimator": estimator}, settings.trainer_resources)
        if jobs is not None:
            return jobs
    if str(data["uri"]).startswith("pvc://") and _escapes(
        str(data["uri"])[len("pvc://") :], empty=True
    ):
        return (
            f"spec.training.data.uri {data['uri']!r}: '..' and '.' segments (and empty ones) "
            "are not allowed; name a path inside the claim"
        )
    return storage_problem(model, settings)


def _estimators(training: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The estimator, or each candidate of a search once per value of a gridded n_jobs."""
    search = training.get("search")
    if not search:
        return [dict(training.get("estimator") or {})]
    found = []
    for candidate in search.get("candidates") or []:
        params = dict(candidate.get("params") or {})
        for n_jobs in (candidate.get("grid") or {}).get("n_jobs") or [params.get("n_jobs")]:
            found.append({"params": {**params, "n_jobs": n_jobs}})
    return found


def estimator_problem(training: Mapping[str, Any], settings: OperatorSettings) -> str | None:
    """An estimator, or a search whose trials fit in one Indexed Job, all allow-listed."""
    classes = [str((training.get("estimator") or {}).get("class", ""))]
    search = training.get("search")
    if search:
        try:
            search_trial_count(search)
        except SearchSpecError as error:
            return str(error)
        classes = [str(c.get("class", "")) for c in search.get("candidates") or []]
    elif not classes[0]:
        return "spec.training.estimator.class is missing"
    for estimator in classes:
        if not estimator.startswith(settings.estimator_allowlist):
            allowed = ", ".join(settings.estimator_allowlist)
            return (
                f"estimator {estimator!r} is outside the operator's allow-list ({allowed}); "
                "ask the administrator to extend MLKUBE_ESTIMATOR_ALLOWLIST"
            )
    return None


def _escapes(path: str, *, empty: bool = False) -> bool:
    """True when a ``/``-separated path has ``.`` or ``..`` segments (could leave its root),
    or, with ``empty``, an empty one (``claim//etc`` names an absolute path after the claim)."""
    bad = (".", "..", "") if empty else (".", "..")
    return any(part in bad for part in path.split("/"))


def storage_problem(model: Body, settings: OperatorSettings) -> str | None:
    storage = storage_of(model, settings)
    if _escapes(storage.prefix):
        return (
            f"storage {storage.uri!r}: '..' and '.' segments are not allowed in the prefix; "
            "use spec.storage.uri: pvc://<claim>[/prefix]"
        )
    if storage.is_s3 and (spec_of(model).get("training") or {}).get("search"):
        return (
            f"storage {storage.uri!r}: a model search spreads its trials over pods that share "
            "the store's directory, so it needs a pvc:// store (or `mlkube train` on a laptop)"
        )
    if storage.is_s3:
        return _s3_problem(storage, settings)
    return None


def _s3_problem(storage: Storage, settings: OperatorSettings) -> str | None:
    """An endpoint is where every pod of the Model connects: only the operator's own or one
    it allows, so a Model cannot point pods (and their credentials) at an internal service."""
    allowed = {settings.s3_endpoint, *settings.s3_allowed_endpoints} - {""}
    if storage.endpoint and storage.endpoint not in allowed:
        return (
            f"storage endpoint {storage.endpoint!r} is not one the operator allows; "
            f"allowed: {', '.join(sorted(allowed)) or 'none (the default AWS endpoint only)'} "
            "(MLKUBE_S3_ENDPOINT, MLKUBE_S3_ALLOWED_ENDPOINTS)"
        )
    if not storage.location:
        return f"storage {storage.uri!r}: the bucket is missing; use s3://<bucket>[/prefix]"
    return None
