"""docs/install.md's kind section and the real-node tier run the same commands.

The tier (``tests/realnode/test_loop.py``) runs the page's ``kubectl`` lines verbatim,
read by ``realnode.install``; what a kind user does with Docker it does daemonless. This
module checks that mapping without a node: the page still has the lines the tier runs;
``tests/node/images.sh`` builds the page's Dockerfiles under the page's tags; the node
imports exactly the images ``kind load`` loads; the overlay names those tags.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from harness.controlplane import REPO
from harness.node import IMAGE_REFERENCE_OPERATOR, IMAGE_REFERENCE_RUNTIME, IMAGES_SCRIPT
from realnode.install import full_reference, read_recipe

OVERLAY = "manifests/overlays/local"


def _images_script_builds(script: Path) -> set[tuple[str, str]]:
    """(Dockerfile, reference) pairs of images.sh's loop over the project's images."""
    text = script.read_text()
    loop = re.search(r"^for name in ([\w ]+); do\n(.*?)^done", text, re.M | re.S)
    assert loop is not None, f"{script} has no `for name in ...` loop over the images"
    body = loop.group(2)
    ref = re.search(r"^\s*ref=(\S+)$", body, re.M)
    dockerfile = re.search(r'-f "\$context/(\S+)"', body)
    assert ref is not None and dockerfile is not None
    return {
        (dockerfile.group(1).replace("$name", name), ref.group(1).replace("$name", name))
        for name in loop.group(1).split()
    }


def test_the_tier_runs_the_kind_sections_kubectl_lines() -> None:
    recipe = read_recipe()
    assert recipe.kubectl == [
        ["kubectl", "apply", "--server-side", "-k", OVERLAY],
        ["kubectl", "-n", "mlkube-system", "rollout", "status", "deployment/mlkube-operator"],
    ]
    assert (REPO / OVERLAY / "kustomization.yaml").is_file()


def test_images_are_built_from_the_pages_dockerfiles_under_its_tags() -> None:
    recipe = read_recipe()
    documented = {(dockerfile, full_reference(tag)) for dockerfile, tag in recipe.builds}
    assert documented == _images_script_builds(IMAGES_SCRIPT)
    for dockerfile, _ in documented:
        assert (REPO / dockerfile).is_file()


def test_the_node_imports_what_kind_loads() -> None:
    recipe = read_recipe()
    loaded = {full_reference(tag) for tag in recipe.kind_loads}
    assert loaded == {IMAGE_REFERENCE_OPERATOR, IMAGE_REFERENCE_RUNTIME}
    assert loaded == {full_reference(tag) for _, tag in recipe.builds}


def test_the_overlay_names_the_loaded_tags() -> None:
    """The operator's image and the runtime image it gives pods are the loaded ones."""
    kustomization = yaml.safe_load((REPO / OVERLAY / "kustomization.yaml").read_text())
    images = {i["name"]: f"{i['name']}:{i['newTag']}" for i in kustomization["images"]}
    patch = yaml.safe_load((REPO / OVERLAY / "operator.yaml").read_text())
    env = patch["spec"]["template"]["spec"]["containers"][0]["env"]
    runtime = next(e["value"] for e in env if e["name"] == "MLKUBE_RUNTIME_IMAGE")
    loaded = set(read_recipe().kind_loads)
    assert {images["mlkube/operator"], runtime} == loaded


def test_full_reference_follows_dockers_defaults() -> None:
    assert full_reference("mlkube/runtime:dev") == "docker.io/mlkube/runtime:dev"
    assert full_reference("busybox:1") == "docker.io/library/busybox:1"
    assert full_reference("localhost/pause:3.10") == "localhost/pause:3.10"
    assert full_reference("registry.example.com/a/b:1") == "registry.example.com/a/b:1"
