"""``mlkube train --store s3://bucket/prefix``: a local staging store, then one commit.

Why a staging store: the run (checks, fit, validation, ONNX, ``write_version``) stays the
same code as on a PVC; only its last step differs. The version is first written into a
temporary local store, then uploaded with ``store.versions.publish_version`` (objects
first, ``metadata.json`` last as the commit). The version number and "never overwrite"
are checked against the bucket before any data is read, so a refused run costs nothing.

A search runs in one process here (its trials are recorded in the staging store); its
distributed form (``--trial``/``--select`` in separate pods) needs a shared directory and
is refused on an S3 store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from pathlib import Path

from mlkube.api.names import model_dir as model_dir_of
from mlkube.api.names import version_dir
from mlkube.api.status import TrainerSummary
from mlkube.runtime.store import s3, versions
from mlkube.runtime.store.s3 import ObjectStoreError, S3Location
from mlkube.runtime.train import TrainingInputError
from mlkube.runtime.train.record import RunRequest
from mlkube.runtime.train.run import Progress
from mlkube.runtime.train.settings import TrainSettings
from mlkube.runtime.train.spec import TrainingSpec

MAX_LIVE_ROWS_BYTES = 256 << 20


def remote_store(store: str) -> S3Location | None:
    """The S3 store named by ``--store``, or ``None`` for a directory."""
    if not s3.is_s3(store):
        return None
    try:
        return S3Location.parse(store)
    except ValueError as error:
        raise TrainingInputError(f"--store: {error}") from None


def refuse_unsupported(*, model_root: Path | None, trial: bool, select: bool) -> None:
    if model_root is not None:
        raise TrainingInputError("--model-root is for a mounted store; an s3:// store takes none")
    if trial or select:
        raise TrainingInputError(
            "--trial and --select need a store shared by the trial pods (a volume); with an "
            "s3:// store run the search in one process (without --trial/--select)"
        )


def staged_request(request: RunRequest, remote: S3Location) -> RunRequest:
    """The request re-pointed at a new local staging store, with the version fixed."""
    spec = request.spec
    model = remote / model_dir_of(spec.namespace, spec.name)
    version = request.version or versions.next_version(model)
    if versions.is_committed(model / f"v{version}"):
        raise TrainingInputError(
            f"{model / f'v{version}'} already exists; versions are never overwritten"
        )
    staging = Path(tempfile.mkdtemp(prefix="mlkube-train-"))
    staged = dataclasses.replace(request, store=staging, version=version, model_root=None)
    if request.live_rows is not None:  # written by the drift check beside its report
        target = staged.model_dir / request.live_rows["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download(model / request.live_rows["path"], target, MAX_LIVE_ROWS_BYTES)
    return staged


def publish(request: RunRequest, remote: S3Location, version: int, progress: Progress) -> None:
    """Uploads the staged version: objects, then metadata.json (the commit)."""
    spec = request.spec
    local = request.model_dir / f"v{version}"
    target = remote / version_dir(spec.namespace, spec.name, version)
    progress(f"uploading {target}")
    versions.publish_version(local, target)
    progress(f"committed {target}/metadata.json")


def train_local(
    request: RunRequest, settings: TrainSettings, progress: Progress, select: bool, parallel: int
) -> TrainerSummary:
    """Trains into the local store ``request`` names (the real one, or a staging copy): a
    single fit, a whole search, or a search's select step."""
    from mlkube.runtime.train.run import train_model

    if request.spec.search is None:
        if select:
            raise TrainingInputError("--select needs spec.training.search")
        return train_model(request, settings, progress)
    from mlkube.runtime.train.search_run import search_model, select_command

    if select:
        return select_command(request, settings, progress)
    return search_model(request, settings, progress, parallel)


def discard_staging(request: RunRequest) -> None:
    shutil.rmtree(request.store, ignore_errors=True)


def take_back(store: str, model_root: Path | None, spec: TrainingSpec, version: int) -> None:
    """Removes the version just written, when its outcome could not be reported."""
    remote = remote_store(store)
    if remote is None:
        model_dir = model_root or Path(store) / model_dir_of(spec.namespace, spec.name)
        shutil.rmtree(model_dir / f"v{version}", ignore_errors=True)
        return
    with contextlib.suppress(ObjectStoreError):
        unpublish(remote, spec.namespace, spec.name, version)


def unpublish(remote: S3Location, namespace: str, name: str, version: int) -> None:
    """Takes a committed version back (its commit first), when its outcome was lost."""
    versions.remove_version(remote / version_dir(namespace, name, version))


def prune(remote: S3Location, namespace: str, name: str, below: int, keep: set[int]) -> list[int]:
    """Removes this Model's committed versions older than ``below`` and not kept."""
    model = remote / model_dir_of(namespace, name)
    doomed = [v for v in versions.committed_versions(model) if v < below and v not in keep]
    for version in doomed:
        versions.remove_version(model / f"v{version}")
    return doomed
