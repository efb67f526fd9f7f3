"""Fixtures of the real-node tier: a kubelet + containerd node running the project's images.

The tier runs in a pytest session of its own (``make test-realnode``, and ``make test``
after the other tiers when the machine can host a node): its control plane gets a real
kube-scheduler and a real node, which must not pick up the pods that the node agent tiers
expect to run themselves, so the main session leaves this folder out.

Every test that asks for ``real_node`` shares one node per module, stopped (and the
machine cleaned) when the module ends, failed or not. Workloads come from the operator's
own builders, so the pods are exactly what the operator would create.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.controlplane import ControlPlane
from harness.node import (
    Node,
    ensure_binaries,
    ensure_images,
    unavailable_reason,
)
from realnode.workloads import pods_images

RESTRICTED = "pod-security.kubernetes.io/enforce"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "realnode" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.realnode)


@pytest.fixture(scope="session")
def node_requirements() -> tuple[Path, dict[str, Path]]:
    """The node's binaries and images, built (or taken from the cache) once per session."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no real node here: {reason}")
    return ensure_binaries(), ensure_images()


@pytest.fixture(scope="module")
def real_node(
    control_plane: ControlPlane,
    node_requirements: tuple[Path, dict[str, Path]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Node]:
    bin_dir, images = node_requirements
    node = Node.start(
        control_plane, tmp_path_factory.mktemp("node"), bin_dir=bin_dir, images=pods_images(images)
    )
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def node_namespace(real_node: Node, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace enforcing Pod Security ``restricted``; its pods are removed after."""
    plane = real_node.plane
    base = "".join(c for c in request.node.name.lower() if c.isalnum())[:30]
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    plane.kubectl(
        "apply",
        "-f",
        "-",
        input_text=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "labels": {RESTRICTED: "restricted", f"{RESTRICTED}-version": "latest"},
                },
            }
        ),
    )
    wait_for(
        lambda: plane.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        30,
        f"namespace {name} got no default ServiceAccount",
    )
    yield name
    plane.kubectl("delete", "namespace", name, "--wait=true", "--timeout=90s", check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and hasattr(item, "funcargs"):
        node = item.funcargs.get("real_node")
        if isinstance(node, Node):
            report.sections.append(("real node logs", node.all_log_tails()))


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} (after {timeout:.0f}s)")
