"""Helpers for the model server's tests: tiny models in a store, and a real server process.

``write_model`` fits a real scikit-learn pipeline on breast_cancer (numeric features) or
on a small synthetic table with a categorical feature, and writes it with the store's own
``write_version``. ``Server`` runs ``python -m mlkube serve --port 0`` as a child process,
learns the port from its startup line, and talks HTTP to it on loopback.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlkube.runtime.artifact import FeatureSchema, write_version

_STARTED = re.compile(r"serving model \S+ version \S+ on \S+:(\d+)")


def base_metadata(
    name: str, version: int, task: str, features: list[FeatureSchema]
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": "default",
        "version": version,
        "task": task,
        "estimator": {"class": "test", "params": {}},
        "features": features,
        "target": {"name": "target"},
        "metric": "accuracy",
        "score": 0.9,
        "metrics": {},
        "slices": [],
        "profile": {},
        "data": {"uri": "sklearn://breast_cancer"},
        "lineage": {"trigger": "initial"},
        "libraries": {},
        "trainedAt": "2026-01-01T00:00:00Z",
        "durationSeconds": 0.1,
    }


def cancer_data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[str]]:
    data = load_breast_cancer()
    return data.data, data.target, [str(n) for n in data.feature_names]


def write_cancer_model(
    store: Path, name: str = "cancer", version: int = 1, nullable: tuple[str, ...] = ()
) -> Path:
    """LogisticRegression on breast_cancer's 30 numeric features, fitted on a plain array."""
    x, y, names = cancer_data()
    pipeline = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=2000))])
    if nullable:
        pipeline.steps.insert(0, ("impute", SimpleImputer(strategy="median")))
    pipeline.fit(x, y)
    features = [
        FeatureSchema(name=n, kind="numeric", dtype="float64", nullable=n in nullable)
        for n in names
    ]
    metadata = base_metadata(name, version, "classification", features)
    metadata["target"] = {"name": "target", "classes": [0, 1]}
    target = store / "default" / name / f"v{version}"
    write_version(target, pipeline, metadata)
    return target


def write_mixed_model(store: Path, name: str = "churn", version: int = 1) -> Path:
    """A classifier fitted on a DataFrame with a nullable numeric and a categorical feature."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 200).astype("float64"),
            "plan": rng.choice(["basic", "plus", "pro"], 200).astype(object),
        }
    )
    y = np.where((frame["age"] > 50) | (frame["plan"] == "pro"), "yes", "no")
    frame.loc[::17, "age"] = np.nan
    preprocess = ColumnTransformer(
        [
            ("numeric", SimpleImputer(strategy="median"), ["age"]),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["plan"]),
        ]
    )
    pipeline = Pipeline([("preprocess", preprocess), ("clf", LogisticRegression())]).fit(frame, y)
    features = [
        FeatureSchema(name="age", kind="numeric", dtype="float64", nullable=True),
        FeatureSchema(
            name="plan",
            kind="categorical",
            dtype="string",
            nullable=False,
            categories=["basic", "plus", "pro"],
        ),
    ]
    metadata = base_metadata(name, version, "classification", features)
    metadata["target"] = {"name": "churned", "classes": ["no", "yes"]}
    target = store / "default" / name / f"v{version}"
    write_version(target, pipeline, metadata)
    return target


def write_regression_model(store: Path, name: str = "price", version: int = 2) -> Path:
    x, _, names = cancer_data()
    pipeline = Pipeline([("reg", LinearRegression())]).fit(x[:, :3], x[:, 3])
    features = [
        FeatureSchema(name=n, kind="numeric", dtype="float64", nullable=False) for n in names[:3]
    ]
    target = store / "default" / name / f"v{version}"
    write_version(target, pipeline, base_metadata(name, version, "regression", features))
    return target


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Server:
    """A running ``mlkube serve`` child process on a loopback port."""

    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0
    connections: list[http.client.HTTPConnection] = field(default_factory=list)

    @classmethod
    def start(
        cls, tmp: Path, args: list[str], env: Mapping[str, str] | None = None, timeout: float = 60
    ) -> Server:
        log_path = tmp / f"server-{time.monotonic_ns()}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlkube",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    *args,
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        server = cls(process, log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _STARTED.search(server.log())
            if match and "Application startup complete" in server.log():
                server.port = int(match.group(1))
                return server
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{server.log()}")
            time.sleep(0.05)
        process.kill()
        raise AssertionError(f"server did not start in {timeout} s:\n{server.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Any | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """One request on a fresh connection (so a 4xx that closes the connection is harmless)."""
        payload = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        sent = {"Content-Type": "application/json"} if payload is not None else {}
        sent.update(headers or {})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=payload, headers=sent)
            reply = connection.getresponse()
            return Response(
                reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
            )
        finally:
            connection.close()

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(
        self, path: str, body: bytes | Any, headers: Mapping[str, str] | None = None
    ) -> Response:
        return self.request("POST", path, body, headers)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"server ignored signal {sig} for {timeout} s:\n{self.log()}"
            ) from None


def v2_matrix(rows: np.ndarray[Any, Any], name: str = "input-0", **extra: Any) -> dict[str, Any]:
    """A V2 request with one 2-D FP64 tensor in feature order."""
    return {
        "inputs": [
            {
                "name": name,
                "shape": list(rows.shape),
                "datatype": "FP64",
                "data": rows.ravel().tolist(),
            }
        ],
        **extra,
    }


def v2_by_feature(rows: np.ndarray[Any, Any], names: list[str]) -> dict[str, Any]:
    """A V2 request with one [n] FP64 tensor per feature."""
    return {
        "inputs": [
            {"name": n, "shape": [len(rows)], "datatype": "FP64", "data": rows[:, i].tolist()}
            for i, n in enumerate(names)
        ]
    }


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, matching the given labels."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None
