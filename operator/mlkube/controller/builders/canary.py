"""A canary's children: its Deployment's shape, and with a Gateway API parent its Service
and the HTTPRoute whose weights split the traffic.

Two ways to split, chosen by ``spec.serving.rollout.parentRefs``:

- without a parent (no mesh, no gateway), the canary's pods carry the stable Service's
  selector labels, so the one Service spreads requests over both Deployments' ready
  pods; the share is the canary's fraction of those pods (approximate), and its pods
  are told apart by ``mlkube.io/track=canary``;
- with a parent, the canary's pods have their own component label, so the stable
  Service does not select them; a second Service selects them, and an HTTPRoute
  attached to the parent sends exactly ``canaryPercent`` of requests to it.
"""

from __future__ import annotations

from typing import Any

from mlkube.api import names
from mlkube.api.resources import Body, Manifest, base_labels, metadata
from mlkube.api.rollout import RolloutSpec
from mlkube.controller.builders.predictor import SERVICE_PORT, Track, build_predictor_service
from mlkube.controller.spec import name_of

GATEWAY_API: dict[str, str] = {"group": "gateway.networking.k8s.io", "version": "v1"}


def canary_track(model: Body, spec: RolloutSpec, stable_replicas: int) -> Track:
    """The canary Deployment's name, selector and replicas for a share of ``spec.share``.

    With a route the share is exact whatever the pod counts, so one pod is enough;
    without, the canary gets ``share / (100 - share)`` pods per stable pod, at least one.
    """
    model_name = name_of(model)
    component = names.COMPONENT_CANARY if spec.parent_refs else names.COMPONENT_PREDICTOR
    selector = {
        names.LABEL_MODEL: model_name,
        names.LABEL_COMPONENT: component,
        names.LABEL_TRACK: names.TRACK_CANARY,
    }
    replicas = 1
    if not spec.parent_refs:
        replicas = max(1, round(max(stable_replicas, 1) * spec.share / (100 - spec.share)))
    return Track(names.canary_name(model_name), selector, replicas)


def build_canary_service(model: Body) -> Manifest:
    """The Service of the canary's pods only: the HTTPRoute's second backend."""
    model_name = name_of(model)
    selector = {names.LABEL_MODEL: model_name, names.LABEL_COMPONENT: names.COMPONENT_CANARY}
    return build_predictor_service(model, name=names.canary_name(model_name), selector=selector)


def build_http_route(model: Body, spec: RolloutSpec, canary_weight: int) -> Manifest:
    """The route to the stable Service and, while a canary runs, to the canary's."""
    model_name = name_of(model)
    backends: list[dict[str, Any]] = [
        {
            "name": names.predictor_name(model_name),
            "port": SERVICE_PORT,
            "weight": 100 - canary_weight,
        }
    ]
    if canary_weight > 0:
        backends.append(
            {"name": names.canary_name(model_name), "port": SERVICE_PORT, "weight": canary_weight}
        )
    parents = [
        {
            "group": GATEWAY_API["group"],
            "kind": "Gateway",
            **{k: str(v) for k, v in ref.items() if k in ("name", "namespace", "sectionName")},
        }
        for ref in spec.parent_refs
    ]
    return {
        "apiVersion": f"{GATEWAY_API['group']}/{GATEWAY_API['version']}",
        "kind": "HTTPRoute",
        "metadata": metadata(
            model, names.route_name(model_name), base_labels(model_name, "predictor")
        ),
        "spec": {
            "parentRefs": parents,
            "rules": [{"backendRefs": backends}],
        },
    }
