"""Which engine predicts: onnxruntime on the version's verified ONNX file, or scikit-learn.

Why a choice at all: the ONNX file answers in microseconds where scikit-learn takes a
fraction of a millisecond (linear models) to several (forests), but it is only used when
the trainer verified it against scikit-learn on the holdout (``metadata.json``'s
``compiled``; see ``mlkube.runtime.compiled``). ``auto`` picks onnx exactly then, and
scikit-learn otherwise, with the reason; ``onnx`` makes a version without a verified
file a startup error; ``sklearn`` never reads the ONNX file.

The digest rules of the skops artifact apply: the file is read once, its sha256 is
checked against the expected one (``--onnx-sha256`` from the operator wins over
``metadata.json``'s), and the session is built from those same bytes. A file whose digest
does not match refuses to start in ``auto`` too: a tampered store is not a fallback case.
Inputs that float32 cannot hold (finite values beyond its range), and categories the
ONNX model was not verified on, go to scikit-learn.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from mlkube.runtime.artifact import ArtifactError, Metadata, read_artifact
from mlkube.runtime.compiled import (
    ONNX_FILE,
    CompiledModelError,
    Feeder,
    open_session,
    run_session,
)

ENGINES: Final = ("auto", "onnx", "sklearn")


@dataclass(frozen=True)
class Compiled:
    """A verified, loaded ONNX model: ``predict`` gives class positions and probabilities
    (classifiers) or float64 predictions (regressors)."""

    session: Any
    classifier: bool
    feeder: Feeder

    def predict(self, x: NDArray[Any]) -> tuple[NDArray[np.intp], NDArray[np.float64]] | None:
        """None when the compiled model cannot take these rows (a number beyond float32,
        a category it was not verified on): the caller uses scikit-learn."""
        feed = self.feeder.feed(x)
        if feed is None:
            return None
        return run_session(self.session, feed, self.classifier)


@dataclass(frozen=True)
class Choice:
    compiled: Compiled | None
    reason: str

    @property
    def engine(self) -> str:
        return "sklearn" if self.compiled is None else "onnx"


def choose_engine(
    model_dir: Path,
    metadata: Metadata,
    requested: str,
    expected_sha256: str | None,
    servable: bool,
) -> Choice:
    """The engine for this version; ``ArtifactError`` when onnx is forced but impossible
    or when the ONNX file does not match its digest."""
    if requested not in ENGINES:
        raise ArtifactError(f"unknown engine {requested!r}; choose one of {', '.join(ENGINES)}")
    if requested == "sklearn":
        return Choice(None, "forced by --engine sklearn")
    record = metadata.get("compiled")
    why_not = None
    if not isinstance(record, dict):
        why_not = "the version has no compiled model (trained before compiled inference)"
    elif record.get("verified") is not True:
        why_not = f"the ONNX conversion was not verified ({record.get('verdict')}): " + str(
            record.get("reason")
        )
    elif not servable:
        why_not = "this version's pipeline takes a DataFrame (it has no array input layout)"
    if why_not is not None:
        if requested == "onnx":
            raise ArtifactError(f"--engine onnx, but {model_dir} cannot use it: {why_not}")
        return Choice(None, why_not)
    assert isinstance(record, dict)
    data = _read_verified(model_dir, record, expected_sha256)
    try:
        session = open_session(data)
    except CompiledModelError as error:
        raise ArtifactError(f"{model_dir / ONNX_FILE}: {error}") from None
    columns = record.get("columns")
    compiled = Compiled(session, metadata["task"] == "classification", Feeder(session, columns))
    reason = (
        f"{ONNX_FILE} verified at training on {record.get('rows')} holdout rows (max "
        f"difference {record.get('maxDifference', float('nan')):.2g}, tolerance "
        f"{record.get('tolerance')}), sha256 checked"
    )
    if requested == "onnx":
        reason += "; forced by --engine onnx"
    return Choice(compiled, reason)


def _read_verified(model_dir: Path, record: dict[str, Any], expected: str | None) -> bytes:
    """The ONNX file's bytes, read once, after checking their sha256."""
    if record.get("file") != ONNX_FILE:
        raise ArtifactError(
            f"{model_dir}/metadata.json names the compiled model {record.get('file')!r}, "
            f"not {ONNX_FILE}; refusing to load"
        )
    path = model_dir / ONNX_FILE
    data = read_artifact(path)
    want = str(expected or record.get("sha256") or "").lower()
    actual = hashlib.sha256(data).hexdigest()
    if actual != want:
        raise ArtifactError(
            f"sha256 mismatch for {path}: expected {want or 'a recorded digest'}, file has "
            f"{actual}; refusing to load (serve with --engine sklearn to ignore the file)"
        )
    return data
