"""Model versions on S3: committed by ``metadata.json``, fetched into a local directory.

Why: S3 has no rename, so the PVC store's "write a temporary directory, rename it into
place" cannot carry over. The layout is the same (``<prefix>/<ns>/<model>/v<N>/``), and
the commit is the last object: the trainer uploads every other file of the version first
and ``metadata.json`` last, with ``If-None-Match: *`` so an existing version is never
overwritten (and it refuses before uploading anything when ``metadata.json`` is there).
A reader only sees a version whose ``metadata.json`` exists; objects left by a trainer
killed before its commit are invisible and the retry uploads them again.

A predictor fetches a version into a local directory (an emptyDir in a pod), checks
the sha256 of ``model.skops`` (and of ``model.onnx``) against the pinned digests before
anything loads, and then loads it from disk exactly as from the PVC store.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path
from typing import Final

import orjson

from mlkube.runtime.artifact import MAX_ARTIFACT_BYTES, METADATA_FILE, ArtifactError
from mlkube.runtime.compiled import ONNX_FILE
from mlkube.runtime.store import s3
from mlkube.runtime.store.s3 import S3Location

MAX_METADATA_BYTES: Final = 256 << 20
_VERSION = re.compile(r"^v([1-9][0-9]*)/$")


def committed_versions(model: S3Location) -> list[int]:
    """The ``N`` of every ``v<N>/`` under the model's prefix whose metadata.json exists."""
    found = []
    for name in s3.list_keys(model, delimiter="/"):
        match = _VERSION.match(name)
        if match and s3.exists(model / name / METADATA_FILE):
            found.append(int(match.group(1)))
    return sorted(found)


def next_version(model: S3Location) -> int:
    return max(committed_versions(model), default=0) + 1


def is_committed(version: S3Location) -> bool:
    return s3.exists(version / METADATA_FILE)


def publish_version(local: Path, target: S3Location) -> None:
    """Uploads a finished local version directory; ``metadata.json`` last, as the commit.

    Raises ``ArtifactError`` when the version exists (nothing is uploaded then) and
    ``ObjectStoreError`` when the store fails; objects uploaded before such a failure are
    deleted again (best effort: they are invisible without the commit anyway).
    """
    if is_committed(target):
        raise ArtifactError(f"{target} already exists; versions are never overwritten")
    files = sorted(p for p in local.iterdir() if p.is_file() and p.name != METADATA_FILE)
    uploaded: list[S3Location] = []
    try:
        for path in files:
            s3.put_bytes(target / path.name, path.read_bytes())
            uploaded.append(target / path.name)
        metadata = (local / METADATA_FILE).read_bytes()
        if not s3.put_bytes(
            target / METADATA_FILE, metadata, if_absent=True, ContentType="application/json"
        ):
            raise ArtifactError(f"{target} already exists; versions are never overwritten")
    except BaseException:
        for where in uploaded:
            try:
                s3.delete(where)
            except s3.ObjectStoreError:
                break
        raise


def remove_version(version: S3Location) -> None:
    """Uncommits a version (its metadata.json goes first), then deletes its objects."""
    s3.delete(version / METADATA_FILE)
    for name in list(s3.list_keys(version)):
        s3.delete(version / name)


def fetch_version(
    source: S3Location,
    cache: Path,
    sha256: str | None = None,
    onnx_sha256: str | None = None,
) -> Path:
    """Downloads a committed version into ``cache/<vN>`` and verifies its digests.

    ``sha256`` (pinned by the operator from the registry) wins over metadata.json's, as in
    ``artifact.load_pipeline``; a mismatch raises ``ArtifactError`` and leaves no files.
    """
    raw = s3.get_bytes(source / METADATA_FILE, MAX_METADATA_BYTES)
    if raw is None:
        raise ArtifactError(f"no {METADATA_FILE} in {source}: not a (committed) model version")
    try:
        metadata = orjson.loads(raw)
        recorded = str(metadata["artifact"]["sha256"])
        artifact = str(metadata["artifact"]["file"])
    except (ValueError, KeyError, TypeError):
        raise ArtifactError(f"{source}/{METADATA_FILE} is not a model version's metadata") from None
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{source.name}.", dir=cache))
    try:
        names = [n for n in s3.list_keys(source) if "/" not in n and not n.startswith(".")]
        for name in names:
            if name != METADATA_FILE:
                s3.download(source / name, staging / name, MAX_ARTIFACT_BYTES)
        (staging / METADATA_FILE).write_bytes(raw)
        _verify(staging, artifact, sha256 or recorded, source)
        if onnx_sha256 is not None:
            _verify(staging, ONNX_FILE, onnx_sha256, source)
        target = cache / (source.name or "version")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _verify(local: Path, name: str, expected: str, source: S3Location) -> None:
    path = local / name
    if Path(name).name != name or not path.is_file():
        raise ArtifactError(f"{source} has no {name!r}; refusing to serve it")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        raise ArtifactError(
            f"sha256 mismatch for {source / name}: expected {expected.lower()}, "
            f"object has {digest.hexdigest()}; refusing to load"
        )
