"""S3 locations and the client, configured only by the standard AWS environment.

Why one module: every S3 call of the runtime goes through here, so there is one place
that decides the client's settings, bounds what is read into memory, turns boto3's
exceptions into one-line messages, and makes sure no credential ever reaches a message.

The environment (what the operator sets from ``spec.storage`` and its Secret, or what a
laptop has): ``AWS_ENDPOINT_URL`` (any S3 API: MinIO, Ceph RGW, SeaweedFS, R2, GCS
interoperability; absent for AWS), ``AWS_REGION`` or ``AWS_DEFAULT_REGION``,
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` (absent when
the pod's identity provides them: boto3 reads IRSA's web identity token itself) and
``MLKUBE_S3_ADDRESSING_STYLE`` (``path``, ``virtual`` or ``auto``, the default).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

SCHEME: Final = "s3://"
ADDRESSING_ENV: Final = "MLKUBE_S3_ADDRESSING_STYLE"
ADDRESSING_STYLES: Final = ("auto", "path", "virtual")
SECRET_ENV: Final = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
CONNECT_SECONDS: Final = 5.0
READ_SECONDS: Final = 60.0
NEEDS_BOTO3: Final = "s3:// needs boto3 (pip install 'mlkube[s3]')"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class ObjectStoreError(Exception):
    """An S3 call failed; the message names the location and the cause, never a credential."""


class ObjectStoreUnavailableError(ObjectStoreError):
    """The endpoint could not be reached or timed out: worth retrying later."""


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/key``: a key prefix that works like a directory (``/``, ``parent``)."""

    bucket: str
    key: str = ""  # without a leading or trailing slash; "" is the bucket's root

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        if not uri.startswith(SCHEME):
            raise ValueError(f"{uri!r} is not an s3:// location")
        bucket, _, key = uri[len(SCHEME) :].partition("/")
        if not _BUCKET.match(bucket):
            raise ValueError(f"{uri!r}: {bucket!r} is not a valid bucket name")
        parts = [p for p in key.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError(f"{uri!r}: '.' and '..' are not allowed in an s3:// location")
        return cls(bucket, "/".join(parts))

    def __truediv__(self, part: str) -> S3Location:
        extra = "/".join(p for p in str(part).split("/") if p)
        return S3Location(self.bucket, f"{self.key}/{extra}" if self.key else extra)

    @property
    def parent(self) -> S3Location:
        return S3Location(self.bucket, self.key.rpartition("/")[0])

    @property
    def name(self) -> str:
        return self.key.rpartition("/")[2]

    @property
    def prefix(self) -> str:
        """The key prefix of everything "inside" this location."""
        return f"{self.key}/" if self.key else ""

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}" if self.key else f"{SCHEME}{self.bucket}"


def is_s3(value: object) -> bool:
    return isinstance(value, S3Location) or (isinstance(value, str) and value.startswith(SCHEME))


def location(text: str | Path | S3Location) -> Path | S3Location:
    """A local path, or an ``S3Location`` for ``s3://…`` (``ValueError`` when malformed)."""
    if isinstance(text, (Path, S3Location)):
        return text
    return S3Location.parse(text) if text.startswith(SCHEME) else Path(text)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with the values of the credential variables replaced by ``***``."""
    env = os.environ if environ is None else environ
    for name in SECRET_ENV:
        value = env.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


def addressing_style(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    style = (env.get(ADDRESSING_ENV) or "auto").strip().lower()
    if style not in ADDRESSING_STYLES:
        raise ObjectStoreError(
            f"{ADDRESSING_ENV}={style!r}: expected one of {', '.join(ADDRESSING_STYLES)}"
        )
    return style


CLIENT_ENV: Final = (
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    *SECRET_ENV,
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    ADDRESSING_ENV,
)
_clients: dict[tuple[object, ...], Any] = {}


def client(*, connect_timeout: float = CONNECT_SECONDS, attempts: int = 3) -> Any:
    """A boto3 S3 client for this process and environment (a forked worker gets its own).

    ``attempts`` is the number of retries the SDK makes after a failed call (0: none).
    """
    cache_key = (
        os.getpid(),
        connect_timeout,
        attempts,
        *(os.environ.get(name) for name in CLIENT_ENV),
    )
    if cache_key in _clients:
        return _clients[cache_key]
    try:
        import boto3
        import botocore.config
    except ImportError:
        raise ObjectStoreError(NEEDS_BOTO3) from None
    style = addressing_style()
    config = botocore.config.Config(
        s3={"addressing_style": style} if style != "auto" else None,
        connect_timeout=connect_timeout,
        read_timeout=READ_SECONDS,
        retries={"max_attempts": attempts, "mode": "standard"},
    )
    # boto3 itself reads AWS_ENDPOINT_URL, the credentials and the web identity token;
    # the region also from AWS_REGION, which older botocore ignores.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    made = boto3.session.Session().client("s3", region_name=region, config=config)
    _clients[cache_key] = made
    return made


def _exceptions() -> Any:
    """botocore's exceptions module, or the one-line error that the client is missing
    (before this, a function's own import failed first with a bare ModuleNotFoundError)."""
    try:
        import botocore.exceptions
    except ImportError:
        raise ObjectStoreError(NEEDS_BOTO3) from None
    return botocore.exceptions


def describe(error: BaseException, what: str) -> ObjectStoreError:
    """A one-line error for a failed call on ``what``, credentials redacted."""
    botocore_exceptions = _exceptions()

    if isinstance(error, botocore_exceptions.ClientError):
        info = error.response.get("Error", {})
        code = info.get("Code", "error")
        message = info.get("Message") or code
        return ObjectStoreError(redact(f"{what}: {code}: {message}{_whose(code)}"))
    if isinstance(error, botocore_exceptions.NoCredentialsError):
        return ObjectStoreError(
            f"{what}: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or give the pod an identity)"
        )
    return ObjectStoreUnavailableError(redact(f"{what}: {type(error).__name__}: {error}"))


CREDENTIAL_ERRORS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken"}
)


def _whose(code: str) -> str:
    """In a pod the operator made, which Secret the refused credentials came from (its name
    only: ``MLKUBE_S3_SECRET_NAME``), so the TrainingJob's message says what to fix."""
    secret = os.environ.get("MLKUBE_S3_SECRET_NAME", "")
    if code in CREDENTIAL_ERRORS and secret:
        return f" (credentials from Secret {secret!r})"
    return ""


def error_code(error: BaseException) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def get_bytes(where: S3Location, limit: int) -> bytes | None:
    """The object's bytes (``None`` when it does not exist); refuses more than ``limit``."""
    botocore_exceptions = _exceptions()

    try:
        response = client().get_object(Bucket=where.bucket, Key=where.key)
        size = int(response.get("ContentLength", 0))
        if size > limit:
            response["Body"].close()
            raise ObjectStoreError(f"{where} is {size} bytes, more than the limit of {limit}")
        data: bytes = response["Body"].read(limit + 1)
    except botocore_exceptions.ClientError as error:
        if error_code(error) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise describe(error, f"cannot read {where}") from None
    except botocore_exceptions.BotoCoreError as error:
        raise describe(error, f"cannot read {where}") from None
    if len(data) > limit:
        raise ObjectStoreError(f"{where} is more than the limit of {limit} bytes")
    return data


def download(where: S3Location, target: Path, limit: int) -> int:
    """Streams the object into ``target`` (created, never replaced); returns its size."""
    botocore_exceptions = _exceptions()

    try:
        response = client().get_object(Bucket=where.bucket, Key=where.key)
        size = int(response.get("ContentLength", 0))
        if size > limit:
            response["Body"].close()
            raise ObjectStoreError(f"{where} is {size} bytes, more than the limit of {limit}")
        written = 0
        with target.open("xb") as handle:
            for chunk in response["Body"].iter_chunks(1 << 20):
                written += len(chunk)
                if written > limit:
                    raise ObjectStoreError(f"{where} is more than the limit of {limit} bytes")
                handle.write(chunk)
    except (botocore_exceptions.ClientError, botocore_exceptions.BotoCoreError) as error:
        raise describe(error, f"cannot read {where}") from None
    return written


def exists(where: S3Location) -> bool:
    botocore_exceptions = _exceptions()

    try:
        client().head_object(Bucket=where.bucket, Key=where.key)
    except botocore_exceptions.ClientError as error:
        if error_code(error) in ("NoSuchKey", "404", "NotFound"):
            return False
        raise describe(error, f"cannot read {where}") from None
    except botocore_exceptions.BotoCoreError as error:
        raise describe(error, f"cannot read {where}") from None
    return True


def put_bytes(where: S3Location, data: bytes, *, if_absent: bool = False, **extra: Any) -> bool:
    """Writes one object. With ``if_absent`` the write is conditional (``If-None-Match: *``)
    and returns ``False`` when the object already exists; a server that does not know the
    condition is asked whether the object exists first."""
    botocore_exceptions = _exceptions()

    arguments: dict[str, Any] = {"Bucket": where.bucket, "Key": where.key, "Body": data, **extra}
    try:
        if if_absent:
            try:
                client().put_object(IfNoneMatch="*", **arguments)
                return True
            except botocore_exceptions.ClientError as error:
                code = error_code(error)
                if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    return False
                if code not in ("NotImplemented", "501"):
                    raise
            if exists(where):
                return False
        client().put_object(**arguments)
    except (botocore_exceptions.ClientError, botocore_exceptions.BotoCoreError) as error:
        raise describe(error, f"cannot write {where}") from None
    return True


def list_keys(where: S3Location, *, delimiter: str = "") -> Iterator[str]:
    """Keys under ``where`` (or, with ``delimiter="/"``, the names of its sub-prefixes
    followed by its direct objects), relative to it."""
    botocore_exceptions = _exceptions()

    arguments: dict[str, Any] = {"Bucket": where.bucket, "Prefix": where.prefix}
    if delimiter:
        arguments["Delimiter"] = delimiter
    try:
        for page in client().get_paginator("list_objects_v2").paginate(**arguments):
            for common in page.get("CommonPrefixes", []):
                yield str(common["Prefix"])[len(where.prefix) :].rstrip("/") + "/"
            for item in page.get("Contents", []):
                yield str(item["Key"])[len(where.prefix) :]
    except (botocore_exceptions.ClientError, botocore_exceptions.BotoCoreError) as error:
        raise describe(error, f"cannot list {where}") from None


def delete(where: S3Location) -> None:
    botocore_exceptions = _exceptions()

    try:
        client().delete_object(Bucket=where.bucket, Key=where.key)
    except (botocore_exceptions.ClientError, botocore_exceptions.BotoCoreError) as error:
        raise describe(error, f"cannot delete {where}") from None
