"""Benchmark: what one request can cost a predictor, and what slow clients do to honest ones.

Issue 13's figures, measured against real ``mlkube serve`` processes on loopback only.

What it does
    1. Amplification. Two models: ``cancer`` (LogisticRegression, 30 numeric features,
       2 classes) and ``wide`` (LogisticRegression on one feature with a 64-character
       name and 10 classes: the worst case for both the response, which carries 10
       probabilities per row, and the inference log, which repeats the name on every row).
       Each server runs with sample rate 1 into its own log directory. A set of crafted
       requests of at most 1 MiB (most rows of zeros that fit, repeated outputs, a long
       request id in the body and in the header, an unknown output name as long as the
       body allows, deep nesting) is sent one at a time; for each, the response size and
       the log growth (log directory size once the writer is idle) are recorded. Prints
       the largest response and the largest log growth, in bytes and per body byte.
    2. Slow clients. ``cancer`` with default settings (64 prediction slots, 10 s body
       timeout). 200 connections each announce a body and send it one byte per second
       (reconnecting when the server closes them), while 4 honest clients send one-row
       requests back to back for ``--seconds``. Prints the honest success rate and p50/p99
       latency, plus what readiness answered meanwhile.

    ``--server-pythonpath DIR`` runs the servers from another source tree (e.g. the code
    before the fix, unpacked with ``git archive <commit> operator | tar -x -C DIR``) to
    get the "before" figures with the same harness.

Run
    .venv/bin/python benchmarks/security/run.py                 # ~1 minute
    .venv/bin/python benchmarks/security/run.py --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from serve_support import Server, base_metadata  # noqa: E402

from mlkube.runtime.artifact import FeatureSchema, write_version  # noqa: E402

MIB = 1 << 20
WIDE_NAME = "f" * 64


def write_models(store: Path) -> dict[str, Path]:
    data = load_breast_cancer()
    cancer = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=2000))])
    cancer.fit(data.data, data.target)
    features = [
        FeatureSchema(name=str(n), kind="numeric", dtype="float64", nullable=False)
        for n in data.feature_names
    ]
    meta = base_metadata("cancer", 1, "classification", features)
    meta["target"] = {"name": "target", "classes": [0, 1]}
    write_version(store / "default/cancer/v1", cancer, meta)
    x = np.linspace(0, 1, 1000).reshape(-1, 1)
    wide = LogisticRegression(max_iter=2000).fit(x, (x[:, 0] * 10).astype(int).clip(0, 9))
    one = [FeatureSchema(name=WIDE_NAME, kind="numeric", dtype="float64", nullable=False)]
    meta = base_metadata("wide", 1, "classification", one)
    meta["target"] = {"name": "target", "classes": list(range(10))}
    write_version(store / "default/wide/v1", Pipeline([("clf", wide)]), meta)
    return {"cancer": store / "default/cancer/v1", "wide": store / "default/wide/v1"}


def _matrix(rows: int, width: int, **extra: Any) -> dict[str, Any]:
    zeros = [0] * (rows * width)
    tensor = {"name": "x", "shape": [rows, width], "datatype": "FP64", "data": zeros}
    return {"inputs": [tensor], **extra}


def crafted(width: int) -> list[tuple[str, bytes, dict[str, str]]]:
    """(label, body, headers): requests of at most 1 MiB meant to cost the server most."""
    # 40,000 rows at most: the inference log's queue (50,000 rows) would drop more whole.
    rows = min(40_000, (MIB - 200) // (2 * width))
    both = [{"name": "predict"}, {"name": "predict_proba"}]
    long_name = [{"name": "n" * (MIB - 500)}]
    cases = [
        ("most zero rows, both outputs", _matrix(rows, width, outputs=both), {}),
        ("most zero rows, predict only", _matrix(rows, width, outputs=both[:1]), {}),
        ("outputs repeated 20,000 times", _matrix(10, width, outputs=both * 10_000), {}),
        ("1 MiB request id in the body", _matrix(1, width, id="i" * (MIB - 500)), {}),
        ("60 KiB x-request-id header", _matrix(rows // 2, width), {"x-request-id": "h" * 60_000}),
        ("1 MiB unknown output name", _matrix(1, width, outputs=long_name), {}),
        ("128-char id, most zero rows", _matrix(rows, width, id="r" * 128), {}),
    ]
    encoded = [(label, orjson.dumps(doc), headers) for label, doc, headers in cases]
    encoded.append(
        ("nested 200,000 deep", b'{"inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", {})
    )
    return [(label, body, headers) for label, body, headers in encoded if len(body) <= MIB]


def _log_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*.jsonl")) if directory.exists() else 0


def _settled_log_size(directory: Path) -> int:
    size, stable_since = _log_size(directory), time.monotonic()
    while time.monotonic() - stable_since < 0.5:
        time.sleep(0.1)
        now = _log_size(directory)
        if now != size:
            size, stable_since = now, time.monotonic()
    return size


def amplification(models: dict[str, Path], work: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, model_dir in models.items():
        log_dir = work / f"log-{name}"
        args = ["--model-dir", str(model_dir), "--sample-rate", "1", "--log-dir", str(log_dir)]
        args += ["--max-body-bytes", str(MIB)]
        server = Server.start(work, args, env=env)
        try:
            width = 30 if name == "cancer" else 1
            for label, body, headers in crafted(width):
                before = _settled_log_size(log_dir)
                reply = server.post(f"/v2/models/{name}/infer", body, headers)
                growth = _settled_log_size(log_dir) - before
                rows.append(
                    {
                        "model": name,
                        "request": label,
                        "status": reply.status,
                        "body": len(body) + sum(len(v) for v in headers.values()),
                        "response": len(reply.body),
                        "log": growth,
                    }
                )
        finally:
            server.stop()
    return rows


async def _slow_client(port: int, stop: asyncio.Event, stats: dict[str, int]) -> None:
    head = (
        b"POST /v2/models/cancer/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head)
            stats["connections"] += 1
            while not stop.is_set() and not reader.at_eof():
                await asyncio.sleep(1.0)
                writer.write(b" ")
                await writer.drain()
            writer.close()
        except OSError:
            stats["errors"] += 1
            await asyncio.sleep(0.2)


def _honest(port: int, seconds: float, out: list[tuple[int, float]]) -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": [1.0] * 30}]}
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request(
                "POST", "/v2/models/cancer/infer", body, {"content-type": "application/json"}
            )
            status = connection.getresponse().status
            connection.close()
        except OSError:
            status = 0
        out.append((status, time.perf_counter() - started))


def _readiness(port: int, seconds: float, out: list[int]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", "/v2/health/ready")
            out.append(connection.getresponse().status)
        except OSError:
            out.append(0)
        finally:
            connection.close()
        time.sleep(0.5)


def slow_clients(
    model_dir: Path, work: Path, env: dict[str, str], seconds: float
) -> dict[str, Any]:
    server = Server.start(work, ["--model-dir", str(model_dir)], env=env)
    honest: list[tuple[int, float]] = []
    ready: list[int] = []
    stats = {"connections": 0, "errors": 0}

    async def attack() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_slow_client(server.port, stop, stats)) for _ in range(200)]
        await asyncio.sleep(3.0)  # let all 200 connect and start trickling
        threads = [
            threading.Thread(target=_honest, args=(server.port, seconds, honest)) for _ in range(4)
        ]
        threads.append(threading.Thread(target=_readiness, args=(server.port, seconds, ready)))
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(attack())
    finally:
        server.stop()
    latencies = sorted(s for code, s in honest if code == 200)
    ok = len(latencies)
    return {
        "honest_requests": len(honest),
        "honest_ok": ok,
        "success_rate": ok / len(honest) if honest else 0.0,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
        "p99_ms": latencies[int(0.99 * (ok - 1))] * 1000 if latencies else None,
        "statuses": sorted({code for code, _ in honest}),
        "ready_statuses": sorted(set(ready)),
        "slow_connections_opened": stats["connections"],
    }


def report(amp: list[dict[str, Any]], slow: dict[str, Any]) -> None:
    print(f"{'model':7} {'request':32} {'status':>6} {'body':>9} {'response':>10} {'log':>10}")
    for r in amp:
        cells = f"{r['status']:>6} {r['body']:>9} {r['response']:>10} {r['log']:>10}"
        print(f"{r['model']:7} {r['request']:32} {cells}")
    worst_response = max(amp, key=lambda r: r["response"])
    worst_log = max(amp, key=lambda r: r["log"])
    worst_log_ratio = max(amp, key=lambda r: r["log"] / r["body"])
    print(
        f"\nlargest response: {worst_response['response']:,} B for a {worst_response['body']:,} B "
        f"body ({worst_response['response'] / worst_response['body']:.1f}x; "
        f"{worst_response['model']}: {worst_response['request']})"
    )
    ratio = worst_log_ratio["log"] / worst_log_ratio["body"]
    print(
        f"largest log growth: {worst_log['log']:,} B for a {worst_log['body']:,} B body "
        f"({worst_log['log'] / worst_log['body']:.1f}x; {worst_log['model']}: "
        f"{worst_log['request']}); largest per body byte: {ratio:.1f}x"
    )
    print(
        f"\n200 slow clients (1 byte/s), {slow['honest_requests']} honest requests: "
        f"success {slow['success_rate']:.1%}, p50 {slow['p50_ms'] or float('nan'):.1f} ms, "
        f"p99 {slow['p99_ms'] or float('nan'):.1f} ms, statuses {slow['statuses']}, "
        f"readiness answered {slow['ready_statuses']}, "
        f"slow connections opened {slow['slow_connections_opened']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="honest traffic duration")
    parser.add_argument("--server-pythonpath", help="run the servers from this source tree")
    parser.add_argument("--work", default="/tmp/mlkube-bench-security")
    args = parser.parse_args()
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    env = {}
    if args.server_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            [args.server_pythonpath, os.environ.get("PYTHONPATH", "")]
        )
    models = write_models(work / "store")
    amp = amplification(models, work, env)
    slow = slow_clients(models["cancer"], work, env, args.seconds)
    report(amp, slow)


if __name__ == "__main__":
    main()
