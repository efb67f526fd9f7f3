"""A Model on an ``s3://`` store, on the real control plane (the test plays the kubelet).

The trainer Job mounts no claim and takes its credentials from the named Secret by
reference; a Secret that does not exist stops the trainer in CreateContainerConfigError,
and the TrainingJob's condition and an Event on it and on the Model name the Secret, never
its contents; a Model naming an endpoint the operator does not allow is refused on the Model.
"""

from __future__ import annotations

import time
from typing import Any

from test_operator_lifecycle import model

from conftest import OperatorKit, OperatorProcess

SECRET_VALUE = "do-not-print-this-secret-value"


def s3_model(**storage: Any) -> dict[str, Any]:
    manifest = model()
    manifest["spec"]["storage"] = {
        "uri": "s3://models/team-a",
        "secretRef": {"name": "store-creds"},
        **storage,
    }
    return manifest


def _kubelet_refuses(kit: OperatorKit, pod: str, message: str) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    waiting = {"reason": "CreateContainerConfigError", "message": message}
    kit.patch_pod_status(
        pod,
        {
            "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
            "containerStatuses": [
                {
                    "name": "trainer",
                    "image": "mlkube/runtime:test",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"waiting": waiting},
                }
            ],
        },
    )


def test_a_missing_secret_is_named_on_the_run_and_the_model(
    operator: OperatorProcess, kit: OperatorKit
) -> None:
    kit.apply(s3_model())
    job = kit.wait_get("job", "iris-v1-train", timeout=20)
    pod_spec = job["spec"]["template"]["spec"]
    assert not [v for v in pod_spec["volumes"] if "persistentVolumeClaim" in v]
    container = pod_spec["containers"][0]
    refs = {e["name"]: e.get("valueFrom") for e in container["env"]}
    assert refs["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "store-creds", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    pod = kit.job_pod("iris-v1-train")["metadata"]["name"]
    _kubelet_refuses(kit, pod, 'secret "store-creds" not found')

    def said() -> dict[str, Any] | None:
        conditions = kit.status("trainingjob", "iris-v1").get("conditions") or []
        ready = next((c for c in conditions if c["type"] == "Ready"), None)
        return ready if ready and ready["reason"] == "PodConfigError" else None

    ready = kit.wait("the run to name the Secret", said, timeout=30)
    assert 'secret "store-creds" not found' in ready["message"]
    events = kit.wait(
        "an Event on the Model",
        lambda: [e for e in kit.events_for("Model", "iris") if e["reason"] == "PodConfigError"],
    )
    assert "store-creds" in events[0]["message"]
    assert any(e["reason"] == "PodConfigError" for e in kit.events_for("TrainingJob", "iris-v1"))

    # With the Secret created, the same run goes on; its value never reaches any status.
    kit.kubectl(
        "create", "secret", "generic", "store-creds",
        "--from-literal=AWS_ACCESS_KEY_ID=key",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={SECRET_VALUE}",
    )  # fmt: skip
    kit.make_ready(pod)
    kit.wait(
        "the run to be running again",
        lambda: kit.status("trainingjob", "iris-v1").get("phase") == "Running",
        timeout=30,
    )
    for kind, name in (("trainingjob", "iris-v1"), ("model", "iris")):
        assert SECRET_VALUE not in str(kit.get(kind, name))
    assert all(SECRET_VALUE not in str(e) for e in kit.list("events"))


def test_an_endpoint_the_operator_does_not_allow_is_refused_on_the_model(
    operator: OperatorProcess, kit: OperatorKit
) -> None:
    kit.apply(s3_model(endpoint="http://127.0.0.2:9000"))

    def refused() -> dict[str, Any] | None:
        conditions = kit.status("model", "iris").get("conditions") or []
        ready = next((c for c in conditions if c["type"] == "Ready"), None)
        return ready if ready and "MLKUBE_S3_ALLOWED_ENDPOINTS" in ready["message"] else None

    kit.wait("the Model to refuse the endpoint", refused, timeout=30)
    assert kit.get("trainingjob", "iris-v1") is None
