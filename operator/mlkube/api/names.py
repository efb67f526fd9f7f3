"""Names of the mlkube API and of the objects the operator derives from it.

Every child object has a deterministic name computed here, so a restarted operator
finds what it made instead of making it twice, and the drift checker (which runs in
another pod) computes the same TrainingJob names the operator would.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from mlkube.api.performance import LABELS_SUBDIR

GROUP: Final = "mlkube.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "mlkube"

MODEL: Final = "Model"
TRAINING_JOB: Final = "TrainingJob"
MONITOR: Final = "Monitor"

PLURALS: Final[dict[str, str]] = {
    MODEL: "models",
    TRAINING_JOB: "trainingjobs",
    MONITOR: "monitors",
}
SHORT_NAMES: Final[dict[str, str]] = {MODEL: "mlm", TRAINING_JOB: "tj", MONITOR: "mon"}

# Labels the operator puts on every child; selectors use them, so they never change.
LABEL_MODEL: Final = f"{GROUP}/model"
LABEL_COMPONENT: Final = f"{GROUP}/component"
LABEL_VERSION: Final = f"{GROUP}/version"
LABEL_TRAINING_JOB: Final = f"{GROUP}/training-job"
LABEL_MONITOR: Final = f"{GROUP}/monitor"
LABEL_TRIGGER: Final = f"{GROUP}/trigger"
# On a canary's pods only: which Deployment of the two owns them ("canary").
LABEL_TRACK: Final = f"{GROUP}/track"
TRACK_CANARY: Final = "canary"
COMPONENT_PREDICTOR: Final = "predictor"
# The canary's pods when a Gateway API route splits traffic: outside the stable Service.
COMPONENT_CANARY: Final = "predictor-canary"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
# A manual promotion's record, written with the pin by `kubectl mlkube promote`; the
# shipped ValidatingAdmissionPolicy refuses an approver who is not the requesting user.
APPROVED_BY: Final = f"{GROUP}/approved-by"
APPROVED_VERSION: Final = f"{GROUP}/approved-version"
APPROVAL_REASON: Final = f"{GROUP}/approval-reason"
# `kubectl mlkube rollout promote|abort` asks the operator to end a canary now:
# "<action>:<candidate version>", so a request for an older canary does nothing.
ROLLOUT_REQUEST: Final = f"{GROUP}/rollout-request"
MANAGED_BY: Final = "mlkube"

# A DNS-1123 label: what Kubernetes accepts for Service names, and what we accept for
# model names so that every derived child name is valid too.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_MODEL_NAME: Final = 40


def is_valid_model_name(name: str) -> bool:
    """True when ``name`` is a DNS label short enough for every derived child name."""
    return len(name) <= MAX_MODEL_NAME and bool(_DNS_LABEL.match(name))


def training_job_name(model: str, version: int) -> str:
    """The TrainingJob that produces ``version`` of ``model``: ``churn-v3``."""
    return f"{model}-v{version}"


def initial_training_job_name(model: str) -> str:
    """The Model's first run: a fixed name, so a restarted operator cannot make two."""
    return training_job_name(model, 1)


def scheduled_training_job_name(model: str, fire: datetime) -> str:
    """One name per schedule firing, so a restart re-finds the run instead of adding one."""
    return f"{model}-s{fire.astimezone(UTC):%y%m%d%H%M}"


def spec_change_training_job_name(model: str, generation: int) -> str:
    """The run training a Model's edited spec: one per generation of the Model."""
    return f"{model}-g{generation}"


def data_check_job_name(model: str, fire: datetime) -> str:
    """The Job checking a Model's data at one schedule firing (retrainWhen DataChanged)."""
    return f"{model}-c{fire.astimezone(UTC):%y%m%d%H%M}"


def data_change_training_job_name(model: str, fire: datetime) -> str:
    """The run a firing starts when its check found the data changed."""
    return f"{model}-d{fire.astimezone(UTC):%y%m%d%H%M}"


def drift_training_job_name(model: str, now: datetime, cooldown_seconds: float) -> str:
    """One name per model and cooldown period: concurrent drift checks collide on purpose."""
    period = max(int(cooldown_seconds), 60)
    start = int(now.timestamp()) // period * period
    return f"{model}-drift-{start}"


def job_name(training_job: str) -> str:
    """The batch/v1 Job that runs a TrainingJob's trainer."""
    return f"{training_job}-train"


def select_job_name(training_job: str) -> str:
    """The batch/v1 Job that picks a search's best trial once its trials Job has ended."""
    return f"{training_job}-select"


def predictor_name(model: str) -> str:
    """The Deployment, Service, HPA and PDB that serve a Model."""
    return f"{model}-predictor"


def canary_name(model: str) -> str:
    """The Deployment (and, behind a Gateway API route, the Service) of a canary."""
    return f"{model}-predictor-canary"


def route_name(model: str) -> str:
    """The Gateway API HTTPRoute that splits a Model's traffic by weight."""
    return f"{model}-predictor"


def drift_cronjob_name(monitor: str) -> str:
    """The CronJob that runs a Monitor's drift check."""
    return f"{monitor}-drift"


def drift_service_account_name(monitor: str) -> str:
    """The ServiceAccount (and Role, RoleBinding) the drift check runs under."""
    return f"{monitor}-drift"


def version_dir(namespace: str, model: str, version: int) -> str:
    """The store-relative directory of one version: ``<ns>/<model>/v<N>``."""
    return f"{namespace}/{model}/v{version}"


def search_dir(namespace: str, model: str, version: int) -> str:
    """The store-relative directory of the trials searching for one version:
    ``<ns>/<model>/search-v<N>``, beside the version so a rerun finds its trials."""
    return f"{namespace}/{model}/search-v{version}"


def inference_dir(namespace: str, model: str) -> str:
    """The store-relative directory the predictor logs sampled inferences to."""
    return f"{namespace}/{model}/inference"


def labels_dir(namespace: str, model: str) -> str:
    """The store-relative directory the predictor logs feedback labels to (in its log)."""
    return f"{inference_dir(namespace, model)}/{LABELS_SUBDIR}"


def drift_reports_dir(namespace: str, model: str) -> str:
    """The store-relative directory a Monitor's drift reports go to (beside the log)."""
    return f"{namespace}/{model}/drift"


def model_dir(namespace: str, model: str) -> str:
    """The store-relative directory holding every version of one Model."""
    return f"{namespace}/{model}"
