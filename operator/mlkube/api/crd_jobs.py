"""Schemas of the TrainingJob and Monitor resources."""

from __future__ import annotations

from typing import Final

from mlkube.api.crd_common import (
    CRON_RULE,
    DURATION_PATTERN,
    common_status,
    data_uri_path_rule,
    lineage_schema,
    metrics_map,
    model_ref,
    slice_results,
)
from mlkube.api.crd_model import training_schema
from mlkube.api.crd_performance import (
    live_rows_spec,
    performance_spec,
    performance_status,
    prediction_drift_status,
    retrain_on,
)
from mlkube.api.openapi import (
    Schema,
    array,
    boolean,
    integer,
    map_of,
    number,
    obj,
    rule,
    string,
)
from mlkube.api.search import MAX_TRIALS
from mlkube.api.status import TrialStatus, Trigger, Verdict


def training_job_schemas() -> tuple[Schema, Schema]:
    spec = obj(
        "One training run of a Model; it produces one version.",
        {
            "modelRef": model_ref(),
            "trigger": string(
                "Why the run exists.",
                enum=[t.value for t in Trigger],
                default="manual",
            ),
            "reason": string("Free text: what prompted the run.", max_length=2048),
            "overrides": training_schema(for_overrides=True),
            "liveRows": live_rows_spec(),
        },
        required=["modelRef"],
    )
    status = obj(
        "State of the run, written by the operator only.",
        {
            **common_status(),
            "version": integer("Version number allocated to this run.", minimum=1),
            "modelGeneration": integer(
                "Generation of the Model whose spec the run trains.", minimum=0
            ),
            "specDigest": string("Digest of the training spec the run trains.", max_length=64),
            "lineage": lineage_schema(),
            "jobName": string("The batch/v1 Job running the trainer."),
            "metric": string("Metric the score is.", max_length=32),
            "higherIsBetter": boolean("Whether a larger score is better."),
            "score": number("Validation score."),
            "metrics": metrics_map("Validation metrics"),
            "slices": slice_results(),
            "artifact": obj(
                "The version written to the store.",
                {
                    "uri": string("Location of the version directory.", max_length=2048),
                    "sha256": string(
                        "sha256 of the artifact.", pattern=r"^[0-9a-f]{64}$", max_length=64
                    ),
                    "onnxSha256": string(
                        "sha256 of the verified ONNX form, if any.",
                        pattern=r"^[0-9a-f]{64}$",
                        max_length=64,
                    ),
                },
            ),
            "startTime": string("When the run started.", fmt="date-time", max_length=64),
            "completionTime": string("When the run ended.", fmt="date-time", max_length=64),
            "attempts": integer("Pods started for this run.", minimum=0),
            "message": string("Outcome, or why it failed (with a log tail).", max_length=8192),
            "trials": obj(
                "How the trials of a search ended so far.",
                {
                    "total": integer("Trials in the search.", minimum=0),
                    "succeeded": integer("Trials that scored on every fold.", minimum=0),
                    "failed": integer("Trials that failed.", minimum=0),
                },
            ),
            "bestTrial": integer("Index of the best completed trial so far.", minimum=0),
            "bestScore": number("Its mean score over the folds."),
            "trialResults": array(
                "Every trial that has ended, in index order.",
                obj(
                    "One trial.",
                    {
                        "trial": integer("Index of the trial.", minimum=0),
                        "estimator": string("Estimator class (short name).", max_length=128),
                        "params": string("Its parameters as name=value.", max_length=512),
                        "status": string(
                            "Completed or Failed.", enum=[s.value for s in TrialStatus]
                        ),
                        "score": number("Mean of the metric over the folds."),
                        "fitSeconds": number("Seconds the trial took.", minimum=0),
                        "pipeline": boolean(
                            "Whether it kept its pipeline fitted on all training rows "
                            "(false: a trial recorded before it ranked above it)."
                        ),
                        "error": string("Why it failed.", max_length=300),
                    },
                ),
                max_items=MAX_TRIALS,
                list_type="atomic",
            ),
        },
    )
    return spec, status


_DRIFT_METHODS: Final = ("auto", "psi", "ks", "wasserstein", "jensenshannon", "chi2")


def monitor_schemas() -> tuple[Schema, Schema]:
    method = string(
        "Statistical test; auto picks by sample size as Evidently does "
        "(KS/chi-square for small reference sets, Wasserstein/Jensen-Shannon for large).",
        enum=list(_DRIFT_METHODS),
    )
    spec = obj(
        "A periodic drift and data-quality check over a Model's logged inferences.",
        {
            "modelRef": model_ref(),
            "schedule": string(
                "Cron schedule of the check.", default="*/30 * * * *", max_length=100
            ),
            "suspend": boolean("Pause the checks without deleting the Monitor.", default=False),
            "window": obj(
                "Which logged rows a check looks at.",
                {
                    "duration": string(
                        "How far back from the check, e.g. 30m, 24h, 7d.",
                        pattern=DURATION_PATTERN,
                        default="24h",
                        max_length=32,
                    ),
                    "minSamples": integer(
                        "Fewest rows for a verdict; below it the result is insufficient data.",
                        minimum=1,
                        default=500,
                    ),
                },
            ),
            "data": obj(
                "Check a table instead of the inference log (batch monitoring).",
                {
                    "uri": string(
                        "Location of the live table, as training data URIs.", max_length=2048
                    )
                },
                required=["uri"],
                rules=[data_uri_path_rule("spec.data.uri")],
            ),
            "drift": obj(
                "How drift is measured and when the dataset counts as drifted.",
                {
                    "numeric": {**method, "default": "auto"},
                    "categorical": {**method, "default": "auto"},
                    "threshold": number(
                        "Score threshold of the chosen test (p-value for ks/chi2); "
                        "the test's usual default when omitted.",
                        minimum=0,
                    ),
                    "datasetDriftShare": number(
                        "Share of drifted features at which the dataset counts as drifted.",
                        minimum=0,
                        maximum=1,
                        default=0.5,
                    ),
                    "features": map_of(
                        "Per-feature overrides of method and threshold.",
                        obj(
                            "Override for one feature.",
                            {"method": method, "threshold": number("Threshold.", minimum=0)},
                        ),
                        max_properties=2000,
                    ),
                },
            ),
            "dataQuality": obj(
                "Data-quality checks on the live rows.",
                {
                    "maxMissingFraction": number(
                        "Largest share of missing values allowed per feature.",
                        minimum=0,
                        maximum=1,
                        default=0.05,
                    )
                },
            ),
            "action": string(
                "What drift leads to: retrain creates a TrainingJob; alert only reports.",
                enum=["retrain", "alert"],
                default="retrain",
            ),
            "performance": performance_spec(),
            "retrainOn": retrain_on(),
            "cooldown": string(
                "Least time between two TrainingJobs this Monitor opens (drift or performance).",
                pattern=DURATION_PATTERN,
                default="6h",
                max_length=32,
            ),
        },
        required=["modelRef"],
        rules=[
            rule(
                CRON_RULE,
                "spec.schedule must be a cron expression with five fields "
                "or @hourly/@daily/@weekly/@monthly/@yearly",
                field_path=".schedule",
            )
        ],
    )
    feature_result = obj(
        "Drift result for one feature.",
        {
            "method": string("Test used.", max_length=32),
            "score": number("Test statistic or distance."),
            "threshold": number("Threshold it was compared with."),
            "drifted": boolean("Whether the feature drifted."),
        },
    )
    status = obj(
        "Result of the latest check, written by the operator and the drift checker only.",
        {
            **common_status(),
            "cronJobName": string("The CronJob running the checks."),
            "lastCheckTime": string("When the last check ran.", fmt="date-time", max_length=64),
            "checkedVersion": integer("Model version the last check compared with.", minimum=1),
            "verdict": string("Outcome of the last check.", enum=[v.value for v in Verdict]),
            "samples": integer("Live rows in the last window.", minimum=0, fmt="int64"),
            "datasetDrift": boolean("Whether the dataset drifted."),
            "driftShare": number("Share of features that drifted.", minimum=0, maximum=1),
            "features": map_of(
                "Most drifted features of the last check (bounded).",
                feature_result,
                max_properties=64,
            ),
            "lastReport": string("Location of the last JSON report.", max_length=2048),
            "lastTrainingJob": string("Last TrainingJob this Monitor created."),
            "dataQuality": obj(
                "Data quality of the last window: missing values, empty columns, non-numbers, "
                "unseen categories.",
                {
                    "violations": integer("Findings in the last window.", minimum=0),
                    "findings": array(
                        "The first findings (bounded).",
                        obj(
                            "One finding.",
                            {
                                "feature": string("Feature.", max_length=256),
                                "finding": string("What was found.", max_length=64),
                                "value": number("Measured value (share or count)."),
                                "limit": number("The Monitor's limit, if any."),
                            },
                        ),
                        max_items=10,
                    ),
                },
            ),
            "performance": performance_status(),
            "predictionDrift": prediction_drift_status(),
            "lastRetrainTime": string(
                "When this Monitor last created a TrainingJob.", fmt="date-time", max_length=64
            ),
        },
    )
    return spec, status
