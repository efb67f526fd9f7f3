"""The bad-input corpus: every way a user (or a broken disk) can feed mlkube bad input.

Each case records the input, the message fragment the user must see, and where it
appears: the one ``mlkube …: error:`` line on stderr with its exit code (trainer, server
start-up, drift check), the HTTP status and ``{"error": …}`` body (inference), or the
``Ready`` condition and Event on a resource (operator). The runner (``runner.py``) also
checks what must *not* happen: a traceback, a 500, a dead server, or any change to the
model store (no half-written or corrupt version).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from reliability.workspace import (
    FEATURES,
    MODEL,
    NAMESPACE,
    Reference,
    churn_frame,
    model_manifest,
)

NOW: Final = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
Build = Callable[[Path, Reference], list[str]]


@dataclass(frozen=True)
class CliCase:
    """``mlkube <args>`` must exit with ``exit_code`` and one stderr line holding ``expect``."""

    id: str
    surface: str  # train | serve | drift
    problem: str
    expect: str
    build: Build
    exit_code: int = 2
    writes: str | None = None  # glob (store-relative) of the one file a success may write

    @property
    def where(self) -> str:
        if self.writes:
            return f"exit {self.exit_code} + report"
        return f"stderr + exit {self.exit_code}"


@dataclass(frozen=True)
class HttpCase:
    """A request to a running ``mlkube serve`` that must get ``status`` and ``expect``."""

    id: str
    problem: str
    method: str
    path: str
    body: bytes
    status: int
    expect: str
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    surface: str = "infer"

    @property
    def where(self) -> str:
        return f"HTTP {self.status} + body"


@dataclass(frozen=True)
class ResourceCase:
    """Objects only the operator can reject: ``kind/name`` gets ``Ready=False`` + an Event."""

    id: str
    problem: str
    manifests: list[dict[str, Any]]
    kind: str
    name: str
    expect: str
    reason: str = "InvalidSpec"
    event: bool = True  # False: only the condition tells (a gap listed in docs/reliability.md)
    surface: str = "resource"

    @property
    def where(self) -> str:
        return f"{self.kind} Ready=False/{self.reason} + Event"


# ---------------------------------------------------------------- trainer


def _train_args(case: Path, manifest: dict[str, Any], *extra: str) -> list[str]:
    path = case / "model.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return [
        "train",
        "-f",
        str(path),
        "--store",
        str(case / "store"),
        "--termination-log",
        str(case / "termination-log"),
        *extra,
    ]


def _data(name: str, content: bytes | Callable[[Path], None], **training: Any) -> Build:
    def build(case: Path, _ref: Reference) -> list[str]:
        path = case / name
        if callable(content):
            content(path)
        else:
            path.write_bytes(content)
        return _train_args(case, model_manifest(str(path), **training))

    return build


def _manifest(
    change: Callable[[dict[str, Any]], None], *extra: str, uri: str | None = None
) -> Build:
    def build(case: Path, ref: Reference) -> list[str]:
        manifest = model_manifest(uri or str(ref.data))
        change(manifest)
        return _train_args(case, manifest, *extra)

    return build


def _csv_frame(change: Callable[[Any], Any], **csv: Any) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        change(churn_frame(200)).to_csv(path, index=False, **csv)

    return write


def _nan_target(frame: Any) -> Any:
    frame.loc[::4, "churned"] = None
    return frame


def _truncated_parquet(path: Path) -> None:
    churn_frame(300).to_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _huge_line(path: Path) -> None:
    with path.open("wb") as out:
        out.write(b"age,income,region,plan,churned\n")
        out.write(b"1," + b"9" * (8 << 20) + b",north,basic,yes\n")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(manifest: dict[str, Any]) -> None:
        node = manifest
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value

    return change


def _model_json(text: str) -> Build:
    def build(case: Path, _ref: Reference) -> list[str]:
        return [
            "train",
            "--model-json",
            text,
            "--store",
            str(case / "store"),
            "--termination-log",
            str(case / "termination-log"),
        ]

    return build


def _existing_version(case: Path, ref: Reference) -> list[str]:
    return _train_args(case, model_manifest(str(ref.data)), "--version", "1")


TRAIN: Final[list[CliCase]] = [
    CliCase("train-data-empty", "train", "data file of 0 bytes", "empty", _data("data.csv", b"")),
    CliCase(
        "train-data-header-only",
        "train",
        "CSV with a header and no rows",
        "0 rows",
        _data("data.csv", b"age,income,region,plan,churned\n"),
    ),
    CliCase(
        "train-data-binary",
        "train",
        "binary garbage named .csv",
        "not readable as CSV",
        _data("data.csv", os.urandom(0) + bytes(range(256)) * 64),
    ),
    CliCase(
        "train-data-delimiter",
        "train",
        "semicolon-delimited CSV",
        "target column 'churned'",
        _data("data.csv", _csv_frame(lambda f: f, sep=";")),
    ),
    CliCase(
        "train-data-no-target",
        "train",
        "target column absent",
        "target column 'churned'",
        _data("data.csv", _csv_frame(lambda f: f.drop(columns=["churned"]))),
    ),
    CliCase(
        "train-data-nan-target",
        "train",
        "a quarter of the target is missing",
        "churned (25.0% missing)",
        _data("data.csv", _csv_frame(_nan_target)),
    ),
    CliCase(
        "train-data-huge-line",
        "train",
        "one 8 MiB field on one line",
        "1 rows",
        _data("data.csv", _huge_line),
    ),
    CliCase(
        "train-data-not-utf8",
        "train",
        "Latin-1 bytes in a CSV",
        "UTF-8",
        _data(
            "data.csv",
            "age,income,region,plan,churned\n1,2,K\xf6ln,basic,yes\n".encode("latin-1") * 50,
        ),
    ),
    CliCase(
        "train-data-parquet-truncated",
        "train",
        "Parquet file cut in half",
        "not readable as Parquet",
        _data("data.parquet", _truncated_parquet),
    ),
    CliCase(
        "train-data-missing",
        "train",
        "data file does not exist",
        "does not exist",
        _manifest(lambda m: None, uri="/nonexistent/churn.csv"),
    ),
    CliCase(
        "train-estimator-not-allowed",
        "train",
        "estimator outside the allow-list",
        "os.system",
        _manifest(_set("spec.training.estimator.class", "os.system")),
    ),
    CliCase(
        "train-estimator-bad-param",
        "train",
        "unknown estimator parameter",
        "n_estimatorz",
        _manifest(_set("spec.training.estimator.params", {"n_estimatorz": 3})),
    ),
    CliCase(
        "train-version-negative",
        "train",
        "--version -1",
        "--version",
        lambda c, r: _train_args(c, model_manifest(str(r.data)), "--version", "-1"),
    ),
    CliCase(
        "train-version-exists",
        "train",
        "version already in the store",
        "already exists",
        _existing_version,
    ),
    CliCase(
        "train-uri-pvc-traversal",
        "train",
        "pvc://claim/../../etc/passwd",
        "pvc://",
        _manifest(lambda m: None, uri="pvc://claim/../../etc/passwd"),
    ),
    CliCase(
        "train-uri-sklearn-traversal",
        "train",
        "sklearn://../x",
        "sklearn://",
        _manifest(lambda m: None, uri="sklearn://../x"),
    ),
    CliCase(
        "train-name-traversal",
        "train",
        "metadata.name ../evil",
        "name",
        _manifest(_set("metadata.name", "../evil")),
    ),
    CliCase(
        "train-namespace-traversal",
        "train",
        "--namespace ../../tmp",
        "namespace",
        lambda c, r: _train_args(c, model_manifest(str(r.data)), "--namespace", "../../tmp"),
    ),
    CliCase(
        "train-model-json-invalid",
        "train",
        "--model-json is not JSON",
        "not valid JSON",
        _model_json("{not json"),
    ),
    CliCase(
        "train-slice-code",
        "train",
        "slice query that tries to run code",
        "slice",
        _manifest(
            _set(
                "spec.training.validation",
                {"slices": [{"name": "x", "query": "__import__('os').system('id')"}]},
            )
        ),
    ),
    CliCase(
        "train-pvc-absolute-path",
        "train",
        "pvc://claim//<absolute path of a readable table outside the claim>",
        "without '//'",
        lambda case, ref: _train_args(case, model_manifest(f"pvc://claim/{ref.data}")),
    ),
    CliCase(
        "train-metric-wrong-task",
        "train",
        "regression metric on a classifier",
        "metric",
        _manifest(_set("spec.training.validation", {"metric": "r2"})),
    ),
]

# ---------------------------------------------------------------- server start-up


def _serve(change: Callable[[Path, Reference], Path], *extra: str) -> Build:
    def build(case: Path, ref: Reference) -> list[str]:
        version = change(case, ref)
        return ["serve", "--model-dir", str(version), "--port", "0", "--host", "127.0.0.1", *extra]

    return build


def _v1(case: Path) -> Path:
    return case / "store" / NAMESPACE / MODEL / "v1"


def _truncate_artifact(case: Path, _ref: Reference) -> Path:
    path = _v1(case) / "model.skops"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return _v1(case)


def _flip_byte(case: Path, _ref: Reference) -> Path:
    path = _v1(case) / "model.skops"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return _v1(case)


def _edit_metadata(change: Callable[[dict[str, Any]], None]) -> Callable[[Path, Reference], Path]:
    def edit(case: Path, _ref: Reference) -> Path:
        path = _v1(case) / "metadata.json"
        document = json.loads(path.read_text())
        change(document)
        path.write_text(json.dumps(document))
        return _v1(case)

    return edit


def _write_metadata(content: bytes | None) -> Callable[[Path, Reference], Path]:
    def edit(case: Path, _ref: Reference) -> Path:
        path = _v1(case) / "metadata.json"
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content)
        return _v1(case)

    return edit


def _untrusted_type(case: Path, _ref: Reference) -> Path:
    """A version whose skops file would construct ``os.system``: hash and metadata are
    consistent, so only the type allow-list stands between it and the loader."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from mlkube.runtime.artifact import read_metadata, write_version

    metadata = dict(read_metadata(_v1(case)))
    metadata.pop("artifact")
    metadata["version"] = 2
    evil = Pipeline([("run", FunctionTransformer(os.system))])
    target = _v1(case).parent / "v2"
    write_version(target, evil, metadata)
    return target


def _node_rewritten_into_call(case: Path, _ref: Reference) -> Path:
    """One node of the real artifact now calls ``builtins.eval`` on load; the digest in
    metadata.json was updated to match, as anyone who can write to the store can do."""
    from reliability.tamper import rewrite_node_into_call

    rewrite_node_into_call(_v1(case), "builtins", "eval", "__import__('os').getpid()")
    return _v1(case)


def _missing_dir(case: Path, _ref: Reference) -> Path:
    return _v1(case).parent / "v7"


def _escaping_artifact(case: Path, _ref: Reference) -> Path:
    """metadata.json names an artifact outside the version directory."""
    outside = case / "store" / "outside.skops"
    shutil.copy(_v1(case) / "model.skops", outside)
    _edit_metadata(lambda m: m["artifact"].update(file="../../../outside.skops"))(case, _ref)
    (_v1(case) / "model.skops").unlink()
    return _v1(case)


SERVE: Final[list[CliCase]] = [
    CliCase(
        "artifact-truncated",
        "serve",
        "model.skops cut to a third",
        "sha256 mismatch",
        _serve(_truncate_artifact),
    ),
    CliCase(
        "artifact-tampered-byte",
        "serve",
        "one bit flipped in model.skops",
        "sha256 mismatch",
        _serve(_flip_byte),
    ),
    CliCase(
        "artifact-wrong-expected-sha",
        "serve",
        "--sha256 of another artifact",
        "sha256 mismatch",
        _serve(lambda c, r: _v1(c), "--sha256", "ab" * 32),
    ),
    CliCase(
        "artifact-sha-not-hex",
        "serve",
        "--sha256 not hex",
        "sha256 must be 64 hex",
        _serve(lambda c, r: _v1(c), "--sha256", "not-a-digest"),
    ),
    CliCase(
        "artifact-metadata-missing",
        "serve",
        "metadata.json deleted",
        "no metadata.json",
        _serve(_write_metadata(None)),
    ),
    CliCase(
        "artifact-metadata-corrupt",
        "serve",
        "metadata.json is not JSON",
        "not valid JSON",
        _serve(_write_metadata(b'{"format": "mlkube.model/v1", ')),
    ),
    CliCase(
        "artifact-format-version",
        "serve",
        "metadata format mlkube.model/v9",
        "mlkube.model/v1",
        _serve(_edit_metadata(lambda m: m.update(format="mlkube.model/v9"))),
    ),
    CliCase(
        "artifact-untrusted-type",
        "serve",
        "skops file that would construct os.system",
        "untrusted types",
        _serve(_untrusted_type),
    ),
    CliCase(
        "artifact-node-calls-builtin",
        "serve",
        "a node of model.skops rewritten into builtins.eval(...), digest updated",
        "untrusted types: builtins.eval",
        _serve(_node_rewritten_into_call),
    ),
    CliCase(
        "artifact-library-version",
        "serve",
        "trained with scikit-learn 0.20.0",
        "scikit-learn 0.20.0",
        _serve(_edit_metadata(lambda m: m["libraries"].update({"scikit-learn": "0.20.0"}))),
    ),
    CliCase(
        "artifact-escapes-version-dir",
        "serve",
        "artifact.file = ../../../outside.skops",
        "artifact",
        _serve(_escaping_artifact),
    ),
    CliCase(
        "artifact-version-missing",
        "serve",
        "--model-dir of a version never written",
        "not a model version",
        _serve(_missing_dir),
    ),
    CliCase(
        "artifact-no-features",
        "serve",
        "metadata.json lists no features",
        "no features",
        _serve(_edit_metadata(lambda m: m.update(features=[]))),
    ),
]

# ---------------------------------------------------------------- inference requests


def _v2(inputs: list[dict[str, Any]]) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


def _row(**values: Any) -> list[dict[str, Any]]:
    base: dict[str, Any] = {"age": 40, "income": 50_000.0, "region": "north", "plan": "basic"}
    base.update(values)
    return [
        {
            "name": k,
            "shape": [1],
            "datatype": "BYTES" if isinstance(v, str) else "FP64",
            "data": [v],
        }
        for k, v in base.items()
    ]


INFER_PATH: Final = f"/v2/models/{MODEL}/infer"
PREDICT_PATH: Final = f"/v1/models/{MODEL}:predict"

INFER: Final[list[HttpCase]] = [
    HttpCase("infer-not-json", "body is not JSON", "POST", INFER_PATH, b"{not json", 400, "JSON"),
    HttpCase("infer-empty-body", "empty body", "POST", INFER_PATH, b"", 400, "empty"),
    HttpCase(
        "infer-no-inputs", "no inputs key", "POST", INFER_PATH, b'{"outputs": []}', 400, "inputs"
    ),
    HttpCase(
        "infer-missing-feature",
        "feature 'plan' absent",
        "POST",
        INFER_PATH,
        _v2([i for i in _row() if i["name"] != "plan"]),
        400,
        "plan",
    ),
    HttpCase(
        "infer-shape-mismatch",
        "shape [2] with one value",
        "POST",
        INFER_PATH,
        _v2([{**i, "shape": [2]} for i in _row()]),
        400,
        "shape",
    ),
    HttpCase(
        "infer-string-in-numeric",
        "'forty' for the numeric age",
        "POST",
        INFER_PATH,
        _v2(_row(age="forty")),
        400,
        "age",
    ),
    HttpCase(
        "infer-null-not-nullable",
        "null for a non-nullable feature",
        "POST",
        INFER_PATH,
        _v2(_row(income=None)),
        400,
        "income",
    ),
    HttpCase(
        "infer-nan-literal",
        "NaN literal (not JSON)",
        "POST",
        INFER_PATH,
        b'{"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [NaN]}]}',
        400,
        "JSON",
    ),
    HttpCase(
        "infer-huge-number",
        "1e400 overflows float64",
        "POST",
        INFER_PATH,
        _v2(_row()).replace(b"40", b"1e400", 1),
        400,
        "not valid JSON",
    ),
    HttpCase(
        "infer-deep-nesting",
        "100k nested arrays",
        "POST",
        INFER_PATH,
        b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        "not valid JSON",
    ),
    HttpCase(
        "infer-unknown-model",
        "model name not served",
        "POST",
        "/v2/models/other/infer",
        _v2(_row()),
        404,
        "other",
    ),
    HttpCase(
        "infer-traversal-model",
        "model name ../../etc",
        "POST",
        "/v2/models/..%2F..%2Fetc/infer",
        _v2(_row()),
        404,
        "no route",
    ),
    HttpCase(
        "infer-unknown-version",
        "version 9 not served",
        "POST",
        f"/v2/models/{MODEL}/versions/9/infer",
        _v2(_row()),
        404,
        "9",
    ),
    HttpCase("infer-wrong-method", "GET on the infer route", "GET", INFER_PATH, b"", 405, "POST"),
    HttpCase(
        "infer-wrong-content-type",
        "text/csv body",
        "POST",
        INFER_PATH,
        b"1,2,3",
        415,
        "text/csv",
        headers={"content-type": "text/csv"},
    ),
    HttpCase(
        "infer-body-too-large",
        "2 MiB body over a 1 MiB limit",
        "POST",
        INFER_PATH,
        b'{"inputs": [' + b" " * (2 << 20) + b"]}",
        413,
        "limit",
    ),
    HttpCase(
        "infer-too-many-rows",
        "2,000 rows over a 1,000-row limit",
        "POST",
        PREDICT_PATH,
        json.dumps({"instances": [[40, 5e4, "north", "basic"]] * 2000}).encode(),
        413,
        "at most 1000",
    ),
    HttpCase(
        "infer-v1-instances-not-list",
        "V1 instances is a string",
        "POST",
        PREDICT_PATH,
        b'{"instances": "all"}',
        400,
        "instances",
    ),
    HttpCase("infer-unknown-route", "no such route", "GET", "/v3/anything", b"", 404, "no route"),
    HttpCase(
        "infer-output-repeated",
        "'predict' named 1,000 times in outputs (multiplied the response)",
        "POST",
        INFER_PATH,
        json.dumps({"inputs": _row(), "outputs": [{"name": "predict"}] * 1000}).encode(),
        400,
        "more than once",
    ),
    HttpCase(
        "infer-request-id-too-long",
        "a 100,000-character id (copied onto every logged row)",
        "POST",
        INFER_PATH,
        json.dumps({"id": "x" * 100_000, "inputs": _row()}).encode(),
        400,
        "at most 128",
    ),
    HttpCase(
        "infer-request-id-header-too-long",
        "a 4,000-character x-request-id header",
        "POST",
        INFER_PATH,
        _v2(_row()),
        400,
        "at most 128",
        headers={"content-type": "application/json", "x-request-id": "h" * 4000},
    ),
    HttpCase(
        "infer-json-nested-100k",
        "JSON nested 100,000 deep",
        "POST",
        INFER_PATH,
        b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        "JSON",
    ),
]

# ---------------------------------------------------------------- drift checks


def _drift(
    live: Callable[[Path], Path], *extra: str, model_dir: Callable[[Path], Path] = _v1
) -> Build:
    def build(case: Path, _ref: Reference) -> list[str]:
        return [
            "drift-check",
            "--model-dir",
            str(model_dir(case)),
            "--live",
            str(live(case)),
            "--now",
            NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "--no-plot",
            *extra,
        ]

    return build


def _live_csv(change: Callable[[Any], Any]) -> Callable[[Path], Path]:
    def write(case: Path) -> Path:
        path = case / "live.csv"
        change(churn_frame(500, seed=5)[list(FEATURES)]).to_csv(path, index=False)
        return path

    return write


def _log_dir(lines: list[bytes], hours_ago: float = 1.0) -> Callable[[Path], Path]:
    def write(case: Path) -> Path:
        hour = NOW - timedelta(hours=hours_ago)
        directory = case / "live-log" / hour.strftime("%Y-%m-%d/%H")
        directory.mkdir(parents=True)
        (directory / "w0-0.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        return case / "live-log"

    return write


def _log_line(i: int) -> bytes:
    ts = (NOW - timedelta(hours=1) + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    inputs = {"age": 30 + i % 40, "income": 40_000.0 + i, "region": "north", "plan": "basic"}
    return json.dumps(
        {
            "ts": ts,
            "model": MODEL,
            "version": 1,
            "request_id": f"r{i}",
            "status": 200,
            "inputs": inputs,
            "output": "no",
        }
    ).encode()


def _empty_model_dir(case: Path) -> Path:
    path = case / "store" / NAMESPACE / MODEL / "v5"
    path.mkdir()
    return path


def _bad_monitor(case: Path, _ref: Reference) -> list[str]:
    path = case / "monitor.yaml"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "mlkube.io/v1alpha1",
                "kind": "Monitor",
                "metadata": {"name": "m"},
                "spec": {"modelRef": {"name": MODEL}, "drift": {"threshold": -1}},
            }
        )
    )
    return [*_drift(_live_csv(lambda f: f))(case, _ref), "-f", str(path)]


DRIFT: Final[list[CliCase]] = [
    CliCase(
        "drift-missing-reference",
        "drift",
        "model dir without metadata.json",
        "metadata.json",
        _drift(_live_csv(lambda f: f), model_dir=_empty_model_dir),
    ),
    CliCase(
        "drift-live-missing",
        "drift",
        "--live path does not exist",
        "does not exist",
        _drift(lambda c: c / "nowhere.csv"),
    ),
    CliCase(
        "drift-schema-mismatch",
        "drift",
        "live table lacks feature 'plan'",
        "plan",
        _drift(_live_csv(lambda f: f.drop(columns=["plan"]))),
    ),
    CliCase(
        "drift-nan-only-column",
        "drift",
        "income is NaN in every live row",
        "all-missing",
        _drift(_live_csv(lambda f: f.assign(income=float("nan")))),
        exit_code=0,
        writes="default/churn/drift/*.json",
    ),
    CliCase(
        "drift-corrupt-log",
        "drift",
        "inference log of binary garbage",
        "no line is an inference-log record",
        _drift(_log_dir([b"\x1f\x8b\x08\x00 binary", b"{{{", b"\xff\xfe"])),
    ),
    CliCase(
        "drift-empty-window",
        "drift",
        "log rows all outside the window",
        "no live rows",
        _drift(_log_dir([_log_line(i) for i in range(50)], hours_ago=48)),
        exit_code=0,
        writes="default/churn/drift/*.json",
    ),
    CliCase(
        "drift-bad-window",
        "drift",
        "--window abc",
        "abc",
        lambda c, r: [*_drift(_live_csv(lambda f: f))(c, r), "--window", "abc"],
    ),
    CliCase("drift-bad-monitor", "drift", "Monitor threshold -1", "threshold", _bad_monitor),
    CliCase(
        "drift-live-binary-parquet",
        "drift",
        "garbage named .parquet",
        "Parquet",
        _drift(lambda c: (c / "live.parquet", (c / "live.parquet").write_bytes(b"PAR1garbage"))[0]),
    ),
]

CLI_CASES: Final[list[CliCase]] = TRAIN + SERVE + DRIFT

# ---------------------------------------------------------------- resources (operator)

_MODEL_SPEC: Final[dict[str, Any]] = {
    "task": "classification",
    "storage": {"uri": "pvc://models"},
    "training": {
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        "data": {"uri": "sklearn://iris", "target": "target"},
    },
}


def _model(name: str = "m", **changes: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(_MODEL_SPEC))
    for path, value in changes.items():
        node = spec
        keys = path.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": spec,
    }


def _tj(name: str, model: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"modelRef": {"name": model}, "trigger": "manual", "reason": "corpus", **spec},
    }


def _monitor(name: str, model: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": name},
        "spec": {"modelRef": {"name": model}, "schedule": "*/10 * * * *"},
    }


RESOURCES: Final[list[ResourceCase]] = [
    ResourceCase(
        "resource-estimator-not-allowed",
        "estimator os.system",
        [_model(training__estimator={"class": "os.system"})],
        "Model",
        "m",
        "allow-list",
    ),
    ResourceCase(
        "resource-estimator-lookalike",
        "estimator sklearnx.evil.Thing",
        [_model(training__estimator={"class": "sklearnx.evil.Thing"})],
        "Model",
        "m",
        "allow-list",
    ),
    ResourceCase(
        "resource-s3-endpoint-not-allowed",
        "an s3 endpoint the operator does not allow",
        [_model(storage={"uri": "s3://bucket/models", "endpoint": "http://127.0.0.2:9000"})],
        "Model",
        "m",
        "MLKUBE_S3_ALLOWED_ENDPOINTS",
    ),
    ResourceCase(
        "resource-storage-traversal",
        "pvc://models/../../etc",
        [_model(storage={"uri": "pvc://models/../../etc"})],
        "Model",
        "m",
        "..",
    ),
    ResourceCase(
        "resource-data-traversal",
        "data pvc://data/../../etc/shadow",
        [_model(training__data={"uri": "pvc://data/../../etc/shadow", "target": "t"})],
        "Model",
        "m",
        "..",
    ),
    ResourceCase(
        "resource-pinned-version-missing",
        "serving.version 9 never trained",
        [_model(serving={"version": 9})],
        "Model",
        "m",
        "9",
        reason="InvalidPin",
    ),
    ResourceCase(
        "resource-trainingjob-missing-model",
        "TrainingJob for a Model that is absent",
        [_tj("orphan", "ghost")],
        "TrainingJob",
        "orphan",
        "ghost",
        reason="ModelNotFound",
    ),
    ResourceCase(
        "resource-monitor-missing-model",
        "Monitor for a Model that is absent",
        [_monitor("watch", "ghost")],
        "Monitor",
        "watch",
        "ghost",
        reason="ModelNotFound",
    ),
    ResourceCase(
        "resource-bad-schedule",
        "training.schedule '61 * * * *'",
        [_model(training__schedule="61 * * * *")],
        "Model",
        "m",
        "schedule",
    ),
    ResourceCase(
        "resource-name-too-long",
        "Model name of 50 characters",
        [_model(name="a" * 50)],
        "Model",
        "a" * 50,
        "name",
    ),
]

ALL_CASES: Final = [*CLI_CASES, *INFER, *RESOURCES]
