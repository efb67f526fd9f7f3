"""The two images, without a Docker engine: lint, shape, pins, and a replayed build.

Static: hadolint passes; the final stage of each Dockerfile runs nothing (no compiler, no
package manager), runs as a numeric non-root UID and enters through ``mlkube``; every
``pip install`` is constrained by images/constraints.txt; the constraints pin every
runtime dependency; .dockerignore keeps the context to what the images need.
Replayed (slow, downloads wheels): each Dockerfile's steps run in a fresh directory
standing for the image (harness.dockerfile), then the image's venv must start
``mlkube`` for its commands and hold only pinned versions; the runtime's venv trains the
iris example and serves a prediction from it; the operator's lacks the scientific stack.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.dockerfile import Replay, entrypoint, parse
from harness.ports import free_ports

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
DOCKERFILES = {
    "operator": IMAGES / "operator" / "Dockerfile",
    "runtime": IMAGES / "runtime" / "Dockerfile",
}
PIP_CACHE = Path.home() / ".cache" / "mlkube" / "pip-image-replay"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    result = {}
    for line in (IMAGES / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            result[canonical(name)] = version
    return result


def requirement_name(spec: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)
    assert match, spec
    return canonical(match.group(0))


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_hadolint_passes(image: str) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), str(DOCKERFILES[image])], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_final_stage_is_slim_non_root_and_enters_mlkube(image: str) -> None:
    build, final = parse(DOCKERFILES[image])
    assert build.name == "build"
    assert final.base == build.base
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", final.base), final.base
    assert final.all("RUN") == [], "the final stage must only receive the built venv"
    assert final.all("COPY") == ["--from=build /opt/mlkube /opt/mlkube"]
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()
    assert entrypoint(final) == ["/opt/mlkube/bin/mlkube"]
    for command in build.all("RUN"):
        assert not re.search(r"apt-get|apk |gcc|build-essential", command), command
        for install in re.findall(r"pip install[^&]*", command):
            assert "--constraint images/constraints.txt" in install or "--no-deps" in install


def test_constraints_pin_every_runtime_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = pins()
    for spec in project["dependencies"]:
        assert requirement_name(spec) in pinned, f"{spec} is not pinned: run images/freeze.sh"
    for line in (IMAGES / "operator" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert requirement_name(line) in pinned, line


def test_runtime_constraints_pin_the_s3_client() -> None:
    """The runtime image reads and writes s3:// stores (issue 15): boto3 is pinned."""
    pinned = pins()
    assert {"boto3", "botocore", "s3transfer"} <= set(pinned)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "boto3" in {requirement_name(spec) for spec in project["dependencies"]}


def test_dockerignore_keeps_only_what_the_images_copy() -> None:
    rules = (REPO / ".dockerignore").read_text().splitlines()
    assert rules[rules.index("*")] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for dockerfile in DOCKERFILES.values():
        for stage in parse(dockerfile):
            for copy in stage.all("COPY"):
                if copy.startswith("--from"):
                    continue
                for source in copy.split()[:-1]:
                    assert source.split("/")[0] in allowed, source


def replay(image: str, tmp_path: Path) -> Path:
    PIP_CACHE.mkdir(parents=True, exist_ok=True)
    run = Replay(
        DOCKERFILES[image],
        REPO,
        tmp_path / "image",
        env_overrides={"PIP_NO_CACHE_DIR": "", "PIP_CACHE_DIR": str(PIP_CACHE)},
    )
    run.run()
    return run.root / "opt" / "mlkube" / "bin"


def installed_versions(bin_dir: Path) -> dict[str, str]:
    out = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "import importlib.metadata as m\n"
            "for d in m.distributions(): print(d.metadata['Name'], d.version)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {canonical(n): v for n, v in (line.split() for line in out.splitlines())}


def check_pinned(bin_dir: Path) -> dict[str, str]:
    versions = installed_versions(bin_dir)
    pinned = pins()
    for name, version in versions.items():
        if name != "mlkube":
            assert pinned.get(name) == version, f"{name}=={version} is not the pinned version"
    assert "pip" not in versions
    return versions


def mlkube_ok(bin_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [str(bin_dir / "mlkube"), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def serve_and_predict(bin_dir: Path, model_dir: Path, log: Path) -> dict[str, Any]:
    (port,) = free_ports(1)
    with log.open("w") as sink:
        server = subprocess.Popen(
            [
                str(bin_dir / "mlkube"),
                "serve",
                "--model-dir",
                str(model_dir),
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--sample-rate",
                "0",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/v2/models/iris/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the replayed server never became ready"
            time.sleep(0.3)
        body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}).encode()
        request = urllib.request.Request(
            f"{base}/v1/models/iris:predict",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            result: dict[str, Any] = json.loads(answer.read())
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_runtime_image_build_replays_trains_and_serves(tmp_path: Path) -> None:
    bin_dir = replay("runtime", tmp_path)
    versions = check_pinned(bin_dir)
    assert {"scikit-learn", "skops", "uvicorn", "pyarrow", "boto3"} <= set(versions)
    imported = subprocess.run(
        [str(bin_dir / "python"), "-c", "import boto3, botocore.config; print(boto3.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == versions["boto3"]
    site = next((tmp_path / "image" / "opt" / "mlkube" / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("*/tests")), "the libraries' test suites should be removed"
    assert "usage: mlkube" in mlkube_ok(bin_dir, "--help")
    for command in ("train", "serve", "drift-check"):
        assert f"mlkube {command}" in mlkube_ok(bin_dir, command, "--help")
    store = tmp_path / "store"
    summary = json.loads(
        mlkube_ok(
            bin_dir,
            "train",
            "-f",
            str(REPO / "manifests" / "examples" / "iris.yaml"),
            "--store",
            str(store),
            "--version",
            "1",
        )
    )
    assert summary["version"] == 1 and summary["score"] > 0.8
    predictions = serve_and_predict(
        bin_dir, store / "default" / "iris" / "v1", tmp_path / "serve.log"
    )
    assert len(predictions["predictions"]) == 2
    shutil.rmtree(tmp_path / "image", ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_operator_image_build_replays_without_the_scientific_stack(tmp_path: Path) -> None:
    bin_dir = replay("operator", tmp_path)
    versions = check_pinned(bin_dir)
    assert {"kopf", "prometheus-client", "croniter", "mlkube"} <= set(versions)
    assert not {"scikit-learn", "scipy", "pandas", "pyarrow", "numpy"} & set(versions)
    assert "mlkube operator" in mlkube_ok(bin_dir, "operator", "--help")
    shutil.rmtree(tmp_path / "image", ignore_errors=True)
