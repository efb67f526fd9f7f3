"""Reads a training data set named by a URI into a pandas frame, with a digest for lineage.

The URI schemes mirror where data sits for a model in a cluster: a mounted claim
(``pvc://claim/path``), an object store (``s3://bucket/key``, optional ``s3`` extra), a web
server (``https://``, also ``http://`` for in-cluster services listed in
``MLKUBE_ALLOWED_INTERNAL_HOSTS``), a local path (``file://`` or plain, for laptops, tests
and benchmarks) and the data sets scikit-learn ships (``sklearn://iris``, columns renamed
to identifiers). Downloads are bounded in size and time so a wrong URI fails with a
message instead of filling the pod, and may not reach inside the cluster (see
``fetch``); ``.gz`` files are bounded once expanded too. Messages name the URI with its
credentials redacted. The whole file is
read into memory once: its bytes give the data digest recorded in the metadata and then
parse without a second read.
"""

from __future__ import annotations

import hashlib
import io
import re
import urllib.parse
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

import pandas as pd

from mlkube.runtime.store import s3
from mlkube.runtime.train import TrainingInputError, TrainingUnavailableError
from mlkube.runtime.train.fetch import download_http, redact_uri
from mlkube.runtime.train.settings import TrainSettings
from mlkube.runtime.train.spec import DataSpec

SKLEARN_DATASETS: Final = ("iris", "wine", "breast_cancer", "diabetes", "digits")
_EXTENSIONS: Final = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


@dataclass(frozen=True)
class LoadedData:
    frame: pd.DataFrame
    sha256: str
    format: str


def load_data(spec: DataSpec, settings: TrainSettings) -> LoadedData:
    """Fetches and parses ``spec.uri``; every failure is a ``TrainingInputError`` naming it."""
    uri = spec.uri
    shown = redact_uri(uri)
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme == "sklearn":
        return _load_sklearn(uri)
    if scheme in ("", "file"):
        raw, name = _read_local(_file_path(uri)), uri
    elif scheme == "pvc":
        raw, name = _read_local(pvc_path(uri, settings.pvc_root)), uri
    elif scheme in ("http", "https"):
        raw, name = download_http(uri, settings), urllib.parse.urlsplit(uri).path
    elif scheme == "s3":
        raw, name = _download_s3(uri, settings), uri
    else:
        raise TrainingInputError(
            f"data uri {shown!r}: unsupported scheme {scheme!r}; "
            "use a path, file://, pvc://, https://, s3:// or sklearn://"
        )
    digest = hashlib.sha256(raw).hexdigest()
    if name.endswith(".gz"):
        raw = gunzip_bounded(raw, settings.max_decompressed_bytes, shown)
        name = name[:-3]
    fmt = spec.format or _format_from_name(shown, name)
    return LoadedData(frame=parse_frame(raw, fmt, shown), sha256=digest, format=fmt)


def gunzip_bounded(raw: bytes, limit: int, shown: str) -> bytes:
    """Expands gzip data (every member) but never beyond ``limit`` bytes."""
    out: list[bytes] = []
    size = 0
    while raw:
        expander = zlib.decompressobj(wbits=31)
        try:
            chunk = expander.decompress(raw, limit - size + 1)
        except zlib.error as error:
            raise TrainingInputError(f"data {shown}: not a valid gzip file: {error}") from None
        size += len(chunk)
        if size > limit or expander.unconsumed_tail:
            raise TrainingInputError(
                f"data {shown} expands to more than {limit} bytes "
                "(MLKUBE_DATA_MAX_DECOMPRESSED_BYTES)"
            )
        if not expander.eof:
            raise TrainingInputError(f"data {shown}: not a valid gzip file: truncated")
        out.append(chunk)
        raw = expander.unused_data
    return b"".join(out)


def _format_from_name(uri: str, name: str) -> str:
    fmt = _EXTENSIONS.get(PurePosixPath(name).suffix.lower())
    if fmt is None:
        raise TrainingInputError(
            f"data {uri}: cannot tell the format from the name; "
            "set spec.training.data.format to csv, parquet or jsonl"
        )
    return fmt


def parse_frame(raw: bytes, fmt: str, uri: str) -> pd.DataFrame:
    """Parses bytes as ``fmt`` (pandas' C reader: faster than pyarrow's here on 2 cores)."""
    kind = {"csv": "CSV", "parquet": "Parquet", "jsonl": "JSON lines"}[fmt]
    if not raw.strip():
        raise TrainingInputError(f"data {uri} is empty")
    try:
        if fmt == "parquet":
            return pd.read_parquet(io.BytesIO(raw))
        if fmt == "jsonl":
            return pd.read_json(io.BytesIO(raw), lines=True)
        return pd.read_csv(io.BytesIO(raw))
    except MemoryError:
        raise  # out of memory is not a bad file: the Job may retry with more
    except Exception as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise TrainingInputError(f"data {uri} is not readable as {kind}: {message}") from None


def _file_path(uri: str) -> Path:
    if uri.startswith("file://"):
        parts = urllib.parse.urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise TrainingInputError(f"data uri {uri!r}: file:// URIs must name a local path")
        return Path(urllib.parse.unquote(parts.path))
    return Path(uri)


def pvc_path(uri: str, root: Path) -> Path:
    """``pvc://claim/some/file.csv`` → ``<root>/claim/some/file.csv``, never outside the claim.

    The path after the claim is taken segment by segment: an empty segment (``//``, which
    would make it absolute and drop the claim), ``.``, ``..`` or a backslash is refused.
    """
    rest = uri[len("pvc://") :]
    claim, _, inner = rest.partition("/")
    segments = inner.split("/")
    if (
        not claim
        or claim in (".", "..")
        or not inner
        or any(s in ("", ".", "..") for s in segments)
        or "\\" in rest
    ):
        raise TrainingInputError(
            f"data uri {uri!r}: expected pvc://<claim>/<path inside the claim>, "
            "without '//', '.' or '..' segments"
        )
    return root.joinpath(claim, *segments)


def _read_local(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TrainingInputError(f"data file {path} does not exist") from None
    except IsADirectoryError:
        raise TrainingInputError(f"data path {path} is a directory, not a file") from None
    except OSError as error:
        raise TrainingInputError(f"cannot read data file {path}: {error.strerror}") from None


def _read_bounded(read: Callable[[int], bytes], limit: int, uri: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := read(1 << 20):
        size += len(chunk)
        if size > limit:
            raise TrainingInputError(
                f"data {uri} is larger than {limit} bytes (MLKUBE_HTTP_MAX_BYTES)"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _download_s3(uri: str, settings: TrainSettings) -> bytes:
    """Reads ``s3://bucket/key`` with boto3; ``AWS_ENDPOINT_URL`` points it at any S3 API."""
    try:
        import botocore.exceptions
    except ImportError:
        raise TrainingInputError(
            f"data {uri}: s3:// needs boto3; install mlkube with the s3 extra"
        ) from None
    parts = urllib.parse.urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise TrainingInputError(f"data uri {uri!r}: expected s3://<bucket>/<key>")
    try:
        # the store's client: the same AWS environment and MLKUBE_S3_ADDRESSING_STYLE
        client: Any = s3.client(connect_timeout=settings.http_timeout_seconds, attempts=2)
    except s3.ObjectStoreError as error:
        raise TrainingInputError(f"data {uri}: {error}") from None
    try:
        response = client.get_object(Bucket=bucket, Key=key)
        if int(response.get("ContentLength", 0)) > settings.http_max_bytes:
            raise TrainingInputError(
                f"data {uri} is {response['ContentLength']} bytes, more than "
                f"{settings.http_max_bytes} (MLKUBE_HTTP_MAX_BYTES)"
            )
        return _read_bounded(response["Body"].read, settings.http_max_bytes, uri)
    except botocore.exceptions.ClientError as error:
        info = error.response.get("Error", {})
        raise TrainingInputError(
            s3.redact(f"data {uri}: {info.get('Code', 'error')}: {info.get('Message', error)}")
        ) from None
    except botocore.exceptions.BotoCoreError as error:
        # endpoint unreachable, connection reset, read timeout: the Job may retry
        raise TrainingUnavailableError(s3.redact(f"data {uri}: {error}")) from None


def identifier(name: str) -> str:
    """``"petal length (cm)"`` → ``"petal_length_cm"``: bundled data sets get column names
    that slice queries and JSON requests can use without quoting."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or name


def _load_sklearn(uri: str) -> LoadedData:
    import sklearn.datasets

    name = uri[len("sklearn://") :].strip("/")
    if name not in SKLEARN_DATASETS:
        raise TrainingInputError(
            f"data uri {uri!r}: unknown bundled data set; use one of "
            + ", ".join(f"sklearn://{n}" for n in SKLEARN_DATASETS)
        )
    frame: pd.DataFrame = getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame
    frame.columns = [identifier(str(c)) for c in frame.columns]
    digest = hashlib.sha256(
        pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    ).hexdigest()
    return LoadedData(frame=frame, sha256=digest, format="sklearn")
