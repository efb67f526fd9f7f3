"""Pure builders of every child manifest: functions of the owner, its spec and the settings.

They do no I/O, so each is unit-tested without a cluster, and a restarted operator
computes byte-for-byte the same children (and names) it computed before.
"""

from mlkube.controller.builders.monitor import build_drift_cronjob, build_drift_rbac
from mlkube.controller.builders.predictor import (
    build_predictor_deployment,
    build_predictor_hpa,
    build_predictor_pdb,
    build_predictor_service,
    predictor_endpoint,
)
from mlkube.controller.builders.training import (
    build_data_check_job,
    build_select_job,
    build_trainer_job,
)

__all__ = [
    "build_data_check_job",
    "build_drift_cronjob",
    "build_drift_rbac",
    "build_predictor_deployment",
    "build_predictor_hpa",
    "build_predictor_pdb",
    "build_predictor_service",
    "build_select_job",
    "build_trainer_job",
    "predictor_endpoint",
]
