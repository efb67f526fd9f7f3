"""A forked helper process that does the trainer's writing work on a second core.

Why: after the fit a run still needs skops (the artifact) and skl2onnx + onnxruntime (the
compiled model and its check). Importing them is ~0.8 s of Python (skops builds its
trusted-type tables by importing every scikit-learn estimator), and on a thread of the
trainer that work mostly waits on the interpreter lock the fit holds, so a short fit
paid it nearly in full (issue 16: a HistGradientBoosting run was 1.36x a bare fit). A
process forked once the data is read (it has the holdout rows without a copy) imports
them on another core while the trainer fits; after the fit it receives the pipeline and
the trainer's holdout predictions, and returns the skops bytes and the verified ONNX
model while the trainer builds the reference profile and the rest of the metadata.

Only where two cores are usable (CPU affinity and the cgroup's CPU limit: the default
trainer limit is 2); otherwise, or when the helper fails in any way (it died, a pickle
failed, the pipe broke), the trainer does the same work itself, so the helper can make a
run faster but never different. The pipeline travels by pickle between two processes of
the same run: nothing from the store is unpickled. If the trainer dies the pipe closes and
the helper exits.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import multiprocessing
import os
import pickle
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from mlkube.runtime.compiled import Compiled, compile_pipeline

WRITER_MODULES: Final = ("skops.io", "skl2onnx", "onnxruntime")
JOIN_SECONDS: Final = 5.0
ANSWER_SECONDS: Final = 900.0  # a helper that hangs is killed and the trainer takes over
# Larger pipelines (a forest of deep trees) are not worth a copy through a pipe.
MAX_PAYLOAD_BYTES: Final = 256 * 1024 * 1024


class WriterHelper:
    """The forked process: ``submit`` hands it the fitted pipeline, ``result`` takes its
    answer (or None), ``close`` ends it."""

    def __init__(self, holdout: Any, task: str, features: list[Any]) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        # Forked after the data is read: the helper has the holdout rows without a copy.
        self._process = context.Process(
            target=_serve,
            args=(child, holdout, task, features),
            name="mlkube-train-writer",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._submitted = False

    def submit(self, pipeline: Any, expected: tuple[Any, Any]) -> None:
        """Sends the job; a pipeline too large to pass around is left to the trainer."""
        try:
            payload = pickle.dumps((pipeline, expected), protocol=pickle.HIGHEST_PROTOCOL)
            if len(payload) <= MAX_PAYLOAD_BYTES:
                self._conn.send_bytes(payload)
                self._submitted = True
        except Exception:
            self._submitted = False
        if not self._submitted:
            self.close()

    def result(self) -> tuple[bytes, Compiled] | None:
        """The skops bytes and the compiled model, or None when the helper failed."""
        if not self._submitted:
            return None
        try:
            answer = pickle.loads(self._receive())  # noqa: S301 -- our own child
        except Exception:
            return None
        finally:
            self.close()
        if not (isinstance(answer, tuple) and len(answer) == 2):
            return None
        artifact, compiled = answer
        if not isinstance(artifact, bytes) or not isinstance(compiled, Compiled):
            return None
        return artifact, compiled

    def _receive(self) -> bytes:
        """The answer; ``EOFError`` once the helper is gone or ``ANSWER_SECONDS`` passed."""
        deadline = time.monotonic() + ANSWER_SECONDS
        while not self._conn.poll(1.0):
            if not self._process.is_alive() or time.monotonic() > deadline:
                raise EOFError("the writer helper gave no answer")
        return self._conn.recv_bytes()

    def close(self) -> None:
        """Ends the helper (idempotent); one that was given no job is killed at once."""
        self._conn.close()
        if self._submitted:
            self._process.join(JOIN_SECONDS)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def start_helper(holdout: Any, task: str, features: list[Any]) -> WriterHelper | None:
    """A helper, or None when a process cannot be forked; the caller has checked that
    two cores are usable (``usable_cpus``)."""
    try:
        return WriterHelper(holdout, task, features)
    except OSError:
        return None


def usable_cpus() -> float:
    """CPUs this process may use: its affinity, capped by a cgroup CPU limit (v2 or v1)."""
    cpus = float(len(os.sched_getaffinity(0)))
    return min(cpus, _cgroup_cpus(Path("/sys/fs/cgroup")))


def _cgroup_cpus(root: Path) -> float:
    """The cgroup's CPU limit in CPUs (``inf`` without one)."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = (root / "cpu.max").read_text().split()
        return math.inf if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return math.inf if quota_us <= 0 else quota_us / period_us
    return math.inf


def _serve(conn: Connection, holdout: Any, task: str, features: list[Any]) -> None:
    """The helper's whole life: import, wait for the one job, answer it (or exit quietly:
    the trainer then does the work itself)."""
    for name in WRITER_MODULES:
        with contextlib.suppress(Exception):  # a failed import fails again where used
            importlib.import_module(name)
    try:
        pipeline, expected = pickle.loads(conn.recv_bytes())  # noqa: S301 -- our parent
    except (EOFError, OSError):
        return  # the trainer ended (or failed) before the fit was done
    with contextlib.suppress(Exception):
        import skops.io as sio

        compiled = compile_pipeline(pipeline, holdout, task, features=features, expected=expected)
        conn.send_bytes(pickle.dumps((sio.dumps(pipeline), compiled)))
