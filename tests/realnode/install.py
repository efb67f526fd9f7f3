"""docs/install.md's kind recipe, read from the page itself, so the real node runs its lines.

The real-node tier installs mlkube by running the ``kubectl`` lines of the page's section
"2. A local cluster" verbatim (from the repository root, with the harness's kubectl first
on PATH and its kubeconfig), so the page and the tier cannot drift apart. What a kind user
does with Docker the tier does daemonless, with the same inputs and names: section 1's
``docker build -f <Dockerfile> -t <tag> .`` lines are ``tests/node/images.sh`` (buildah,
the same Dockerfiles and tags) and ``kind load docker-image <tags>`` is ``ctr images
import`` of those images. ``tests/unit/test_install_recipe.py`` checks that mapping.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.controlplane import REPO, ControlPlane

INSTALL_DOC = REPO / "docs" / "install.md"
DOCKER_HUB = "docker.io/"


@dataclass(frozen=True)
class Recipe:
    """The commands of the page's sections 1 (images) and 2 (a local cluster)."""

    builds: list[tuple[str, str]]  # (Dockerfile, tag) of each `docker build`
    kind_loads: list[str]  # the images `kind load docker-image` loads
    kubectl: list[list[str]]  # every `kubectl ...` line of section 2, as argv


def _section(text: str, number: int) -> str:
    match = re.search(rf"^## {number}\. .*?(?=^## )", text, re.M | re.S)
    if match is None:
        raise AssertionError(f"{INSTALL_DOC} has no section {number}")
    return match.group(0)


def _bash_lines(section: str) -> list[list[str]]:
    lines: list[list[str]] = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                lines.append(words)
    return lines


def read_recipe(doc: Path = INSTALL_DOC) -> Recipe:
    text = doc.read_text()
    builds = []
    for words in _bash_lines(_section(text, 1)):
        if words[:2] == ["docker", "build"]:
            builds.append((words[words.index("-f") + 1], words[words.index("-t") + 1]))
    kind_loads: list[str] = []
    kubectl: list[list[str]] = []
    for words in _bash_lines(_section(text, 2)):
        if words[:3] == ["kind", "load", "docker-image"]:
            kind_loads.extend(words[3:])
        elif words[0] == "kubectl":
            kubectl.append(words)
    return Recipe(builds=builds, kind_loads=kind_loads, kubectl=kubectl)


def full_reference(tag: str) -> str:
    """``mlkube/runtime:dev`` as containerd names it (Docker's default registry)."""
    first = tag.split("/", maxsplit=1)[0]
    if "/" in tag and ("." in first or ":" in first or first == "localhost"):
        return tag
    return DOCKER_HUB + (tag if "/" in tag else f"library/{tag}")


def run_kubectl_lines(plane: ControlPlane, recipe: Recipe, timeout: float = 300) -> list[str]:
    """Runs the page's kubectl lines as written, from the repository root; returns stdout."""
    env = {
        **os.environ,
        "PATH": f"{plane.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(plane.kubeconfig),
    }
    outputs = []
    for words in recipe.kubectl:
        result = subprocess.run(
            words, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"`{shlex.join(words)}` failed: {result.stderr.strip()}")
        outputs.append(result.stdout)
    return outputs
