"""The trainer's settings, read once from ``MLKUBE_…`` environment variables at start.

They describe the pod the trainer runs in (where claims are mounted, how far it may
trust a download, which code a manifest may name), not the model: that is the spec's job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mlkube.runtime.train import TrainingInputError


@dataclass(frozen=True)
class TrainSettings:
    """Environment of one ``mlkube train`` run.

    - ``pvc_root`` (``MLKUBE_PVC_ROOT``, default ``/mnt/pvc``): ``pvc://claim/path`` reads
      ``<pvc_root>/claim/path``; the operator mounts each claim there.
    - ``estimator_allowlist`` (``MLKUBE_ESTIMATOR_ALLOWLIST``, comma-separated import-path
      prefixes, default ``sklearn.``): a manifest may name only classes under these, so a
      manifest cannot make the trainer import arbitrary code.
    - ``http_max_bytes`` (``MLKUBE_HTTP_MAX_BYTES``, default 1 GiB) and
      ``http_timeout_seconds`` (``MLKUBE_HTTP_TIMEOUT_SECONDS``, default 60, the total time
      of an ``http(s)://`` download): bounds on an ``http(s)://`` or ``s3://`` download, so
      a wrong URI fails instead of filling the pod.
    - ``max_decompressed_bytes`` (``MLKUBE_DATA_MAX_DECOMPRESSED_BYTES``, default 4 GiB): a
      ``.gz`` data file may not expand beyond this (a small gzip bomb cannot fill memory).
    - ``allowed_internal_hosts`` (``MLKUBE_ALLOWED_INTERNAL_HOSTS``, comma-separated host
      names, addresses or CIDR networks, default none): ``http(s)://`` data hosts that may
      be inside the cluster or private; every other internal destination is refused
      before connecting (see ``mlkube.runtime.train.fetch``).
    - ``profile_sample_rows`` (``MLKUBE_PROFILE_SAMPLE_ROWS``, default 20000): the reference
      profile for drift is built from at most this many training rows, which keeps its
      cost flat on large data sets.
    """

    pvc_root: Path = Path("/mnt/pvc")
    estimator_allowlist: tuple[str, ...] = ("sklearn.",)
    http_max_bytes: int = 1 << 30
    http_timeout_seconds: float = 60.0
    profile_sample_rows: int = 20_000
    max_decompressed_bytes: int = 4 << 30
    allowed_internal_hosts: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrainSettings:
        env = os.environ if environ is None else environ
        allow = tuple(
            p.strip() for p in env.get("MLKUBE_ESTIMATOR_ALLOWLIST", "sklearn.").split(",")
        )
        allow = tuple(p for p in allow if p)
        if not allow:
            raise TrainingInputError("MLKUBE_ESTIMATOR_ALLOWLIST is set but names no prefix")
        return cls(
            pvc_root=Path(env.get("MLKUBE_PVC_ROOT", "/mnt/pvc")),
            estimator_allowlist=allow,
            http_max_bytes=_positive(env, "MLKUBE_HTTP_MAX_BYTES", 1 << 30, int),
            http_timeout_seconds=_positive(env, "MLKUBE_HTTP_TIMEOUT_SECONDS", 60.0, float),
            profile_sample_rows=_positive(env, "MLKUBE_PROFILE_SAMPLE_ROWS", 20_000, int),
            max_decompressed_bytes=_positive(
                env, "MLKUBE_DATA_MAX_DECOMPRESSED_BYTES", 4 << 30, int
            ),
            allowed_internal_hosts=tuple(
                host for host in _list(env, "MLKUBE_ALLOWED_INTERNAL_HOSTS") if host
            ),
        )


def _list(env: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in env.get(name, "").split(",")]


_Number = TypeVar("_Number", int, float)


def _positive(env: Mapping[str, str], name: str, default: _Number, kind: type[_Number]) -> _Number:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise TrainingInputError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise TrainingInputError(f"{name} must be positive, got {raw}")
    return value
