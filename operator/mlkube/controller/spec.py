"""Reading the user's objects: effective training spec, storage, checks the schema cannot do.

Pure functions over plain dicts (the bodies kopf hands over), so the reconcilers and the
builders agree on one interpretation of a spec.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from croniter import croniter

from mlkube.api import names
from mlkube.api.resources import Body
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
    """Where a Model's versions live: a claim (mounted at /mnt/store) and a prefix in it."""

    scheme: str
    location: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.location}" + (f"/{self.prefix}" if self.prefix else "")

    @property
    def mount_path(self) -> str:
        """The store root inside a pod: the claim's mount plus the prefix."""
        return "/mnt/store" + (f"/{self.prefix}" if self.prefix else "")


def parse_storage_uri(uri: str) -> Storage:
    scheme, _, rest = uri.partition("://")
    location, _, prefix = rest.partition("/")
    return Storage(scheme=scheme, location=location, prefix=prefix.strip("/"))


def storage_of(model: Body, settings: OperatorSettings) -> Storage:
    uri = (spec_of(model).get("storage") or {}).get("uri") or settings.default_storage
    return parse_storage_uri(str(uri))


def data_claim(training: Mapping[str, Any]) -> str | None:
    """The claim holding the training data when it comes from ``pvc://claim/path``."""
    uri = str((training.get("data") or {}).get("uri", ""))
    if not uri.startswith("pvc://"):
        return None
    return uri[len("pvc://") :].split("/", 1)[0] or None


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
    estimator = str((training.get("estimator") or {}).get("class", ""))
    if not estimator:
        return "spec.training.estimator.class is missing"
    if not estimator.startswith(settings.estimator_allowlist):
        allowed = ", ".join(settings.estimator_allowlist)
        return (
            f"estimator {estimator!r} is outside the operator's allow-list ({allowed}); "
            "ask the administrator to extend MLKUBE_ESTIMATOR_ALLOWLIST"
        )
    data = training.get("data") or {}
    if not data.get("uri") or not data.get("target"):
        return "spec.training.data needs uri and target"
    if str(data["uri"]).startswith("pvc://") and _escapes(str(data["uri"])[len("pvc://") :]):
        return (
            f"spec.training.data.uri {data['uri']!r}: '..' and '.' segments are not allowed; "
            "name a path inside the claim"
        )
    return storage_problem(model, settings)


def _escapes(path: str) -> bool:
    """True when a ``/``-separated path has ``.`` or ``..`` segments (could leave its root)."""
    return any(part in (".", "..") for part in path.split("/"))


def storage_problem(model: Body, settings: OperatorSettings) -> str | None:
    storage = storage_of(model, settings)
    if _escapes(storage.prefix):
        return (
            f"storage {storage.uri!r}: '..' and '.' segments are not allowed in the prefix; "
            "use spec.storage.uri: pvc://<claim>[/prefix]"
        )
    if storage.scheme != "pvc":
        return (
            f"storage {storage.uri!r}: only pvc:// stores can be mounted into pods so far; "
            "use spec.storage.uri: pvc://<claim>[/prefix]"
        )
    return None
