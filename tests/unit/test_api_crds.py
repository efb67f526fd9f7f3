"""The CRD source: generated files in sync, every field described, structural, list maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube.api import names
from mlkube.api.crds import custom_resource_definitions, render_crd_files
from mlkube.api.openapi import walk_fields

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


def _schema(kind: str) -> dict[str, Any]:
    for crd in custom_resource_definitions():
        if crd["spec"]["names"]["kind"] == kind:
            schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(kind)


def test_generated_files_match_the_source() -> None:
    rendered = render_crd_files()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in CRD_DIR.glob("*.yaml")}
    assert set(on_disk) == set(rendered), "crds/ has extra or missing files: run `make crds`"
    for filename, text in rendered.items():
        assert on_disk[filename] == text, f"crds/{filename} is stale: run `make crds`"
    assert set(rendered) == {
        "mlkube.io_models.yaml",
        "mlkube.io_trainingjobs.yaml",
        "mlkube.io_monitors.yaml",
    }


@pytest.mark.parametrize("kind", [names.MODEL, names.TRAINING_JOB, names.MONITOR])
def test_every_spec_and_status_field_has_a_description(kind: str) -> None:
    schema = _schema(kind)
    missing = [
        path
        for part in ("spec", "status")
        for path, field in walk_fields(schema["properties"][part], part)
        if not field.get("description")
    ]
    assert missing == []


@pytest.mark.parametrize("kind", [names.MODEL, names.TRAINING_JOB, names.MONITOR])
def test_schema_is_structural_with_typed_status(kind: str) -> None:
    schema = _schema(kind)
    for path, field in walk_fields(schema, kind):
        if field.get("x-kubernetes-int-or-string"):
            continue
        if path.endswith(".grid{}[]"):
            # A grid value may be a number, a string, a boolean or null: structural
            # schemas allow such a node untyped when it preserves what it holds.
            assert field["x-kubernetes-preserve-unknown-fields"] is True
            continue
        assert "type" in field, f"{path} has no type"
    status = schema["properties"]["status"]
    assert not status.get("x-kubernetes-preserve-unknown-fields")
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) >= {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def test_preserve_unknown_fields_only_on_estimator_params() -> None:
    free = [
        path
        for kind in (names.MODEL, names.TRAINING_JOB, names.MONITOR)
        for path, field in walk_fields(_schema(kind), kind)
        if field.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert free == [
        "Model.spec.training.estimator.params",
        "Model.spec.training.search.candidates[].params",
        "Model.spec.training.search.candidates[].grid{}[]",
        "TrainingJob.spec.overrides.estimator.params",
        "TrainingJob.spec.overrides.search.candidates[].params",
        "TrainingJob.spec.overrides.search.candidates[].grid{}[]",
    ]


def test_names_columns_and_category() -> None:
    crds = {c["spec"]["names"]["kind"]: c for c in custom_resource_definitions()}
    assert crds[names.MODEL]["spec"]["names"]["shortNames"] == ["mlm"]
    assert crds[names.TRAINING_JOB]["spec"]["names"]["shortNames"] == ["tj"]
    assert crds[names.MONITOR]["spec"]["names"]["shortNames"] == ["mon"]
    for crd in crds.values():
        assert crd["spec"]["names"]["categories"] == ["mlkube"]
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
    columns = {
        kind: [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
        for kind, crd in crds.items()
    }
    assert columns[names.MODEL] == [
        "Task",
        "Serving",
        "Latest",
        "Score",
        "Ready",
        "Canary",
        "Rollout",
        "Age",
    ]
    assert columns[names.TRAINING_JOB] == [
        "Model",
        "Trigger",
        "Version",
        "Phase",
        "Score",
        "Trials",
        "Succeeded",
        "Failed",
        "Best",
        "Age",
    ]
    assert columns[names.MONITOR][:3] == ["Model", "Schedule", "Drift"]
    assert "Last Check" in columns[names.MONITOR]


def test_rendered_yaml_round_trips() -> None:
    for text in render_crd_files().values():
        document = yaml.safe_load(text)
        assert document["kind"] == "CustomResourceDefinition"
        assert document["spec"]["group"] == names.GROUP


def _data_rules(kind: str) -> list[dict[str, Any]]:
    """CEL rules of the object holding ``uri`` (Model: spec.training.data; Monitor: spec.data)."""
    spec = _schema(kind)["properties"]["spec"]["properties"]
    holder = spec["training"]["properties"]["data"] if kind == names.MODEL else spec["data"]
    rules: list[dict[str, Any]] = holder["x-kubernetes-validations"]
    return rules


def _admits(kind: str, uri: str) -> bool:
    """Evaluates every rule on the data object with cel-python, as the apiserver would."""
    import celpy

    env = celpy.Environment()
    activation = {"self": celpy.json_to_cel({"uri": uri})}
    return all(
        bool(env.program(env.compile(r["rule"])).evaluate(activation)) for r in _data_rules(kind)
    )


@pytest.mark.parametrize("kind", [names.MODEL, names.MONITOR])
@pytest.mark.parametrize(
    "uri",
    [
        "pvc://claim//etc/passwd",
        "pvc://claim/a//b.csv",
        "pvc://claim/../other/x.csv",
        "pvc://claim/a/../../x.csv",
        "pvc://../etc/passwd",
        "pvc://claim/./x.csv",
        "pvc://claim/x/..",
        "https://host/a/../../b.csv",
    ],
)
def test_cel_refuses_data_uris_that_leave_their_claim(kind: str, uri: str) -> None:
    assert not _admits(kind, uri)


@pytest.mark.parametrize("kind", [names.MODEL, names.MONITOR])
@pytest.mark.parametrize(
    "uri",
    [
        "pvc://claim/churn/2024.csv",
        "pvc://claim/a..b/.hidden/x.csv",
        "s3://bucket/key/part-0.parquet",
        "https://data.example.com/x.csv?sig=abc",
        "sklearn://iris",
    ],
)
def test_cel_admits_data_uris_inside_their_claim(kind: str, uri: str) -> None:
    assert _admits(kind, uri)


@pytest.mark.parametrize(
    "uri", ["store://../../etc/x.csv", "store:///etc/x.csv", "/data/../etc/x.csv", "../x.csv"]
)
def test_cel_refuses_monitor_table_uris_that_escape(uri: str) -> None:
    assert not _admits(names.MONITOR, uri)
