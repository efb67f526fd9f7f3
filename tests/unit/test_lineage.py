"""Every version carries its lineage into the cluster: data and digest, params, libraries,
image, trigger, parent and generation — from the trainer's summary to ``Model.status``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sklearn
from kube_memory import MemoryKube, controller, sync
from test_reconcile_memory import NS, SETTINGS, model_body, run_pass
from train_support import manifest, train_in

from mlkube.api import names
from mlkube.controller.handlers.model import reconcile_model


def test_the_summary_carries_the_data_digest_params_and_libraries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = train_in(capsys, tmp_path, manifest("iris"))
    assert result.code == 0, result.stderr
    lineage = result.summary["lineage"]
    assert len(lineage["data"]["sha256"]) == 64 and lineage["data"]["uri"] == "sklearn://iris"
    assert len(lineage["paramsDigest"]) == 64
    assert lineage["libraries"]["scikit-learn"] == sklearn.__version__


def finish_with_lineage(kube: MemoryKube, tj: str) -> None:
    job = kube.find("Job", NS, names.job_name(tj))
    assert job is not None
    summary = {
        "version": 1,
        "metric": "accuracy",
        "higherIsBetter": True,
        "score": 0.9,
        "metrics": {},
        "slices": [],
        "artifact": {"uri": "pvc://store/team/iris/v1", "sha256": "a" * 64},
        "lineage": {
            "data": {"uri": "sklearn://iris", "sha256": "d" * 64},
            "paramsDigest": "p" * 64,
            "libraries": {"scikit-learn": "1.7.0", "mlkube": "0.1.0"},
        },
    }
    terminated = {"exitCode": 0, "message": json.dumps(summary)}
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{tj}-pod",
            "namespace": NS,
            "labels": {"batch.kubernetes.io/job-name": job["metadata"]["name"]},
            "ownerReferences": [{"kind": "Job", "uid": job["metadata"]["uid"]}],
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "state": {"terminated": terminated},
                    "imageID": "mlkube/runtime@sha256:" + "e" * 64,
                }
            ],
        },
    }
    kube.put(pod)
    job["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    kube.put(job)


@pytest.mark.asyncio
async def test_the_version_entry_holds_the_lineage_the_image_and_the_generation() -> None:
    kube = MemoryKube()
    kube.put(model_body())
    ctl = controller(kube, SETTINGS)
    await reconcile_model(ctl, NS, "iris")
    sync(ctl)
    await run_pass(ctl, "iris-v1")
    finish_with_lineage(kube, "iris-v1")
    sync(ctl)
    await run_pass(ctl, "iris-v1")
    await reconcile_model(ctl, NS, "iris")
    model = kube.find("Model", NS, "iris")
    assert model is not None
    entry = model["status"]["versions"][0]
    assert entry["lineage"]["data"]["sha256"] == "d" * 64
    assert entry["lineage"]["image"].endswith("e" * 64)
    assert entry["generation"] == model["metadata"]["generation"]
    assert entry["specDigest"] == model["status"]["specDigest"]


def test_a_verified_onnx_digest_travels_to_the_predictor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlkube.controller.builders import build_predictor_deployment
    from mlkube.controller.registry import version_entry

    result = train_in(capsys, tmp_path, manifest("iris"))
    onnx = result.summary["artifact"]["onnxSha256"]
    metadata = json.loads(
        (tmp_path / "store" / "default" / "iris" / "v1" / "metadata.json").read_text()
    )
    assert onnx == metadata["compiled"]["sha256"]
    tj = {
        "metadata": {"name": "iris-v1"},
        "spec": {"trigger": "initial"},
        "status": {
            "phase": "Succeeded",
            "version": 1,
            "score": 0.9,
            "artifact": result.summary["artifact"],
        },
    }
    entry = version_entry(tj)
    assert entry is not None and entry["onnxSha256"] == onnx
    body = model_body()
    body["metadata"]["uid"] = "uid-iris"
    deployment = build_predictor_deployment(
        body, 1, str(entry["sha256"]), SETTINGS, str(entry["onnxSha256"])
    )
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--onnx-sha256") + 1] == onnx
