"""Schemas of ``spec.serving.rollout`` and ``status.rollout``: how a promoted version
reaches traffic, and where its canary stands.

Kept apart from the Model's other schemas so those modules stay small; the words are
the enums of ``mlkube.api.rollout``.
"""

from __future__ import annotations

from mlkube.api import rollout
from mlkube.api.openapi import Schema, array, integer, map_of, number, obj, rule, string


def rollout_spec_schema() -> Schema:
    parent_ref = obj(
        "A Gateway API parent (a Gateway) the HTTPRoute attaches to.",
        {
            "name": string("Name of the Gateway."),
            "namespace": string("Its namespace; the Model's when omitted.", max_length=63),
            "sectionName": string("A listener of the Gateway.", max_length=253),
        },
        required=["name"],
    )
    return obj(
        "How a promoted version reaches traffic: at once (Direct), or first as a canary "
        "that is analysed against the stable version and promoted or rolled back.",
        {
            "strategy": string(
                "Direct: the new version replaces the serving one. Canary: it takes a share "
                "of traffic first.",
                enum=[s.value for s in rollout.Strategy],
                default=rollout.Strategy.DIRECT.value,
            ),
            "canaryPercent": integer(
                "Share of traffic for the candidate, in percent. Exact with parentRefs (an "
                "HTTPRoute's weights); otherwise approximate: the candidate's share of the "
                "ready pods behind the one Service.",
                minimum=1,
                maximum=99,
                default=rollout.DEFAULT_SHARE,
            ),
            "analysisSeconds": integer(
                "How long the candidate is observed before it is promoted.",
                minimum=5,
                maximum=86400,
                default=rollout.DEFAULT_WINDOW_SECONDS,
            ),
            "minRequests": integer(
                "Requests the candidate must have answered before it is judged; without "
                f"them after {rollout.PATIENCE_WINDOWS} windows it is rolled back.",
                minimum=0,
                default=rollout.DEFAULT_MIN_REQUESTS,
            ),
            "limits": obj(
                "The candidate against stable, over the analysis window.",
                {
                    "maxErrorRateIncrease": number(
                        "Largest allowed rise of the 5xx share of inference requests.",
                        minimum=0,
                        maximum=1,
                        default=rollout.DEFAULT_MAX_ERROR_RATE_INCREASE,
                    ),
                    "maxP99Ratio": number(
                        "Largest allowed candidate p99 latency as a multiple of stable's.",
                        minimum=1,
                        default=rollout.DEFAULT_MAX_P99_RATIO,
                    ),
                    "maxPredictionShift": number(
                        "Largest allowed total variation distance between the candidate's "
                        "and stable's predicted classes (classification only).",
                        minimum=0,
                        maximum=1,
                        default=rollout.DEFAULT_MAX_PREDICTION_SHIFT,
                    ),
                },
            ),
            "parentRefs": array(
                "Gateway API parents: an HTTPRoute with exact weights splits the traffic.",
                parent_ref,
                max_items=8,
            ),
        },
        rules=[
            rule(
                "!has(self.parentRefs) || size(self.parentRefs) > 0",
                "spec.serving.rollout.parentRefs must name at least one Gateway when set",
                field_path=".parentRefs",
            )
        ],
    )


def rollout_status_schema() -> Schema:
    verdict = obj(
        "One check of the candidate against stable.",
        {
            "check": string("What was compared.", enum=[c.value for c in rollout.Check]),
            "candidate": number("The candidate's figure."),
            "stable": number("Stable's figure."),
            "limit": number("The limit it was held to."),
            "passed": {"type": "boolean", "description": "Whether the check passed."},
        },
        required=["check", "limit", "passed"],
    )
    return obj(
        "The current canary, or the last one and how it ended.",
        {
            "phase": string("Where it stands.", enum=[p.value for p in rollout.RolloutPhase]),
            "candidate": integer("Version under analysis.", minimum=1),
            "stable": integer("Version serving the rest of the traffic.", minimum=1),
            "share": integer("Share asked for, in percent.", minimum=0, maximum=100),
            "readyShare": number("The candidate's share of ready predictor pods, 0 to 1."),
            "mode": string("How traffic is split: endpoints or httproute.", max_length=16),
            "startedAt": string("When the canary started.", fmt="date-time", max_length=64),
            "analysisStartedAt": string(
                "When its pods were ready and the window began.", fmt="date-time", max_length=64
            ),
            "decidedAt": string("When it was promoted or rolled back.", fmt="date-time"),
            "verdicts": array("The figures of the last analysis.", verdict, max_items=8),
            "message": string("The decision, or what the analysis waits for.", max_length=1024),
            "baseline": map_of(
                "Stable's counters when the window began (its traffic is measured from there).",
                number("A counter."),
                max_properties=64,
            ),
        },
    )
