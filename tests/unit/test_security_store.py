"""Issue 13: nothing written to the store can run code, and a data URI stays in its claim.

- the artifact allow-list names classes exactly, never a function: a node of a real
  trained artifact rewritten into a call of ``builtins.eval`` (digest updated to match) is
  refused before skops builds anything, and the function is never called;
- the digest is checked on the very bytes that are loaded (the file is read once; a file
  swapped after the first read is never loaded);
- ``pvc://claim//absolute/path``, ``.``, ``..``, empty segments and backslashes after the
  claim are refused, and a run naming a readable table outside the claim trains nothing.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from mlkube.runtime.artifact import ArtifactError, load_pipeline
from mlkube.runtime.trusted import allowed_type_names
from reliability.tamper import rewrite_node_into_call
from reliability.workspace import Reference, model_manifest


def _train(args: list[str]) -> tuple[int, str, str]:
    from mlkube.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", *args])
    return code, out.getvalue(), err.getvalue()


def test_a_node_rewritten_into_a_builtin_call_is_refused_before_anything_is_built(
    version: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skops.io as sio

    calls: list[object] = []
    built: list[object] = []
    monkeypatch.setattr(builtins, "eval", lambda *args: calls.append(args))
    for loader in ("load", "loads"):
        real = getattr(sio, loader)
        monkeypatch.setattr(
            sio, loader, lambda *a, _real=real, **k: built.append(a) or _real(*a, **k)
        )
    rewrite_node_into_call(version, "builtins", "eval", "__import__('os').getpid()")
    with pytest.raises(ArtifactError, match=r"untrusted types: builtins\.eval"):
        load_pipeline(version)
    assert calls == [] and built == []


def test_the_allow_list_names_only_classes_and_no_function() -> None:
    names = allowed_type_names()
    assert "sklearn.linear_model._logistic.LogisticRegression" in names
    for name in names:
        module, _, attr = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attr), type), name
    for callable_name in ("builtins.eval", "builtins.exec", "posix.system", "numpy.load"):
        assert callable_name not in names


def test_the_digest_is_checked_on_the_bytes_that_are_loaded(
    version: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skops.io as sio
    from sklearn.dummy import DummyClassifier

    other = version.parent / "other.skops"
    sio.dump(DummyClassifier().fit([[0.0]], [0]), other)
    artifact = version / "model.skops"
    opened: list[str] = []
    real_open = io.open

    def swapping_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == str(artifact):
            opened.append(str(file))
            if len(opened) > 1:  # a second read sees a file swapped after the check
                file = other
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", swapping_open)
    loaded = load_pipeline(version)
    assert type(loaded).__name__ == "Pipeline" and len(opened) == 1


@pytest.mark.parametrize(
    "inner", ["/{outside}", "a//{outside}", "./{name}", "a/../{name}", "a\\..\\{name}", "{name}/"]
)
def test_a_pvc_uri_cannot_leave_its_claim(tmp_path: Path, inner: str) -> None:
    from mlkube.runtime.train import TrainingInputError
    from mlkube.runtime.train.data import pvc_path

    outside = tmp_path / "outside.csv"
    uri = "pvc://claim/" + inner.format(outside=str(outside).lstrip("/"), name="data.csv")
    with pytest.raises(TrainingInputError, match=r"without '//', '\.' or '\.\.' segments"):
        pvc_path(uri, tmp_path / "pvc")
    assert pvc_path("pvc://claim/team/data.csv", tmp_path / "pvc") == (
        tmp_path / "pvc" / "claim" / "team" / "data.csv"
    )


def test_a_pvc_uri_with_an_absolute_path_trains_on_nothing_outside_the_claim(
    reference: Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLKUBE_PVC_ROOT", str(tmp_path / "pvc"))
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(model_manifest(f"pvc://claim/{reference.data}")))
    code, _, err = _train(["-f", str(manifest), "--store", str(tmp_path / "store")])
    assert code == 2 and "without '//'" in err.splitlines()[-1]
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("v*"))
