"""Fixtures several unit modules share: a trained reference version, a loopback S3 server.

The reference is trained once per module that asks for it; each test gets its own copy
of the version directory, so a test that tampers with it cannot affect another.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.ports import free_port
from reliability.workspace import Reference, build_reference


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return build_reference(tmp_path_factory.mktemp("reference"))


@pytest.fixture
def version(reference: Reference, tmp_path: Path) -> Path:
    target = tmp_path / "v1"
    shutil.copytree(reference.version_dir(), target)
    return target


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port (the only place S3 traffic goes)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
