"""Schema of the Model resource's status: the version registry and the serving history.

Written only by the operator's Model reconciler; the words in it (triggers, decisions)
are the enums of ``mlkube.api.status``.
"""

from __future__ import annotations

from mlkube.api.crd_common import common_status, lineage_schema, metrics_map, slice_results
from mlkube.api.crd_rollout import rollout_status_schema
from mlkube.api.openapi import Schema, array, boolean, integer, number, obj, string
from mlkube.api.rollout import RolloutPhase
from mlkube.api.status import Decision, Trigger


def model_status_schema() -> Schema:
    version_entry = obj(
        "One trained version and what was decided about it.",
        {
            "version": integer("Version number.", minimum=1),
            "trainingJob": string("TrainingJob that produced it."),
            "trigger": string("Why it was trained.", enum=[t.value for t in Trigger]),
            "metric": string("Metric the score is.", max_length=32),
            "higherIsBetter": boolean("Whether a larger score is better (false for errors)."),
            "score": number("Validation score."),
            "metrics": metrics_map("Validation metrics"),
            "slices": slice_results(),
            "uri": string("Location of the version in the store.", max_length=2048),
            "sha256": string("sha256 of the artifact.", pattern=r"^[0-9a-f]{64}$", max_length=64),
            "onnxSha256": string(
                "sha256 of the verified ONNX form, if any.",
                pattern=r"^[0-9a-f]{64}$",
                max_length=64,
            ),
            "trainedAt": string("When training finished.", fmt="date-time", max_length=64),
            "generation": integer(
                "Generation of the Model whose spec it was trained from.", minimum=0
            ),
            "specDigest": string("Digest of the training spec it was trained from.", max_length=64),
            "lineage": lineage_schema(),
            "parent": integer("The version serving when this one was decided.", minimum=1),
            "decision": string("Promotion decision.", enum=[d.value for d in Decision]),
            "promoted": boolean("Whether the version was ever promoted."),
            "reason": string("Why it was promoted or rejected.", max_length=2048),
        },
        required=["version"],
    )
    promotion_entry = obj(
        "A change of the serving version.",
        {
            "version": integer("Version that started serving.", minimum=1),
            "previous": integer("Version that served before, if any.", minimum=1),
            "time": string("When it happened.", fmt="date-time", max_length=64),
            "reason": string("Why (gate passed, pin, rollback).", max_length=2048),
            "approvedBy": string(
                "The user who approved a manual promotion (checked at admission).", max_length=256
            ),
            "approvalReason": string("Why they approved it.", max_length=1024),
            "canary": obj(
                "The canary analysis that decided it, when the rollout strategy is Canary.",
                {
                    "candidate": integer("The version that was analysed.", minimum=1),
                    "phase": string(
                        "Promoted or RolledBack.", enum=[p.value for p in RolloutPhase]
                    ),
                    "verdicts": rollout_status_schema()["properties"]["verdicts"],
                },
            ),
        },
        required=["version", "time"],
    )
    return obj(
        "State of the model, written by the operator only.",
        {
            **common_status(),
            "latestVersion": integer("Highest version trained so far.", minimum=0),
            "allocatedVersion": integer(
                "Highest version number handed out to a TrainingJob; never reused.", minimum=0
            ),
            "reservations": array(
                "Versions handed to TrainingJobs whose status does not show them yet; a "
                "restarted operator gives such a run the same number again.",
                obj(
                    "One reserved version.",
                    {
                        "trainingJob": string("Name of the TrainingJob."),
                        "uid": string("UID of the TrainingJob, once known.", max_length=64),
                        "version": integer("The reserved version.", minimum=1),
                    },
                    required=["trainingJob", "version"],
                ),
                max_items=50,
            ),
            "servingVersion": integer("Version the predictor serves.", minimum=1),
            "servingScore": number("Validation score of the serving version."),
            "servingSha256": string(
                "sha256 of the serving artifact.", pattern=r"^[0-9a-f]{64}$", max_length=64
            ),
            "endpoint": string("In-cluster URL of the predictor.", max_length=2048),
            "versions": array(
                "Versions trained, newest last (bounded).", version_entry, max_items=50
            ),
            "promotions": array(
                "History of serving-version changes, newest last (bounded).",
                promotion_entry,
                max_items=50,
            ),
            "lastScheduledTraining": string(
                "When the training schedule last fired.", fmt="date-time", max_length=64
            ),
            "specDigest": string(
                "Digest of the training spec the operator last started a run for.", max_length=64
            ),
            "rollout": rollout_status_schema(),
            "dataCheck": obj(
                "The last data check of a schedule firing (retrainWhen DataChanged).",
                {
                    "job": string("The Job that read the data."),
                    "firedAt": string("The firing.", fmt="date-time", max_length=64),
                    "expectedSha256": string("Digest of the last trained data.", max_length=64),
                    "sha256": string("Digest of the data as the check read it.", max_length=64),
                    "changed": boolean("Whether it differed, so a run started."),
                    "checkedAt": string("When the check ended.", fmt="date-time", max_length=64),
                    "trainingJob": string("The run it started, if any."),
                    "message": string("Why the check failed, if it did.", max_length=2048),
                },
            ),
            "specGeneration": integer(
                "Generation of the Model whose spec that run trains.", minimum=0
            ),
        },
    )
