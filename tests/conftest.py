"""Shared fixtures: the session's control plane, its CRDs, and a fresh namespace per test.

Tests under ``tests/integration`` and ``tests/e2e`` are marked automatically; a failing
test that used the control plane gets the tail of each component's log in its report.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.controlplane import REPO, ControlPlane
from harness.objectstore import ObjectStore

CRD_DIR = REPO / "crds"
RESTRICTED = "pod-security.kubernetes.io/enforce"


S3_FIXTURES = frozenset({"objectstore", "s3_store"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
    # Modules with a test on the S3 server run last, whole (their module fixtures stay
    # shared): on an empty cache tests/tiers.sh builds the server while the rest run.
    s3_modules = {item.nodeid.split("::")[0] for item in items if _uses_s3(item)}
    items.sort(key=lambda item: item.nodeid.split("::")[0] in s3_modules)


def _uses_s3(item: pytest.Item) -> bool:
    return bool(S3_FIXTURES.intersection(getattr(item, "fixturenames", ())))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane.start(tmp_path_factory.mktemp("controlplane"))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> list[str]:
    """Applies ``crds/`` and waits until every CRD is Established; returns their names."""
    control_plane.kubectl("apply", "--server-side", "-f", str(CRD_DIR))
    names = control_plane.kubectl("get", "-f", str(CRD_DIR), "-o", "name").stdout.split()
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    return names


@pytest.fixture(scope="session")
def objectstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """The session's S3-compatible server (SeaweedFS on loopback), with one bucket."""
    store = ObjectStore(tmp_path_factory.mktemp("objectstore")).start()
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture
def s3_store(objectstore: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``s3://bucket/<prefix>`` store for one test; the AWS environment is set."""
    for name, value in objectstore.env.items():
        monkeypatch.setenv(name, value)
    return objectstore.uri(f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace enforcing the restricted Pod Security profile, with its default SA."""
    base = request.node.name.lower().replace("_", "-")
    name = "".join(c for c in base if c.isalnum() or c == "-")[:40].strip("-")
    name = f"{name}-{uuid.uuid4().hex[:5]}"
    control_plane.kubectl(
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
    deadline = time.monotonic() + 30
    while control_plane.kubectl(
        "get", "serviceaccount", "default", "-n", name, check=False
    ).returncode:
        if time.monotonic() > deadline:
            pytest.fail(f"namespace {name} got no default ServiceAccount in 30 s")
        time.sleep(0.2)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and "control_plane" in getattr(item, "fixturenames", ()):
        plane = item.funcargs.get("control_plane") if hasattr(item, "funcargs") else None
        if isinstance(plane, ControlPlane):
            report.sections.append(("control plane logs", plane.all_log_tails()))
