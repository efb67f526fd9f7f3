"""The model server's settings: one typed object, read once at start from flags and env.

Every field has an ``MLKUBE_SERVE_<FIELD>`` environment variable (the operator sets them
on the predictor Deployment) and the CLI flags of ``mlkube serve`` win over them. Nothing
reads the environment after ``ServeSettings`` is built; workers receive the object itself.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from mlkube.runtime.store.s3 import S3Location, location

ENV_PREFIX: Final = "MLKUBE_SERVE_"
MIB: Final = 1 << 20


class SettingsError(ValueError):
    """A setting has a value the server cannot use; the message names it."""


@dataclass(frozen=True)
class ServeSettings:
    """What ``mlkube serve`` needs to know; each field's env var is ``MLKUBE_SERVE_<NAME>``."""

    model_dir: Path | S3Location
    """The version ``<store>/<ns>/<model>/v<N>`` to serve: a directory, or ``s3://…`` (fetched
    into ``model_cache`` and verified before it loads)."""
    sha256: str | None = None
    """Expected sha256 of the artifact (set by the operator); wins over metadata.json's."""
    engine: str = "auto"
    """What predicts: ``auto`` (onnxruntime when the version has a verified ONNX file,
    else scikit-learn), ``onnx`` (a startup error without one) or ``sklearn``."""
    onnx_sha256: str | None = None
    """Expected sha256 of ``model.onnx`` (set by the operator); wins over metadata.json's."""
    host: str = "0.0.0.0"  # noqa: S104  # a server in a pod listens on every interface
    port: int = 8080
    workers: int = 1
    """Server processes sharing the port through SO_REUSEPORT."""
    log_dir: Path | S3Location | None = None
    """Inference log directory or ``s3://…`` prefix; ``None`` means ``<model-dir>/../inference``."""
    model_cache: Path | None = None
    """Where an ``s3://`` version is downloaded (an emptyDir in a pod; default: a temp dir)."""
    sample_rate: float = 0.0
    """Share of inference requests whose rows are logged (0 disables logging)."""
    max_body_bytes: int = 16 * MIB
    """Request bodies above this get 413."""
    max_batch_rows: int = 100_000
    """Batches with more rows than this get 413."""
    max_in_flight: int = 64
    """Predictions admitted at once per worker (counted once a body has fully arrived, so
    slow senders hold none); beyond it 503 with Retry-After, and readiness says 503 too."""
    body_timeout: float = 10.0
    """Seconds a request body may take to arrive in full; after it, 408 and the connection
    is closed, so half-sent bodies cannot pile up."""
    inline_predict_ms: float = 0.2
    """Models whose warm-up predict takes less run on the event loop (no thread hop); the
    others on one prediction thread per worker, where concurrent requests are batched."""
    batch_rows: int = 256
    """Rows one model call may coalesce from concurrent requests; 0 turns batching off."""
    batch_wait_ms: float = 1.0
    """Longest time spent letting requests join a call before it starts (no timer: the
    gathering ends at once when a pass of the event loop brings nobody new)."""
    graceful_timeout: float = 30.0
    """Seconds to finish in-flight requests and flush logs after SIGTERM."""
    log_queue_rows: int = 50_000
    """Rows the inference log may hold in memory before it drops (and counts) the excess."""
    log_rotate_bytes: int = 64 * MIB
    log_retain_bytes: int = 2048 * MIB
    """Oldest inference-log files are deleted beyond this total."""
    log_retain_files: int = 10_000
    log_batch_rows: int = 10_000
    """To S3: rows per inference-log object (or ``log_batch_seconds``, whichever first)."""
    log_batch_seconds: float = 60.0
    log_pending_bytes: int = 64 * MIB
    """To S3: compressed log objects held for a retry at most; beyond it the oldest drop."""
    writer_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    """Prefix of this process's log files; unique per process so writers never collide."""

    @property
    def inference_log_dir(self) -> Path | S3Location:
        return self.log_dir if self.log_dir is not None else self.model_dir.parent / "inference"

    def for_worker(self, index: int) -> ServeSettings:
        """A worker process's copy: its own writer id so log files never collide."""
        return dataclasses.replace(self, writer_id=f"{socket.gethostname()}-{os.getpid()}-w{index}")


def _convert(name: str, raw: Any) -> Any:
    if name in ("model_dir", "log_dir") and isinstance(raw, str):
        try:
            return location(raw)
        except ValueError as error:
            raise SettingsError(f"{name} ({ENV_PREFIX + name.upper()}): {error}") from None
    kind = {
        "model_dir": Path,
        "log_dir": Path,
        "model_cache": Path,
        "sha256": str,
        "onnx_sha256": str,
        "engine": str,
        "host": str,
        "writer_id": str,
        "sample_rate": float,
        "inline_predict_ms": float,
        "batch_wait_ms": float,
        "graceful_timeout": float,
        "body_timeout": float,
        "log_batch_seconds": float,
    }.get(name, int)
    if raw is None or isinstance(raw, kind):
        return raw
    try:
        return kind(raw)
    except (TypeError, ValueError):
        env = ENV_PREFIX + name.upper()
        raise SettingsError(f"{name} ({env}) must be {kind.__name__}, got {raw!r}") from None


def load_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> ServeSettings:
    """Builds the settings: flags (not ``None``) win over ``MLKUBE_SERVE_*`` variables."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ServeSettings):
        raw = flags.get(f.name)
        if raw is None:
            raw = env.get(ENV_PREFIX + f.name.upper()) or None
        if raw is not None:
            values[f.name] = _convert(f.name, raw)
    if "model_dir" not in values:
        raise SettingsError(f"--model-dir (or {ENV_PREFIX}MODEL_DIR) is required")
    settings = ServeSettings(**values)
    _check(settings)
    return settings


def _check(s: ServeSettings) -> None:
    if not 0.0 <= s.sample_rate <= 1.0:
        raise SettingsError(f"sample_rate must be between 0 and 1, got {s.sample_rate}")
    if not 0 <= s.port <= 65535:
        raise SettingsError(f"port must be between 0 and 65535, got {s.port}")
    positive = (
        "workers",
        "max_body_bytes",
        "max_batch_rows",
        "max_in_flight",
        "log_queue_rows",
        "log_rotate_bytes",
        "log_retain_bytes",
        "log_retain_files",
        "log_batch_rows",
        "log_pending_bytes",
    )
    for name in positive:
        if getattr(s, name) < 1:
            raise SettingsError(f"{name} must be at least 1, got {getattr(s, name)}")
    if s.log_batch_seconds <= 0:
        raise SettingsError(f"log_batch_seconds must be positive, got {s.log_batch_seconds}")
    if s.body_timeout <= 0:
        raise SettingsError(f"body_timeout must be positive, got {s.body_timeout}")
    if s.batch_rows < 0:
        raise SettingsError(f"batch_rows must be 0 (no batching) or more, got {s.batch_rows}")
    if not 0 <= s.batch_wait_ms <= 1000:
        raise SettingsError(f"batch_wait_ms must be between 0 and 1000, got {s.batch_wait_ms}")
    for name in ("sha256", "onnx_sha256"):
        value = getattr(s, name)
        if value is not None and (len(value) != 64 or not _is_hex(value)):
            raise SettingsError(f"{name} must be 64 hex digits, got {value!r}")
    if s.engine not in ("auto", "onnx", "sklearn"):
        raise SettingsError(f"engine must be auto, onnx or sklearn, got {s.engine!r}")


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True
