"""Storage benchmark: the S3 store (SeaweedFS on loopback) side by side with the same work
on local disk (the PVC store's path), in one run.

What it measures:

- predictor cold start for a 100-tree RandomForest made by ``mlkube train`` (breast_cancer):
  ``mlkube serve`` from process start until ``/ready`` answers, from ``s3://…/v1`` (download
  + sha256 verify + load + warm-up) and from the version's directory on disk; plus the
  in-process parts for S3: fetch (download + verify) and load (verify + load + warm-up);
- inference-log throughput to S3: the same server, sample rate 1, ``--connections`` client
  threads sending ``--requests`` single-row requests; req/s and rows stored vs dropped
  with the log on S3, on disk, and with logging off;
- the drift check on a 100k-row window (the RF's 30 features, gzip JSONL objects in hour
  partitions, as the S3 sink writes them): ``mlkube drift-check`` reading the window from
  S3 (listing only the window's partitions) vs the same files on disk.

The figures are wall times on a shared 2-core machine: read the ratios.

Usage: .venv/bin/python benchmarks/storage/run.py [--requests 2000] [--connections 8]
Results: printed table, plus benchmarks/results/storage/results.json.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "storage"
MLKUBE = Path(sys.executable).with_name("mlkube")
sys.path.insert(0, str(REPO / "tests"))

from harness.objectstore import ObjectStore  # noqa: E402
from harness.ports import free_port  # noqa: E402

RF_MODEL = """
apiVersion: mlkube.io/v1alpha1
kind: Model
metadata: {name: cancer}
spec:
  task: classification
  training:
    estimator:
      class: sklearn.ensemble.RandomForestClassifier
      params: {n_estimators: 100, random_state: 0, n_jobs: 1}
    data: {uri: "sklearn://breast_cancer", target: target}
    validation: {testFraction: 0.25, metric: accuracy, randomSeed: 0}
"""


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(MLKUBE), *args], capture_output=True, text=True, env=env, timeout=1800, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"mlkube {args[0]} failed:\n{result.stderr[-3000:]}")
    return result


class Server:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.started = time.perf_counter()
        with log.open("w") as sink:
            self.proc = subprocess.Popen(
                [str(MLKUBE), "serve", *args, "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
            )
        while True:
            try:
                url = f"http://127.0.0.1:{self.port}/v2/models/cancer/ready"
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"serve failed:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.02)
        self.ready_seconds = time.perf_counter() - self.started

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            lines = r.read().decode().splitlines()
        return sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith(name + "{"))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=120)


def load(port: int, rows: list[list[float]], requests: int, connections: int) -> float:
    """Sends ``requests`` one-row predictions over ``connections`` threads; returns req/s."""
    per = requests // connections

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(per):
            body = json.dumps({"instances": [rows[(offset + i) % len(rows)]]})
            conn.request(
                "POST", "/v1/models/cancer:predict", body, {"Content-Type": "application/json"}
            )
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 200, answer.status
        conn.close()

    threads = [threading.Thread(target=worker, args=(k * 997,)) for k in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * connections / (time.perf_counter() - started)


def cold_start(
    *,
    store: ObjectStore,
    uri: str,
    local: Path,
    digests: tuple[str, str],
    tmp: Path,
    env: dict[str, str],
) -> dict[str, Any]:
    digest, disk_digest = digests
    figures: dict[str, Any] = {"s3": [], "disk": []}
    for rep in range(3):  # interleaved: S3, disk, S3, disk, ...
        cache = tmp / f"cache-{rep}"
        s3 = Server(
            ["--model-dir", uri, "--sha256", digest, "--model-cache", str(cache)],
            env,
            tmp / "s.log",
        )
        figures["s3"].append(s3.ready_seconds)
        s3.stop()
        disk = Server(["--model-dir", str(local), "--sha256", disk_digest], env, tmp / "d.log")
        figures["disk"].append(disk.ready_seconds)
        disk.stop()
    from mlkube.runtime.serve.model import load_model
    from mlkube.runtime.store.s3 import S3Location
    from mlkube.runtime.store.versions import fetch_version

    os.environ.update(store.env)
    started = time.perf_counter()
    fetched = fetch_version(S3Location.parse(uri), tmp / "cache-inproc", digest)
    figures["fetch"] = time.perf_counter() - started
    started = time.perf_counter()
    load_model(fetched, digest, "auto", None)
    figures["load"] = time.perf_counter() - started
    figures["bytes"] = sum(p.stat().st_size for p in fetched.iterdir())
    return figures


def throughput(
    *,
    uri: str,
    local: Path,
    digests: tuple[str, str],
    rows: list[list[float]],
    tmp: Path,
    env: dict[str, str],
    opts: argparse.Namespace,
) -> dict[str, Any]:
    cells = {
        "off": ["--sample-rate", "0"],
        "s3": ["--sample-rate", "1"],  # the default: <model>/inference in the bucket
        "disk": ["--sample-rate", "1", "--log-dir", str(tmp / "disk-log")],
    }
    out: dict[str, Any] = {}
    for name, extra in cells.items():
        if name == "disk":
            model = ["--model-dir", str(local), "--sha256", digests[1]]
        else:
            model = [
                "--model-dir",
                uri,
                "--model-cache",
                str(tmp / f"tp-{name}"),
                "--sha256",
                digests[0],
            ]
        server = Server(
            [*model, *extra], {**env, "MLKUBE_SERVE_LOG_BATCH_SECONDS": "2"}, tmp / f"{name}.log"
        )
        load(server.port, rows, 200, opts.connections)  # warm-up
        rate = load(server.port, rows, opts.requests, opts.connections)
        time.sleep(3)  # one batch interval: let the sink upload what is sealed
        out[name] = {
            "req_per_s": rate,
            "rows_stored": server.metric("mlkube_serve_inference_log_rows_total"),
            "rows_dropped": server.metric("mlkube_serve_inference_log_dropped_rows_total"),
            "upload_errors": server.metric("mlkube_serve_inference_log_write_errors_total"),
        }
        server.stop()
    return out


def write_window(root: Path, rows: np.ndarray, names: list[str], now: datetime) -> None:
    """``rows`` as gzip JSONL log objects, spread over the last 20 hours, 10k rows each."""
    per_file = 10_000
    for k, start in enumerate(range(0, len(rows), per_file)):
        stamp = now - timedelta(hours=20) + timedelta(hours=2 * k, minutes=1)
        ts = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        lines = [
            json.dumps(
                {
                    "ts": ts,
                    "model": "cancer",
                    "version": 1,
                    "request_id": "b",
                    "status": 200,
                    "inputs": dict(zip(names, map(float, row), strict=True)),
                    "output": 0,
                }
            )
            for row in rows[start : start + per_file]
        ]
        folder = root / stamp.strftime("%Y-%m-%d/%H")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"bench-{k:06d}.jsonl.gz").write_bytes(
            gzip.compress(("\n".join(lines) + "\n").encode())
        )


def drift(
    store: ObjectStore, uri: str, local: Path, tmp: Path, env: dict[str, str]
) -> dict[str, Any]:
    metadata = json.loads((local / "metadata.json").read_text())
    names = [f["name"] for f in metadata["features"]]
    import sklearn.datasets

    data = sklearn.datasets.load_breast_cancer().data
    rng = np.random.default_rng(0)
    rows = data[rng.integers(0, len(data), 100_000)] * rng.normal(
        1.0, 0.02, (100_000, data.shape[1])
    )
    now = datetime.now(UTC).replace(microsecond=0)
    log_dir = tmp / "window" / "inference"
    write_window(log_dir, rows, names, now)
    client = store.client()
    prefix = uri.removeprefix(f"s3://{store.bucket}/").rsplit("/", 1)[0] + "/inference"
    for path in log_dir.rglob("*.jsonl.gz"):
        client.put_object(
            Bucket=store.bucket, Key=f"{prefix}/{path.relative_to(log_dir)}", Body=path.read_bytes()
        )
    stamp = now.isoformat()
    figures: dict[str, Any] = {
        "s3": [],
        "disk": [],
        "bytes": sum(p.stat().st_size for p in log_dir.rglob("*.gz")),
    }
    for _ in range(3):
        started = time.perf_counter()
        out = run(["drift-check", "--model-dir", uri, "--now", stamp, "--no-plot"], env)
        figures["s3"].append(time.perf_counter() - started)
        started = time.perf_counter()
        run(
            [
                "drift-check",
                "--model-dir",
                str(local),
                "--live",
                str(log_dir),
                "--now",
                stamp,
                "--no-plot",
                "--report",
                str(tmp / "report.json"),
            ],
            env,
        )
        figures["disk"].append(time.perf_counter() - started)
    figures["s3_output"] = out.stdout.splitlines()[-1]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlkube-bench-storage-") as name:
        tmp = Path(name)
        store = ObjectStore(tmp / "s3").start()
        try:
            env = {**os.environ, **store.env}
            (tmp / "rf.yaml").write_text(RF_MODEL)
            summary = json.loads(
                run(
                    ["train", "-f", str(tmp / "rf.yaml"), "--store", store.uri("bench")], env
                ).stdout.splitlines()[-1]
            )
            json.loads(
                run(
                    ["train", "-f", str(tmp / "rf.yaml"), "--store", str(tmp / "store")], env
                ).stdout.splitlines()[-1]
            )
            uri, digest = summary["artifact"]["uri"], summary["artifact"]["sha256"]
            local = tmp / "store" / "default" / "cancer" / "v1"
            disk_digest = json.loads((local / "metadata.json").read_text())["artifact"]["sha256"]
            import sklearn.datasets

            rows = sklearn.datasets.load_breast_cancer().data[:200].tolist()
            results = {
                "cold_start": cold_start(
                    store=store,
                    uri=uri,
                    local=local,
                    digests=(digest, disk_digest),
                    tmp=tmp,
                    env=env,
                ),
                "log_throughput": throughput(
                    uri=uri,
                    local=local,
                    digests=(digest, disk_digest),
                    rows=rows,
                    tmp=tmp,
                    env=env,
                    opts=opts,
                ),
                "drift": drift(store, uri, local, tmp, env),
            }
        finally:
            store.stop()
    report(results, opts)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


def report(results: dict[str, Any], opts: argparse.Namespace) -> None:
    cold = results["cold_start"]
    s3, disk = min(cold["s3"]), min(cold["disk"])
    print("Predictor cold start, 100-tree RF (breast_cancer): process start -> ready, best of 3")
    print(f"  from S3   {s3:6.2f} s")
    print(
        f"            in process: fetch (download + sha256) {cold['fetch']:.2f} s for "
        f"{cold['bytes'] / 1e6:.1f} MB; verify + load + warm-up {cold['load']:.2f} s"
    )
    print(f"  from disk {disk:6.2f} s   ratio S3/disk {s3 / disk:.2f}")
    print(
        f"\nInference log: {opts.requests} one-row requests, {opts.connections} connections, "
        "sample rate 1"
    )
    tp = results["log_throughput"]
    for name in ("off", "disk", "s3"):
        cell = tp[name]
        print(
            f"  log {name:4s}  {cell['req_per_s']:7.0f} req/s   rows stored "
            f"{cell['rows_stored']:6.0f}   dropped {cell['rows_dropped']:5.0f}   "
            f"upload/write errors {cell['upload_errors']:.0f}"
        )
    rate = {k: v["req_per_s"] for k, v in tp.items()}
    print(f"  ratio S3/disk {rate['s3'] / rate['disk']:.2f}, S3/off {rate['s3'] / rate['off']:.2f}")
    d = results["drift"]
    best_s3, best_disk = min(d["s3"]), min(d["disk"])
    print(
        f"\nDrift check, 100k-row window x 30 features ({d['bytes'] / 1e6:.1f} MB of gzip "
        "JSONL), best of 3"
    )
    print(f"  from S3   {best_s3:6.2f} s")
    print(f"  from disk {best_disk:6.2f} s   ratio S3/disk {best_s3 / best_disk:.2f}")
    print("\n(2-core machine shared with other sessions' builds and tests: read the ratios)")


if __name__ == "__main__":
    sys.exit(main())
