"""The one source of the three CustomResourceDefinitions.

``crds/*.yaml`` are generated from this package (``python -m mlkube.api.crds --write crds``,
or ``make crds``) and a unit test fails when they differ, so the schemas, their
descriptions and their CEL rules are edited in ``crd_*.py`` only. Structural schemas
cover spec *and* status; free-form objects are limited to what the user really chooses
(estimator params).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from mlkube.api import names
from mlkube.api.crd_jobs import monitor_schemas, training_job_schemas
from mlkube.api.crd_model import model_spec_schema
from mlkube.api.crd_status import model_status_schema

_READY = '.status.conditions[?(@.type=="Ready")].status'


def _column(name: str, json_path: str, type_: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "jsonPath": json_path, **extra}


def custom_resource_definitions() -> list[dict[str, Any]]:
    """The three CRDs, in the order they are applied."""
    model_status = model_status_schema()
    tj_spec, tj_status = training_job_schemas()
    mon_spec, mon_status = monitor_schemas()
    definitions = [
        (
            names.MODEL,
            "A scikit-learn model that mlkube trains, validates, versions, serves and retrains.",
            model_spec_schema(),
            model_status,
            [
                _column("Task", ".spec.task"),
                _column("Serving", ".status.servingVersion", "integer"),
                _column("Latest", ".status.latestVersion", "integer"),
                _column("Score", ".status.servingScore", "number"),
                _column("Ready", _READY),
                _column("Canary", ".status.rollout.candidate", "integer", priority=1),
                _column("Rollout", ".status.rollout.phase", priority=1),
                _column("Age", ".metadata.creationTimestamp", "date"),
            ],
        ),
        (
            names.TRAINING_JOB,
            "One training run of a Model; it produces one version.",
            tj_spec,
            tj_status,
            [
                _column("Model", ".spec.modelRef.name"),
                _column("Trigger", ".spec.trigger"),
                _column("Version", ".status.version", "integer"),
                _column("Phase", ".status.phase"),
                _column("Score", ".status.score", "number"),
                _column("Trials", ".status.trials.total", "integer"),
                _column("Succeeded", ".status.trials.succeeded", "integer"),
                _column("Failed", ".status.trials.failed", "integer"),
                _column("Best", ".status.bestScore", "number"),
                _column("Age", ".metadata.creationTimestamp", "date"),
            ],
        ),
        (
            names.MONITOR,
            "A periodic drift check over a Model's live traffic that can trigger retraining.",
            mon_spec,
            mon_status,
            [
                _column("Model", ".spec.modelRef.name"),
                _column("Schedule", ".spec.schedule"),
                _column("Drift", ".status.verdict"),
                _column("Share", ".status.driftShare", "number", priority=1),
                _column("Last Check", ".status.lastCheckTime", "date"),
                _column("Age", ".metadata.creationTimestamp", "date"),
            ],
        ),
    ]
    result = []
    for kind, description, spec, status, columns in definitions:
        plural = names.PLURALS[kind]
        result.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {
                    "name": f"{plural}.{names.GROUP}",
                    "labels": {"app.kubernetes.io/part-of": "mlkube"},
                },
                "spec": {
                    "group": names.GROUP,
                    "scope": "Namespaced",
                    "names": {
                        "kind": kind,
                        "listKind": f"{kind}List",
                        "plural": plural,
                        "singular": kind.lower(),
                        "shortNames": [names.SHORT_NAMES[kind]],
                        "categories": [names.CATEGORY],
                    },
                    "versions": [
                        {
                            "name": names.VERSION,
                            "served": True,
                            "storage": True,
                            "subresources": {"status": {}},
                            "additionalPrinterColumns": columns,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "description": description,
                                    "properties": {
                                        "apiVersion": {
                                            "type": "string",
                                            "description": "Versioned schema of this object.",
                                        },
                                        "kind": {
                                            "type": "string",
                                            "description": "REST resource this object is.",
                                        },
                                        "metadata": {"type": "object"},
                                        "spec": spec,
                                        "status": status,
                                    },
                                    "required": ["spec"],
                                }
                            },
                        }
                    ],
                },
            }
        )
    return result


def render_crd_files() -> dict[str, str]:
    """``crds/`` as it must be: file name to YAML text."""
    files = {}
    for crd in custom_resource_definitions():
        text = yaml.safe_dump(crd, sort_keys=False, width=100, allow_unicode=True)
        header = "# Generated from operator/mlkube/api/crd_*.py; edit those, then `make crds`.\n"
        files[f"{names.GROUP}_{crd['spec']['names']['plural']}.yaml"] = header + text
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description="Write or check the CRD YAML files.")
    parser.add_argument("--write", metavar="DIR", help="write the CRDs into DIR")
    parser.add_argument("--check", metavar="DIR", help="exit 1 if DIR differs from the source")
    args = parser.parse_args()
    stale = []
    for filename, text in render_crd_files().items():
        if args.write:
            (Path(args.write) / filename).write_text(text, encoding="utf-8")
        elif args.check:
            path = Path(args.check) / filename
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
    if stale:
        print("out of date (run `make crds`): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
