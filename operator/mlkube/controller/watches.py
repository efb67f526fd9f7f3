"""What the operator watches, and the slim cache entries it keeps of each kind.

kopf's event handlers feed every watched body into the cache through the trimmers
here, so memory at thousands of objects is what the reconcilers read, not whole bodies;
the indexes let a Model find its runs and monitors, and a Job its pods, without a scan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from mlkube.api import names
from mlkube.controller.informer import Cache
from mlkube.controller.spec import model_ref

MANAGED: Final = {names.LABEL_MANAGED_BY: names.MANAGED_BY}
# kind, group, version, plural, label filter (children only: ours carry managed-by)
WATCHES: Final[tuple[tuple[str, str, str, str, dict[str, str] | None], ...]] = (
    ("Model", names.GROUP, names.VERSION, "models", None),
    ("TrainingJob", names.GROUP, names.VERSION, "trainingjobs", None),
    ("Monitor", names.GROUP, names.VERSION, "monitors", None),
    ("Job", "batch", "v1", "jobs", MANAGED),
    ("CronJob", "batch", "v1", "cronjobs", MANAGED),
    ("Deployment", "apps", "v1", "deployments", MANAGED),
    ("Pod", "", "v1", "pods", {**MANAGED, names.LABEL_COMPONENT: "trainer"}),
)
JOB_NAME_LABELS: Final = ("batch.kubernetes.io/job-name", "job-name")


def labels_of(body: Mapping[str, Any]) -> Mapping[str, str]:
    return (body.get("metadata") or {}).get("labels") or {}


_META_KEPT: Final = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "labels",
        "annotations",
        "ownerReferences",
        "creationTimestamp",
        "deletionTimestamp",
    }
)


def _slim(*spec_paths: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A trimmer keeping metadata, status and only the named ``spec`` paths (a.b.c)."""

    def trim(body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body.get("metadata") or {}
        slim: dict[str, Any] = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": {k: v for k, v in meta.items() if k in _META_KEPT},
            "status": body.get("status") or {},
        }
        for path in spec_paths:
            source: Any = body
            target = slim
            parts = path.split(".")
            for part in parts[:-1]:
                source = (source or {}).get(part) if isinstance(source, Mapping) else None
                target = target.setdefault(part, {})
            if isinstance(source, Mapping) and parts[-1] in source:
                target[parts[-1]] = source[parts[-1]]
        return slim

    return trim


def new_cache() -> Cache:
    cache = Cache()
    # Children are read for their status and identity only; the predictor also for the
    # version label of its pod template. Pods: phase and container states.
    cache.add_trim("Job", _slim())
    cache.add_trim("CronJob", _slim())
    cache.add_trim("Deployment", _slim("spec.template.metadata"))
    cache.add_trim("Pod", _slim())
    cache.add_index("TrainingJob", lambda b: [model_ref(b)])
    cache.add_index("Monitor", lambda b: [model_ref(b)])
    cache.add_index("Pod", lambda b: [v for k in JOB_NAME_LABELS if (v := labels_of(b).get(k))][:1])
    return cache
