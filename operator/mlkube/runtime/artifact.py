"""The model store's on-disk contract, shared by the trainer, the server and the drift checker.

A version lives at ``<store>/<namespace>/<model>/v<N>/`` and holds:

- ``model.skops``: the fitted scikit-learn Pipeline, saved with skops (no raw pickle);
- ``metadata.json``: metrics, feature schema, reference profile, lineage, and the
  artifact's sha256 (see ``Metadata``; the format is versioned by ``format``).

Versions are written into a temporary sibling directory and renamed into place, so a
reader sees a whole version or none, and an existing version is never overwritten.
Loading goes through ``load_pipeline``: the file is read once into memory, the sha256 is
checked on those bytes, every node is checked against an explicit allow-list of classes
(``mlkube.runtime.trusted``), and skops builds the pipeline from the same bytes, so the
file cannot change between the check and the load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, NotRequired, TypedDict

import orjson

from mlkube.runtime.trusted import UntrustedArtifactError, check_schema

METADATA_FORMAT: Final = "mlkube.model/v1"
MODEL_FILE: Final = "model.skops"
METADATA_FILE: Final = "metadata.json"
# A fitted pipeline of the trainer is a few MB; a bound keeps a planted file from
# exhausting the reader's memory before its digest is even known.
MAX_ARTIFACT_BYTES: Final = 2 << 30
MAX_SCHEMA_BYTES: Final = 256 << 20  # zipfile stops at the declared size, so this binds


class ArtifactError(Exception):
    """The store or an artifact in it cannot be used; the message says why."""


class FeatureSchema(TypedDict):
    """One input feature, in the order the pipeline expects."""

    name: str
    kind: Literal["numeric", "categorical"]
    dtype: str  # "float64", "int64", "bool" or "string"
    nullable: bool
    categories: NotRequired[list[str]]  # categorical only: values seen in training


class InputLayout(TypedDict):
    """How the fitted pipeline is called: ``metadata.json``'s ``input``.

    ``array``: a 2-D numpy array whose columns are ``order`` (the feature names), float64
    (``dtype``) when every feature is numeric, else object (numbers as floats, categories
    as text, NaN for missing). Versions without ``input`` predate it: their pipeline
    takes a DataFrame when it records ``feature_names_in_``, else a float64 array in
    schema order.
    """

    layout: Literal["array"]
    order: list[str]
    dtype: Literal["float64", "object"]


class TargetSchema(TypedDict):
    name: str
    classes: NotRequired[list[Any]]  # classification only, in predict_proba column order


class ArtifactInfo(TypedDict):
    file: str
    sha256: str
    bytes: int


class Metadata(TypedDict):
    """``metadata.json``. Producers fill every key; readers may rely on them."""

    format: str
    name: str
    namespace: str
    version: int
    task: Literal["classification", "regression"]
    artifact: ArtifactInfo
    estimator: dict[str, Any]  # {"class": import path, "params": {...}}
    features: list[FeatureSchema]
    input: NotRequired[InputLayout]
    target: TargetSchema
    metric: str
    score: float
    metrics: dict[str, float]
    crossValidation: NotRequired[dict[str, Any]]
    slices: list[dict[str, Any]]
    profile: dict[str, Any]  # reference profile for drift: see mlkube.runtime.profile
    data: dict[str, Any]  # uri, sha256, rows, trainRows, testRows
    lineage: dict[str, Any]  # trigger, reason, trainingJob
    libraries: dict[str, str]
    compiled: NotRequired[dict[str, Any]]  # the ONNX verdict: see mlkube.runtime.compiled
    trainedAt: str
    durationSeconds: float


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(model_dir: Path) -> Metadata:
    """Reads ``metadata.json`` of one version, with a clear error when it is absent or bad."""
    path = model_dir / METADATA_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"no {METADATA_FILE} in {model_dir}: not a model version") from None
    except OSError as error:
        raise ArtifactError(f"cannot read {path}: {error.strerror}") from None
    try:
        # orjson: metadata carries the reference profile (a few MB), read on every check
        data = orjson.loads(raw)
    except ValueError as error:
        raise ArtifactError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != METADATA_FORMAT:
        raise ArtifactError(f"{path} is not an {METADATA_FORMAT} document")
    return data  # type: ignore[return-value]


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_library_versions(model_dir: Path, metadata: Metadata) -> None:
    """Refuses an artifact recorded with another scikit-learn major.minor than this runtime's.

    scikit-learn guarantees nothing for fitted estimators across versions (attributes are
    renamed, defaults change), so such a model may load and then predict wrongly or fail
    on its first request; refusing at load time says so where the operator looks.
    """
    import sklearn

    recorded = (metadata.get("libraries") or {}).get("scikit-learn")
    if recorded and _major_minor(str(recorded)) != _major_minor(sklearn.__version__):
        raise ArtifactError(
            f"{model_dir} was trained with scikit-learn {recorded} but this runtime has "
            f"{sklearn.__version__}; fitted models do not carry across scikit-learn "
            "versions: retrain it, or serve it with a runtime of the same scikit-learn"
        )


def load_pipeline(model_dir: Path, expected_sha256: str | None = None) -> Any:
    """Loads the fitted pipeline of one version after checking its hash and its types.

    ``expected_sha256`` (from the operator, which records it in ``Model.status``) wins over
    the one in ``metadata.json``; the artifact must match whichever is given, so a
    tampered file never loads. The bytes are read once: the digest, the type check and
    skops all see the same bytes.
    """
    import skops.io as sio

    metadata = read_metadata(model_dir)
    file_name = str(metadata["artifact"]["file"])
    if not file_name or Path(file_name).name != file_name or file_name in (".", ".."):
        raise ArtifactError(
            f"{model_dir}/{METADATA_FILE} names the artifact {file_name!r}, which is not a "
            "file inside the version directory; refusing to load"
        )
    check_library_versions(model_dir, metadata)
    path = model_dir / file_name
    data = read_artifact(path)
    expected = (expected_sha256 or metadata["artifact"]["sha256"]).lower()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ArtifactError(
            f"sha256 mismatch for {path}: expected {expected}, file has {actual}; refusing to load"
        )
    try:
        trusted = check_schema(_skops_schema(data))
    except UntrustedArtifactError as error:
        raise ArtifactError(f"{path} would construct untrusted types: {error}") from None
    try:
        return sio.loads(data, trusted=trusted)
    except Exception as error:
        raise ArtifactError(f"cannot load {path}: {type(error).__name__}: {error}") from None


def read_artifact(path: Path) -> bytes:
    """A store file's bytes, read once and size-capped: what is hashed is what is loaded."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_ARTIFACT_BYTES + 1)
    except OSError as error:
        raise ArtifactError(f"cannot read {path}: {error.strerror}") from None
    if len(data) > MAX_ARTIFACT_BYTES:
        raise ArtifactError(f"{path} is larger than {MAX_ARTIFACT_BYTES} bytes; refusing to load")
    return data


def _skops_schema(data: bytes) -> Any:
    """The ``schema.json`` of a skops file held in memory."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if archive.getinfo("schema.json").file_size > MAX_SCHEMA_BYTES:
                raise ArtifactError(f"the artifact's schema.json is over {MAX_SCHEMA_BYTES} bytes")
            return json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise ArtifactError(f"the artifact is not a readable skops file: {error}") from None


def _write_extra_files(staging: Path, files: Mapping[str, bytes]) -> None:
    for name, content in files.items():
        if Path(name).name != name or name in (MODEL_FILE, METADATA_FILE, ".", ".."):
            raise ArtifactError(f"{name!r} cannot be written beside the model")
        (staging / name).write_bytes(content)


def _write_artifact(path: Path, pipeline: Any, artifact: bytes | None) -> None:
    """``pipeline`` in skops form at ``path``: the given bytes, or dumped here."""
    if artifact is not None:
        path.write_bytes(artifact)
        return
    import skops.io as sio

    sio.dump(pipeline, path)


def write_version(
    version_dir: Path,
    pipeline: Any,
    metadata_without_artifact: Mapping[str, Any],
    extra_files: Mapping[str, bytes] | None = None,
    artifact: bytes | None = None,
) -> Metadata:
    """Writes a version atomically: temp dir beside the target, then a rename.
    ``artifact``: ``pipeline`` already in skops form (the trainer's helper made it).

    ``extra_files`` (plain names, e.g. the compiled ``model.onnx``) are written before
    ``metadata.json``, which stays the last file written.

    Raises ``ArtifactError`` if the version directory already exists; never overwrites.
    Returns the metadata as written (with ``artifact`` filled in).
    """
    if version_dir.exists():
        raise ArtifactError(f"{version_dir} already exists; versions are never overwritten")
    parent = version_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version_dir.name}.", dir=parent))
    except OSError as error:
        raise ArtifactError(f"cannot write to the store at {parent}: {error.strerror}") from None
    try:
        model_path = staging / MODEL_FILE
        _write_artifact(model_path, pipeline, artifact)
        _write_extra_files(staging, extra_files or {})
        metadata = dict(metadata_without_artifact)
        metadata["format"] = METADATA_FORMAT
        metadata["artifact"] = ArtifactInfo(
            file=MODEL_FILE, sha256=sha256_file(model_path), bytes=model_path.stat().st_size
        )
        # orjson: the reference profile makes this a few MB, which the stdlib's indenting
        # encoder (pure Python) takes about a second to write.
        encoded = orjson.dumps(
            metadata,
            default=str,
            option=orjson.OPT_INDENT_2
            | orjson.OPT_SORT_KEYS
            | orjson.OPT_NON_STR_KEYS
            | orjson.OPT_SERIALIZE_NUMPY,
        )
        with (staging / METADATA_FILE).open("wb") as handle:
            handle.write(encoded)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(staging, 0o755)
        try:
            # rename(2) onto an existing non-empty directory fails, so a concurrent
            # writer of the same version cannot be overwritten either.
            os.rename(staging, version_dir)
        except OSError:
            raise ArtifactError(
                f"{version_dir} already exists; versions are never overwritten"
            ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return metadata  # type: ignore[return-value]
