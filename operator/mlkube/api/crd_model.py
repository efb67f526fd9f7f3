"""Schema of the Model resource's spec: the training template, promotion, serving.

The status (the version registry) is in ``crd_status``."""

from __future__ import annotations

from mlkube.api.crd_common import (
    CLASSIFICATION_METRICS,
    CRON_RULE,
    DATA_URI_SCHEMES,
    REGRESSION_METRICS,
    cel_list,
    data_uri_path_rule,
    placement_schemas,
    resources_schema,
)
from mlkube.api.crd_performance import live_data_spec
from mlkube.api.crd_rollout import rollout_spec_schema
from mlkube.api.crd_search import search_schema
from mlkube.api.datacheck import RetrainWhen
from mlkube.api.openapi import (
    Schema,
    array,
    free_object,
    integer,
    number,
    obj,
    rule,
    string,
)


def _slice_schema() -> Schema:
    return obj(
        "A subset of the test rows scored on its own, such as one customer segment.",
        {
            "name": string(
                "Name of the slice, unique within the model.",
                pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$",
                max_length=63,
            ),
            "query": string(
                'Filter over feature columns, e.g. age > 50 and region == "north". '
                "Supports comparisons, in [...], and, or, not and parentheses.",
                min_length=1,
                max_length=1024,
            ),
            "minScore": number(
                "Smallest acceptable value of the validation metric on this slice "
                "(largest for error metrics such as rmse); a version below it is not promoted."
            ),
        },
        required=["name", "query"],
    )


def training_schema(*, for_overrides: bool = False) -> Schema:
    """``spec.training`` of a Model; with ``for_overrides`` the same fields, none required."""
    estimator = obj(
        "The scikit-learn estimator to fit, by import path, and its constructor parameters.",
        {
            "class": string(
                "Import path of the estimator, e.g. sklearn.ensemble.RandomForestClassifier. "
                "Must be inside the operator's allow-list (default: sklearn.).",
                pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$",
            ),
            "params": free_object(
                "Constructor parameters, checked against the estimator's get_params()."
            ),
        },
        required=[] if for_overrides else ["class"],
    )
    data = obj(
        "Where the training table comes from and which column is the target.",
        {
            "uri": string(
                "Location of the data: pvc://claim/path, s3://bucket/key, https://host/path "
                "or sklearn://<dataset> (iris, wine, breast_cancer, diabetes, digits).",
                min_length=1,
                max_length=2048,
            ),
            "target": string("Column holding the label to predict.", min_length=1),
            "features": array(
                "Feature columns to use; all other columns when omitted.",
                string("Column name.", min_length=1),
                max_items=2000,
                list_type="set",
            ),
            "format": string(
                "File format; inferred from the file extension when omitted.",
                enum=["csv", "parquet", "jsonl"],
            ),
        },
        required=[] if for_overrides else ["uri", "target"],
        rules=[
            rule(
                "!has(self.uri) || self.uri.matches('^("
                + "|".join(DATA_URI_SCHEMES)
                + ")://[^/].*$')",
                "spec.training.data.uri must start with pvc://, s3://, https:// or sklearn://",
                field_path=".uri",
            ),
            data_uri_path_rule("spec.training.data.uri"),
        ],
    )
    validation = obj(
        "How a trained version is scored before it may be promoted.",
        {
            "testFraction": number(
                "Share of rows held out for testing (stratified for classification).",
                default=0.2,
            ),
            "folds": integer(
                "Number of cross-validation folds reported beside the holdout score; 0 for none.",
                minimum=0,
                maximum=20,
                default=0,
            ),
            "metric": string(
                "Metric the version is judged by. Classification: "
                + ", ".join(CLASSIFICATION_METRICS)
                + " (default f1). Regression: "
                + ", ".join(REGRESSION_METRICS)
                + " (default r2).",
                enum=[*CLASSIFICATION_METRICS, *REGRESSION_METRICS],
            ),
            "randomSeed": integer(
                "Seed for the split and the estimator, so a run can be repeated.", minimum=0
            ),
            "slices": array(
                "Segments scored on their own, each with an optional minimum.",
                _slice_schema(),
                max_items=32,
                map_keys=["name"],
            ),
        },
        rules=[
            rule(
                "!has(self.testFraction) || (self.testFraction > 0.0 && self.testFraction < 1.0)",
                "spec.training.validation.testFraction must be between 0 and 1 (exclusive)",
                field_path=".testFraction",
            ),
            rule(
                "!has(self.folds) || self.folds == 0 || self.folds >= 2",
                "spec.training.validation.folds must be 0 (no cross-validation) or at least 2",
                field_path=".folds",
            ),
        ],
    )
    data_quality = obj(
        "Checks on the training data before fitting; a failing check fails the run.",
        {
            "maxMissingFraction": number(
                "Largest share of missing values allowed in any used column.",
                minimum=0,
                maximum=1,
                default=0.05,
            ),
            "minRows": integer("Fewest rows the data must have.", minimum=2, default=20),
        },
    )
    fields: dict[str, Schema] = {
        "estimator": estimator,
        "data": data,
        "validation": validation,
        "dataQuality": data_quality,
        "search": search_schema(),
    }
    if not for_overrides:
        fields.update(
            {
                "schedule": string(
                    "Cron schedule for periodic retraining (e.g. '0 3 * * 0'); none when omitted.",
                    max_length=100,
                ),
                "retrainWhen": string(
                    "What a schedule firing does. Scheduled: it trains. DataChanged: a Job "
                    "reads the data first, and a run (trigger data-change) starts only when "
                    "its sha256 differs from the last trained version's.",
                    enum=[w.value for w in RetrainWhen],
                    default=RetrainWhen.SCHEDULED.value,
                ),
                "resources": resources_schema("trainer"),
                "liveData": live_data_spec(),
                **placement_schemas("trainer"),
                "backoffLimit": integer(
                    "Retries of a failed training pod before the run fails.",
                    minimum=0,
                    maximum=10,
                    default=1,
                ),
                "activeDeadlineSeconds": integer(
                    "Longest a training run may take before it is stopped.",
                    minimum=30,
                    fmt="int64",
                    default=3600,
                ),
            }
        )
    return obj(
        "Overrides of the Model's training template for this run only."
        if for_overrides
        else "Template for every TrainingJob of this model.",
        fields,
        required=[] if for_overrides else ["data"],
        rules=[]
        if for_overrides
        else [
            rule(
                "has(self.estimator) || has(self.search)",
                "spec.training needs an estimator or a search",
                field_path=".estimator",
            ),
            rule(
                CRON_RULE,
                "spec.training.schedule must be a cron expression with five fields "
                "or @hourly/@daily/@weekly/@monthly/@yearly",
                field_path=".schedule",
            ),
        ],
    )


def model_spec_schema() -> Schema:
    metric = "self.training.validation.metric"
    has_metric = "has(self.training.validation) && has(self.training.validation.metric)"
    error_metrics = "['rmse', 'mae', 'log_loss']"
    return obj(
        "What to train, how to judge it, and how to serve it.",
        {
            "task": string(
                "Kind of prediction: a class label or a number.",
                enum=["classification", "regression"],
            ),
            "storage": obj(
                "Where versions (artifacts and metadata) and inference logs are kept; "
                "the operator's default store when omitted.",
                {
                    "uri": string(
                        "pvc://<claim>[/prefix] or s3://<bucket>[/prefix].",
                        pattern=r"^(pvc|s3)://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/.*)?$",
                        max_length=1024,
                    ),
                    "secretRef": obj(
                        "s3:// only: the Secret whose keys AWS_ACCESS_KEY_ID, "
                        "AWS_SECRET_ACCESS_KEY (and optional AWS_SESSION_TOKEN) become the "
                        "pods' environment; never copied into status, Events or logs. "
                        "Without it, the pods' own identity (serviceAccountName).",
                        {"name": string("Name of the Secret in the Model's namespace.")},
                        required=["name"],
                    ),
                    "endpoint": string(
                        "s3:// only: the S3 endpoint URL (MinIO, Ceph RGW, R2, GCS "
                        "interoperability); the operator's default when omitted, and only "
                        "endpoints the operator allows are accepted.",
                        pattern=r"^https?://[^\s/]+(/\S*)?$",
                        max_length=512,
                    ),
                    "region": string("s3:// only: the bucket's region.", max_length=64),
                    "addressingStyle": string(
                        "s3:// only: path (MinIO and most self-hosted stores), virtual "
                        "(bucket in the host name) or auto.",
                        enum=["auto", "path", "virtual"],
                    ),
                    "serviceAccountName": string(
                        "s3:// only: the service account of trainer and predictor pods, "
                        "for IRSA, EKS Pod Identity or GKE Workload Identity.",
                        max_length=253,
                    ),
                },
                required=["uri"],
            ),
            "training": training_schema(),
            "promotion": obj(
                "When a newly trained version replaces the serving one.",
                {
                    "policy": string(
                        "auto: promote a version that passes every check; manual: only "
                        "spec.serving.version changes what serves.",
                        enum=["auto", "manual"],
                        default="auto",
                    ),
                    "minScore": number(
                        "Smallest acceptable validation score (largest for error metrics)."
                    ),
                    "maxRegression": number(
                        "Largest allowed drop of the score against the serving version.",
                        minimum=0,
                        default=0,
                    ),
                },
            ),
            "serving": obj(
                "How the serving version is run: predictor Deployment, Service, autoscaler.",
                {
                    "version": integer(
                        "Pin the serving version (manual promotion or rollback); "
                        "the promoted version when omitted.",
                        minimum=1,
                    ),
                    "autoscaling": obj(
                        "HorizontalPodAutoscaler of the predictor.",
                        {
                            "minReplicas": integer(
                                "Fewest predictor replicas.", minimum=1, maximum=1000, default=1
                            ),
                            "maxReplicas": integer(
                                "Most predictor replicas.", minimum=1, maximum=1000, default=3
                            ),
                            "targetCPUUtilizationPercentage": integer(
                                "Average CPU use (of requests) the autoscaler aims for.",
                                minimum=1,
                                maximum=100,
                                default=70,
                            ),
                        },
                        rules=[
                            rule(
                                "!has(self.minReplicas) || !has(self.maxReplicas) "
                                "|| self.minReplicas <= self.maxReplicas",
                                "spec.serving.autoscaling.minReplicas must not exceed maxReplicas",
                                field_path=".minReplicas",
                            )
                        ],
                    ),
                    "rollout": rollout_spec_schema(),
                    "workers": integer(
                        "Server worker processes per predictor pod.", minimum=1, maximum=32
                    ),
                    "resources": resources_schema("predictor"),
                    **placement_schemas("predictor"),
                    "inferenceLogging": obj(
                        "Sampling of requests and responses into the store, read by Monitors.",
                        {
                            "sampleRate": number(
                                "Share of requests logged, 0 to 1.",
                                minimum=0,
                                maximum=1,
                                default=0.1,
                            )
                        },
                    ),
                },
            ),
        },
        required=["task", "training"],
        rules=[
            rule(
                f"!({has_metric}) || (self.task == 'classification' ? "
                f"{metric} in {cel_list(CLASSIFICATION_METRICS)} : "
                f"{metric} in {cel_list(REGRESSION_METRICS)})",
                "spec.training.validation.metric must suit spec.task: "
                + "/".join(CLASSIFICATION_METRICS)
                + " for classification, "
                + "/".join(REGRESSION_METRICS)
                + " for regression",
                field_path=".training.validation.metric",
            ),
            rule(
                "!has(self.training.validation) || !has(self.training.validation.slices) || "
                "self.training.validation.slices.all(s, !has(s.minScore) || "
                f"(({has_metric} && {metric} in {error_metrics}) ? s.minScore >= 0.0 : "
                f"(({has_metric} ? {metric} == 'r2' : self.task == 'regression') ? "
                "s.minScore <= 1.0 : (s.minScore >= 0.0 && s.minScore <= 1.0))))",
                "spec.training.validation.slices[].minScore is outside the metric's range "
                "(0..1 for scores, <= 1 for r2, >= 0 for errors)",
                field_path=".training.validation.slices",
            ),
        ],
    )
