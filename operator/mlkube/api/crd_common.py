"""Schema pieces shared by the three CRDs: resources, placement, conditions, status parts."""

from __future__ import annotations

from typing import Final

from mlkube.api.openapi import (
    Schema,
    array,
    boolean,
    int_or_string,
    integer,
    map_of,
    number,
    obj,
    rule,
    string,
)
from mlkube.api.performance import LIVE_ROWS_PATTERN

CLASSIFICATION_METRICS: Final = (
    "accuracy",
    "f1",
    "f1_macro",
    "roc_auc",
    "log_loss",
    "precision",
    "recall",
)
REGRESSION_METRICS: Final = ("r2", "rmse", "mae")
DATA_URI_SCHEMES: Final = ("pvc", "s3", "https", "sklearn")
DURATION_PATTERN: Final = r"^([0-9]+(s|m|h|d))+$"
CRON = (
    r"^(@(yearly|annually|monthly|weekly|daily|hourly)"
    r"|([0-9*/,?LW#A-Za-z-]+\s+){4}[0-9*/,?LW#A-Za-z-]+)$"
)
QUANTITY = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


# A data URI's path stays inside its claim or store: no '.' or '..' segment anywhere after
# the scheme, and no '/' right after the claim of pvc:// (or after store://), which
# would make the rest an absolute path. The runtime checks the same (train/data.py).
DATA_URI_PATH_RULE: Final = (
    "!has(self.uri) || (!self.uri.matches('^([a-z0-9]+://)?(.*/)?[.][.]?(/|$)')"
    " && !self.uri.matches('^(pvc|store)://(.*/)?/'))"
)


def data_uri_path_rule(field: str) -> Schema:
    return rule(
        DATA_URI_PATH_RULE,
        f"{field} must stay inside its claim: no '.' or '..' segments, and no '//' after "
        "the claim of a pvc:// URI",
        field_path=".uri",
    )


CRON_RULE = "!has(self.schedule) || self.schedule.matches('" + CRON.replace("\\", "\\\\") + "')"


def cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def quantity(description: str) -> Schema:
    schema = int_or_string(description)
    schema["pattern"] = QUANTITY
    return schema


def resources_schema(what: str) -> Schema:
    return obj(
        f"Compute resources of the {what} container, as in a Pod's "
        "resources (for example nvidia.com/gpu under limits).",
        {
            "requests": map_of(
                "Minimum resources the scheduler reserves.",
                quantity("A quantity such as 500m or 1Gi."),
                max_properties=16,
            ),
            "limits": map_of(
                "Maximum resources the container may use.",
                quantity("A quantity such as 2 or 4Gi."),
                max_properties=16,
            ),
        },
    )


def placement_schemas(what: str) -> dict[str, Schema]:
    return {
        "nodeSelector": map_of(
            f"Labels a node must have to run the {what} pods.",
            string("Label value.", max_length=63),
            max_properties=32,
        ),
        "tolerations": array(
            f"Tolerations of the {what} pods, passed through to the Pod spec.",
            obj(
                "One toleration.",
                {
                    "key": string("Taint key the toleration applies to."),
                    "operator": string("How key and value are compared.", enum=["Exists", "Equal"]),
                    "value": string("Taint value to match (operator Equal).", max_length=63),
                    "effect": string(
                        "Taint effect to match; empty matches all.",
                        enum=["NoSchedule", "PreferNoSchedule", "NoExecute"],
                    ),
                    "tolerationSeconds": integer(
                        "How long a NoExecute taint is tolerated.", minimum=0, fmt="int64"
                    ),
                },
            ),
            max_items=16,
            list_type="atomic",
        ),
    }


def condition_schema() -> Schema:
    return obj(
        "One aspect of the resource's state, as the Kubernetes API conventions define.",
        {
            "type": string("Condition type, e.g. Ready.", max_length=316),
            "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": string(
                "CamelCase reason from a fixed set.",
                pattern=r"^[A-Za-z]([A-Za-z0-9_]*)?$",
                max_length=1024,
            ),
            "message": string("Human-readable detail.", max_length=32768),
            "lastTransitionTime": string(
                "When status last changed.", fmt="date-time", max_length=64
            ),
            "observedGeneration": integer(
                "The .metadata.generation the condition was set for.", minimum=0, fmt="int64"
            ),
        },
        required=["type", "status", "lastTransitionTime"],
    )


def common_status() -> dict[str, Schema]:
    return {
        "observedGeneration": integer(
            "The .metadata.generation the status describes.", minimum=0, fmt="int64"
        ),
        "phase": string(
            "Summary of the conditions for printer columns; read the conditions for detail.",
            max_length=32,
        ),
        "conditions": array(
            "Current state: Ready, Reconciling and Stalled (kstatus), plus kind-specific ones.",
            condition_schema(),
            max_items=16,
            map_keys=["type"],
        ),
    }


def metrics_map(what: str) -> Schema:
    return map_of(f"{what}, by metric name.", number("Metric value."), max_properties=64)


def slice_results() -> Schema:
    return array(
        "Score of each validation slice.",
        obj(
            "One slice's result.",
            {
                "name": string("Slice name.", max_length=63),
                "score": number("Metric on the slice."),
                "rows": integer("Test rows in the slice.", minimum=0, fmt="int64"),
                "minScore": number("The slice's minimum, if any."),
                "passed": boolean("Whether the slice met its minimum."),
            },
        ),
        max_items=32,
    )


def model_ref() -> Schema:
    return obj(
        "The Model this object belongs to, in the same namespace. Immutable.",
        {"name": string("Name of the Model.", min_length=1, max_length=63)},
        required=["name"],
        rules=[rule("self == oldSelf", "spec.modelRef is immutable")],
    )


def live_rows_fields() -> dict[str, Schema]:
    return {
        "path": string(
            "The rows file, relative to the Model's directory in the store.",
            pattern=LIVE_ROWS_PATTERN,
            max_length=128,
        ),
        "rows": integer("Rows in the file.", minimum=0, fmt="int64"),
        "windowStart": string("Start of the window.", fmt="date-time", max_length=64),
        "windowEnd": string("End of the window.", fmt="date-time", max_length=64),
        "monitor": string("The Monitor that wrote them.", max_length=253),
    }


def lineage_schema() -> Schema:
    """Where a version came from: data and its digest, params, libraries, image."""
    return obj(
        "Where the version came from.",
        {
            "data": obj(
                "The training data.",
                {
                    "uri": string("Data URI, credentials redacted.", max_length=512),
                    "sha256": string("sha256 of the data as read.", max_length=64),
                },
            ),
            "paramsDigest": string(
                "sha256 of the estimator class and its effective params.", max_length=64
            ),
            "libraries": map_of(
                "Library versions (scikit-learn, mlkube).",
                string("A version.", max_length=64),
                max_properties=8,
            ),
            "image": string("The trainer's image, by digest when known.", max_length=512),
            "liveRows": obj("Labelled live rows added to the data.", live_rows_fields()),
        },
    )
