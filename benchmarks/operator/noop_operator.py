"""The peer of the mlkube operator in benchmarks/operator: a kopf operator with no logic.

It watches the same resources (Models, TrainingJobs, Monitors; managed Jobs, CronJobs,
Deployments and trainer pods) and does the least that makes a Model end in a Job: a
TrainingJob ``<model>-v1`` on a Model event and a bare Job ``<tj>-train`` on a
TrainingJob event, over the same aiohttp transport. What the real operator costs beyond
this (version allocation, status, conditions, validation) is what the ratios show.

Run: ``python benchmarks/operator/noop_operator.py --namespace NS --liveness URL``.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import kopf

from mlkube.controller.kube import ApiError, Kube

MANAGED = {"app.kubernetes.io/managed-by": "mlkube"}
state: dict[str, Kube] = {}


def owner(body: Any) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }


async def create(manifest: dict[str, Any]) -> None:
    try:
        await state["kube"].create(manifest)
    except ApiError as error:
        if not error.conflict:
            raise


async def ignore(**_: Any) -> None:
    """Watching without acting (async: no thread-pool hop, as the real operator's handlers)."""


def build(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        info = kopf.login_with_kubeconfig(settings=settings)
        kube = Kube.from_connection(info)
        kube._headers["User-Agent"] = "noop-operator/0.1"
        state["kube"] = kube
        state["info"] = info

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> Any:
        return state["info"]

    @kopf.on.event("mlkube.io", "v1alpha1", "models", registry=registry)
    async def model(event: Any, body: Any, **_: Any) -> None:
        if event["type"] in (None, "ADDED"):
            name = body["metadata"]["name"]
            await create(
                {
                    "apiVersion": "mlkube.io/v1alpha1",
                    "kind": "TrainingJob",
                    "metadata": {
                        "name": f"{name}-v1",
                        "namespace": body["metadata"]["namespace"],
                        "ownerReferences": [owner(body)],
                    },
                    "spec": {"modelRef": {"name": name}, "trigger": "initial"},
                }
            )

    @kopf.on.event("mlkube.io", "v1alpha1", "trainingjobs", registry=registry)
    async def training_job(event: Any, body: Any, **_: Any) -> None:
        if event["type"] in (None, "ADDED"):
            name = body["metadata"]["name"]
            await create(
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {
                        "name": f"{name}-train",
                        "namespace": body["metadata"]["namespace"],
                        "labels": MANAGED,
                        "ownerReferences": [owner(body)],
                    },
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [
                                    {"name": "trainer", "image": "mlkube/runtime:bench"}
                                ],
                            }
                        },
                    },
                }
            )

    for group, version, plural, labels in (
        ("mlkube.io", "v1alpha1", "monitors", None),
        ("batch", "v1", "jobs", MANAGED),
        ("batch", "v1", "cronjobs", MANAGED),
        ("apps", "v1", "deployments", MANAGED),
        ("", "v1", "pods", {**MANAGED, "mlkube.io/component": "trainer"}),
    ):
        kopf.on.event(
            group, version, plural, labels=labels, registry=registry, id=f"noop-{plural}"
        )(ignore)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--namespace", action="append", required=True)
    parser.add_argument("--liveness", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    registry = kopf.OperatorRegistry()
    build(registry)
    kopf.run(
        registry=registry,
        standalone=True,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
    )


if __name__ == "__main__":
    main()
