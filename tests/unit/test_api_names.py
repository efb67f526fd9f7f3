"""Deterministic child names and model-name validation."""

from __future__ import annotations

import pytest

from mlkube.api import names


def test_child_names_are_deterministic() -> None:
    assert names.training_job_name("churn", 3) == "churn-v3"
    assert names.job_name("churn-v3") == "churn-v3-train"
    assert names.predictor_name("churn") == "churn-predictor"
    assert names.drift_cronjob_name("churn") == "churn-drift"
    assert names.version_dir("prod", "churn", 2) == "prod/churn/v2"
    assert names.inference_dir("prod", "churn") == "prod/churn/inference"


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("churn", True),
        ("a", True),
        ("churn-2", True),
        ("Churn", False),
        ("-churn", False),
        ("churn-", False),
        ("ch_urn", False),
        ("../etc", False),
        ("x" * 40, True),
        ("x" * 41, False),
    ],
)
def test_model_name_validation(name: str, valid: bool) -> None:
    assert names.is_valid_model_name(name) is valid
