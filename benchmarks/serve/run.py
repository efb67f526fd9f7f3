"""Benchmark: ``mlkube serve`` against MLServer and KServe on the same scikit-learn models.

What it does
    Two kinds of model, each a LogisticRegression and a 100-tree RandomForest on
    breast_cancer:

    - ``lr``, ``rf``: fitted here on a plain array (the LogisticRegression behind a
      StandardScaler) and written with ``write_version``;
    - ``lr-trained``, ``rf-trained`` (the headline): made by ``mlkube train`` from a
      manifest (``sklearn://breast_cancer``), i.e. the pipeline production serves, with
      the trainer's imputation/ColumnTransformer in front of the estimator.

    Every model is also joblib-dumped (from the very object mlkube serves) for the peers,
    each installed once into its own venv under ``~/.cache/mlkube/bench-venvs/`` with the
    project venv's scikit-learn and joblib (``peers.py``): MLServer 1.7.1 +
    mlserver-sklearn 1.7.1 (with uvloop==0.21.0, which it needs) in ``mlserver``, and
    KServe 0.21.0 in ``kserve``. KServe's scikit-learn server (``sklearnserver``) is not
    published as a package, only the ``kserve`` library is, so the KServe peer is
    ``kserve_sklearn.py``: a minimal ``kserve.Model`` written here (joblib file in,
    ``predict`` on the V2 request, its output back, as ``sklearnserver`` answers) served by
    ``kserve.ModelServer``, on loopback, without gRPC and without per-request logging.
    It starts every server at once, each on 127.0.0.1:

    - ``mlkube``          ``mlkube serve`` as a predictor runs it: ``--engine auto``
                          (onnxruntime on a verified ``model.onnx``, else scikit-learn) and
                          adaptive batching on; one worker, sample rate 0 (MLServer logs
                          nothing)
    - ``mlkube-sklearn``  the same with ``--engine sklearn`` (batching still on)
    - ``mlkube-w2``, ``mlkube-sklearn-w2``  with ``--workers 2`` (``--workers-2``)
    - ``mls-tuned``       MLServer with parallel_workers 0 and debug false
    - ``kserve``          KServe's ModelServer, one uvicorn worker
    - ``kserve-w2``       the same with ``workers=2`` (two spawned worker processes on one
                          socket, under a parent that restarts a worker that does not
                          answer its ping within 5 s: on a loaded machine it kills workers
                          that are still starting, until two start in time)
    - ``mls-shipped``     MLServer as shipped (parallel_workers 1, debug true; ``--shipped``)

    Each is driven with ``wrk`` (a Lua script POSTing the same V2 body file: one 2-D FP64
    tensor and no ``outputs``, a body every V2 server accepts; mlkube answers ``predict``
    and ``predict_proba``, MLServer and KServe ``predict``) in the cells ``--cells`` (batch x
    connections; default 1x8, 1x64, 100x8). Servers are measured in turn for each cell
    and, in ``--full``, again in reverse order (A, B, B, A), because this 2-core machine
    drifts by up to 1.6x over minutes. Server CPU per request is the CPU time of the
    server's process tree during the run divided by the requests it answered.

    The in-process floor is the server's own work without HTTP, timed step by step with
    the server's functions: decode (orjson + schema validation into a ``Batch``), build
    the pipeline's input (``ServedModel.model_input``: an array, or a DataFrame for
    artifacts fitted on frames), predict (``predict_proba`` + argmax, or onnxruntime),
    encode (orjson).

Run
    .venv/bin/python benchmarks/serve/run.py            # quick: 4 s runs, one round
    .venv/bin/python benchmarks/serve/run.py --full     # 15 s runs, two rounds
    .venv/bin/python benchmarks/serve/run.py --models lr-trained,rf-trained,lr,rf
    --no-peers skips MLServer and KServe (and building their venvs): mlkube's engines only.
    Needs psutil (``make venv`` installs the ``bench`` extra) and wrk.

Output
    A table on stdout and the same (plus raw JSON) in ``benchmarks/results/`` (git-ignored).

Seen here (quick mode, 3 s runs, shared 2-core machine; ``--seconds 3``)
    Trainer-made models, batch 1, 1-8 connections, one worker. Before the array input
    layout (pipelines fitted on DataFrames): lr-trained 340-380 req/s at 2.5-2.8 ms server
    CPU/request (0.2-0.28x the array-fitted lr in the same run; 0.45 ms of the 2.4 ms
    in-process was building the DataFrame, most of the rest sklearn's frame handling in
    predict), and MLServer answered every request with an error. After: lr-trained
    1,370-1,500 req/s at 0.45 ms CPU/request vs MLServer tuned 400-440 req/s at 1.5-1.6 ms
    (2.8-3.7x), rf-trained 127-143 req/s at 4.9-6.9 ms vs 66-90 at 10.7-11.3 ms
    (1.4-2.2x); in-process lr-trained 0.28-0.49 ms/request.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from peers import (
    KSERVE_PEERS,
    MLSERVER_PEERS,
    Server,
    ensure_venvs,
    free_port,
    start_peer,
    write_peer_model,
)
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlkube.runtime.artifact import FeatureSchema, load_pipeline, write_version
from mlkube.runtime.serve.decoding import Schema, decode_v2_inputs
from mlkube.runtime.serve.model import ServedModel, load_model

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
MODELS = ("lr-trained", "rf-trained", "lr", "rf")
DEFAULT_MODELS = "lr-trained,rf-trained"
TRAINED = {
    "lr-trained": ("sklearn.linear_model.LogisticRegression", {"max_iter": 5000}),
    "rf-trained": ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 100}),
}
STEPS = ("decode", "build", "predict", "encode")
# mlkube's cells: server name -> (workers, engine). "mlkube" is what a predictor runs by
# default: --engine auto (onnxruntime on a verified model.onnx, else scikit-learn) with
# adaptive batching on; "mlkube-sklearn" forces scikit-learn (batching still on).
MLKUBE_SERVERS = {"mlkube": (1, "auto"), "mlkube-sklearn": (1, "sklearn")}
WORKERS_2 = {"mlkube-w2": (2, "auto"), "mlkube-sklearn-w2": (2, "sklearn")}
PEERS = (MLSERVER_PEERS[0], *KSERVE_PEERS, MLSERVER_PEERS[1])
SERVERS = (*MLKUBE_SERVERS, *WORKERS_2, *PEERS)
Steps = dict[str, dict[str, float]]  # "model[+onnx]/batch" -> step -> ms per request
LUA = """
local f = io.open(os.getenv("BODY"), "rb"); local body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = body; wrk.headers["Content-Type"] = "application/json"
"""


@dataclass
class Row:
    model: str
    batch: int
    connections: int
    server: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float
    errors: int
    steal_pct: float = float("nan")


def fit_models() -> dict[str, Any]:
    x, y = load_breast_cancer(return_X_y=True)
    lr = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=5000))])
    rf = RandomForestClassifier(n_estimators=100, random_state=0)
    return {"lr": lr.fit(x, y), "rf": rf.fit(x, y)}


def train_models(store: Path, work: Path) -> dict[str, Any]:
    """Runs ``mlkube train`` for the trained models; returns the pipelines it wrote."""
    out = {}
    for name, (estimator, params) in TRAINED.items():
        manifest = {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "Model",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "task": "classification",
                "training": {
                    "estimator": {"class": estimator, "params": params},
                    "data": {"uri": "sklearn://breast_cancer", "target": "target"},
                    "validation": {"testFraction": 0.2},
                },
            },
        }
        subprocess.run(
            [
                *(sys.executable, "-m", "mlkube", "train", "--model-json", json.dumps(manifest)),
                *("--store", str(store), "--version", "1"),
                *("--termination-log", str(work / f"train-{name}.json")),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        out[name] = load_pipeline(store / "default" / name / "v1")
    return out


def write_stores(models: dict[str, Any], work: Path) -> tuple[Path, Path]:
    store, peer = work / "store", work / "peer-models"
    names = [str(n) for n in load_breast_cancer().feature_names]
    features = [
        FeatureSchema(name=n, kind="numeric", dtype="float64", nullable=False) for n in names
    ]
    for name, model in models.items():
        if name in TRAINED:
            write_peer_model(peer, name, model)
            continue
        write_version(
            store / "default" / name / "v1",
            model,
            {
                "name": name,
                "namespace": "default",
                "version": 1,
                "task": "classification",
                "estimator": {"class": type(model).__name__, "params": {}},
                "features": features,
                "target": {"name": "target", "classes": [0, 1]},
                "metric": "accuracy",
                "score": 0.0,
                "metrics": {},
                "slices": [],
                "profile": {},
                "data": {},
                "lineage": {},
                "libraries": {},
                "trainedAt": "",
                "durationSeconds": 0.0,
            },
        )
        write_peer_model(peer, name, model)
    return store, peer


def bodies(work: Path, batches: list[int]) -> dict[int, Path]:
    x, _ = load_breast_cancer(return_X_y=True)
    out = {}
    for batch in batches:
        rows = x[:batch]
        path = work / f"body-{batch}.json"
        path.write_bytes(
            orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "input-0",
                            "shape": list(rows.shape),
                            "datatype": "FP64",
                            "data": rows.ravel().tolist(),
                        }
                    ],
                }
            )
        )
        out[batch] = path
    return out


def start_servers(
    store: Path,
    *,
    peer: Path,
    work: Path,
    bin_dirs: dict[str, Path],
    model_names: list[str],
    mlkube_servers: dict[str, tuple[int, str]],
    peers: tuple[str, ...],
) -> list[Server]:
    """Every server at once (mlkube: one per model; each peer: one for all models)."""
    servers = []
    mlkube = [sys.executable, "-m", "mlkube", "serve", "--host", "127.0.0.1", "--sample-rate", "0"]
    for name, (workers, engine) in mlkube_servers.items():
        for model in model_names:
            port = free_port()
            argv = [
                *(*mlkube, "--model-dir", str(store / "default" / model / "v1")),
                *("--port", str(port), "--workers", str(workers), "--engine", engine),
            ]
            servers.append(
                Server(f"{name}/{model}", argv, port=port, log=work / f"{name}-{model}.log")
            )
    servers += [start_peer(name, bin_dirs, peer=peer, work=work) for name in peers]
    for server in servers:
        models = [server.name.split("/")[1]] if "/" in server.name else model_names
        server.wait_ready(models)
    return servers


_LAT = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def run_wrk(url: str, body: Path, connections: int, seconds: int, lua: Path) -> dict[str, float]:
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(lua),
            url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BODY": str(body)},
        check=True,
    ).stdout
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    latency = {m.group(1): float(m.group(2)) * scale[m.group(3)] for m in _LAT.finditer(out)}
    rps_match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total_match = re.search(r"(\d+) requests in", out)
    if rps_match is None or total_match is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    rps, total = float(rps_match.group(1)), int(total_match.group(1))
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: .*?timeout (\d+)"):
        found = re.search(pattern, out)
        errors += int(found.group(1)) if found else 0
    return {
        "rps": rps,
        "p50": latency.get("50", float("nan")),
        "p99": latency.get("99", float("nan")),
        "requests": total,
        "errors": errors,
    }


def cpu_jiffies() -> tuple[int, int]:
    """(stolen, total) CPU time of the machine so far, from /proc/stat (0, 0 elsewhere).

    Steal is time the hypervisor gave this VM's CPUs to someone else: on a shared host it
    is what turns a quiet run's 4 ms p99 into 15 ms, so every cell prints it."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def step_costs(model: ServedModel, body: bytes, budget_seconds: float) -> dict[str, float]:
    """Milliseconds per request of each server step, in process, over ``budget_seconds``.

    The predict step is what the server's engine does: onnxruntime on float32 (then the
    labels from the probabilities) for a model loaded with a compiled engine, else
    scikit-learn's ``predict_proba`` + argmax."""
    schema = Schema(model.features, 10_000)
    classes = model.classes
    assert classes is not None
    totals = dict.fromkeys(STEPS, 0.0)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < budget_seconds or count < 5:
        t0 = time.perf_counter()
        batch = decode_v2_inputs(orjson.loads(body)["inputs"], schema)
        t1 = time.perf_counter()
        x = model.model_input(batch)
        t2 = time.perf_counter()
        compiled = model.compiled.predict(x) if model.compiled is not None else None
        if compiled is not None:
            positions, proba = compiled
            labels = classes[positions]
        else:
            proba = model.pipeline.predict_proba(x)
            labels = classes[proba.argmax(axis=1)]
        t3 = time.perf_counter()
        outputs = [
            {"name": "predict", "data": labels},
            {"name": "predict_proba", "data": proba.ravel()},
        ]
        orjson.dumps({"outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
        t4 = time.perf_counter()
        for step, spent in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[step] += spent
        count += 1
    return {step: spent / count * 1000 for step, spent in totals.items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="longer runs and two rounds (A,B,B,A)")
    parser.add_argument("--seconds", type=int, help="seconds per wrk run")
    parser.add_argument(
        "--models", default=DEFAULT_MODELS, help=f"comma-separated subset of {MODELS}"
    )
    parser.add_argument(
        "--cells",
        default="1x8,1x64,100x8",
        help="batch x connections cells (default 1x8,1x64,100x8)",
    )
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="mlkube only: no MLServer or KServe venv, no peer cells",
    )
    parser.add_argument(
        "--workers-2", action="store_true", help="also mlkube with --workers 2 (both engines)"
    )
    parser.add_argument(
        "--shipped", action="store_true", help="also MLServer as shipped (not only tuned)"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    model_names = [m for m in args.models.split(",") if m]
    if unknown := sorted(set(model_names) - set(MODELS)):
        raise SystemExit(f"unknown model(s) {unknown}; choose from {MODELS}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    cell_list = [tuple(int(v) for v in c.split("x")) for c in args.cells.split(",")]
    batches = sorted({b for b, _ in cell_list})
    mlkube_servers = {**MLKUBE_SERVERS, **(WORKERS_2 if args.workers_2 else {})}
    peers = () if args.no_peers else tuple(p for p in PEERS if args.shipped or p != "mls-shipped")
    seconds = args.seconds or (15 if args.full else 4)
    rounds = 2 if args.full else 1
    work = RESULTS / f"serve-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True)
    lua = work / "post.lua"
    lua.write_text(LUA)
    bin_dirs = ensure_venvs(peers)
    models = {**fit_models(), **train_models(work / "store", work)}
    models = {name: models[name] for name in model_names}
    store, peer = write_stores(models, work)
    served = {}
    for name in models:
        version = store / "default" / name / "v1"
        served[name] = load_model(version, None, engine="sklearn")
        if name in TRAINED:
            served[f"{name}+onnx"] = load_model(version, None, engine="onnx")
    body_paths = bodies(work, batches)
    step_samples: dict[str, list[dict[str, float]]] = {}
    servers = start_servers(
        store,
        peer=peer,
        work=work,
        bin_dirs=bin_dirs,
        model_names=model_names,
        mlkube_servers=mlkube_servers,
        peers=peers,
    )
    rows: list[Row] = []
    try:
        cells = [(m, b, c) for m in model_names for b, c in cell_list]
        for model, batch, connections in cells:
            body = body_paths[batch].read_bytes()
            for key in (model, f"{model}+onnx"):
                if key in served:
                    step_samples.setdefault(f"{key}/{batch}", []).append(
                        step_costs(served[key], body, 1.0)
                    )
            relevant = [s for s in servers if "/" not in s.name or s.name.endswith("/" + model)]
            for round_index in range(rounds):
                order = relevant if round_index % 2 == 0 else list(reversed(relevant))
                for server in order:
                    rows.append(
                        measure(
                            server,
                            model=model,
                            batch=batch,
                            connections=connections,
                            seconds=seconds,
                            lua=lua,
                            body_paths=body_paths,
                        )
                    )
    finally:
        for server in servers:
            server.stop()
    steps = {
        key: {step: float(np.median([v[step] for v in values])) for step in STEPS}
        for key, values in step_samples.items()
    }
    layouts = {name: "frame" if served[name].uses_frame else "array" for name in served}
    report = render(rows, steps=steps, layouts=layouts, seconds=seconds, rounds=rounds)
    print(report)
    (work / "report.txt").write_text(report)
    (work / "rows.json").write_text(
        json.dumps({"rows": [asdict(r) for r in rows], "step_ms": steps}, indent=1)
    )
    print(f"results in {work}")
    return 0


def measure(
    server: Server,
    *,
    model: str,
    batch: int,
    connections: int,
    seconds: int,
    lua: Path,
    body_paths: dict[int, Path],
) -> Row:
    url = f"http://127.0.0.1:{server.port}/v2/models/{model}/infer"
    cpu_before = server.cpu_seconds()
    steal_before, total_before = cpu_jiffies()
    result = run_wrk(url, body_paths[batch], connections, seconds, lua)
    cpu = server.cpu_seconds() - cpu_before
    steal_after, total_after = cpu_jiffies()
    steal = (steal_after - steal_before) / max(total_after - total_before, 1) * 100
    row = Row(
        model,
        batch,
        connections,
        server.name.split("/")[0],
        result["rps"],
        result["p50"],
        result["p99"],
        cpu / max(result["requests"], 1) * 1000,
        int(result["errors"]),
        steal if total_after > total_before else float("nan"),
    )
    print(
        f"  {model} b{batch} c{connections} {row.server:14s} "
        f"{result['rps']:9.1f} req/s p99 {result['p99']:.2f} ms steal {row.steal_pct:.1f}%",
        flush=True,
    )
    return row


def _stats(rows: list[Row]) -> dict[str, float]:
    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {
        "rps": mean([r.rps for r in rows]),
        "p50": mean([r.p50_ms for r in rows]),
        "p99": mean([r.p99_ms for r in rows]),
        "cpu": mean([r.cpu_ms_per_request for r in rows]),
        "err": sum(r.errors for r in rows),
        "steal": mean([r.steal_pct for r in rows]),
    }


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and not np.isnan(b) else "-"


def _mlkube_ratios(
    server: str, model: str, batch: int, stats: dict[str, dict[str, float]], steps: Steps
) -> str:
    """An mlkube row's ratio columns: against the peers, its own engine and the floor."""
    s, tuned = stats[server], stats["mls-tuned"]
    compiled = "sklearn" not in server and model in TRAINED
    floor = sum(steps[f"{model}{'+onnx' if compiled else ''}/{batch}"].values())
    same = server if "sklearn" in server else server.replace("mlkube", "mlkube-sklearn")
    kserve = stats["kserve-w2" if server.endswith("-w2") else "kserve"]
    return (
        f"{_ratio(s['rps'], tuned['rps']):>8} {_ratio(s['rps'], kserve['rps']):>8} "
        f"{_ratio(s['rps'], stats[same]['rps']):>9} "
        f"{_ratio(s['p99'], tuned['p99']):>7} {s['rps'] * floor / 1000:8.0%} "
        f"{floor / s['cpu']:9.0%}"
    )


def _cell_lines(cell: list[Row], steps: Steps) -> list[str]:
    """One line per server measured in the cell (one model, batch and connections)."""
    model, batch, connections = cell[0].model, cell[0].batch, cell[0].connections
    stats = {name: _stats([r for r in cell if r.server == name]) for name in SERVERS}
    lines = []
    for server in (name for name in SERVERS if any(r.server == name for r in cell)):
        s = stats[server]
        ratios = ""
        if server.startswith("mlkube"):
            ratios = _mlkube_ratios(server, model, batch, stats, steps)
        lines.append(
            f"{model:10} {batch:5} {connections:4} {server:17} {s['rps']:9.1f} "
            f"{s['p50']:8.2f} {s['p99']:8.2f} {s['cpu']:10.3f} {s['err']:4} {s['steal']:6.1f} "
            f"{ratios}"
        )
    return lines


def _step_lines(steps: Steps, layouts: dict[str, str]) -> list[str]:
    lines = [
        "in-process steps of the server (its own functions, no HTTP), ms/request:",
        f"  {'model/batch':20} {'input':6} "
        + " ".join(f"{s:>8}" for s in STEPS)
        + f" {'total':>8} {'req/s/core':>10}",
    ]
    for key, values in steps.items():
        total = sum(values.values())
        lines.append(
            f"  {key:20} {layouts[key.split('/')[0]]:6} "
            + " ".join(f"{values[s]:8.3f}" for s in STEPS)
            + f" {total:8.3f} {1000 / total:10.0f}"
        )
    return lines


def render(
    rows: list[Row],
    *,
    steps: Steps,
    layouts: dict[str, str],
    seconds: int,
    rounds: int,
) -> str:
    lines = [
        f"mlkube serve (engine auto = onnx when verified, with batching; and engine sklearn) vs "
        f"MLServer 1.7.1 and KServe 0.21.0 — wrk {seconds}s per run, {rounds} round(s); "
        f"{os.cpu_count()} CPUs; means over rounds",
        "",
        f"{'model':10} {'batch':>5} {'conn':>4} {'server':17} {'req/s':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'cpu ms/req':>10} {'err':>4} {'steal%':>6} {'x tuned':>8} {'x kserve':>8} "
        f"{'x sklearn':>9} {'p99/tun':>7} {'of floor':>8} {'floor/cpu':>9}",
    ]
    for cell in sorted({(r.model, r.batch, r.connections) for r in rows}):
        lines += [
            *_cell_lines([r for r in rows if (r.model, r.batch, r.connections) == cell], steps),
            "",
        ]
    lines += _step_lines(steps, layouts)
    lines.append(
        "'x tuned' = req/s / MLServer tuned; 'x kserve' = req/s / KServe with the same "
        "workers (kserve-w2 for the -w2 rows); 'x sklearn' = req/s / mlkube's scikit-learn "
        "engine with the same workers; 'of floor' = req/s x in-process total (100%: one "
        "core's worth of requests at that speed); 'floor/cpu' = in-process total / server "
        "CPU per request. '+onnx' = the onnx engine's floor. 'steal%' = share of the "
        "machine's CPU time the hypervisor took during the run (a noisy neighbour; it "
        "inflates p99 most)."
    )
    lines += ["", *headline(rows)]
    return "\n".join(lines)


TARGETS = {"lr-trained": 5.0, "rf-trained": 17.0}
P99_TARGET_MS = 5.0


def headline(rows: list[Row]) -> list[str]:
    """Trainer-made models: mlkube (auto + batching) and sklearn-only vs MLServer tuned
    (the targets) and KServe with 2 workers."""
    trained = sorted({r.model for r in rows} & set(TRAINED))
    if not trained or not any(r.server == "mls-tuned" for r in rows):
        return []
    names = ["mlkube", "mlkube-sklearn", "mls-tuned", "kserve-w2"]
    lines = [
        "headline: trainer-made models, req/s (p99 ms, server CPU ms/request); "
        f"targets x tuned (batch 1, 8 connections): {TARGETS}, p99 <= {P99_TARGET_MS} ms",
        f"{'model':10} {'batch':>5} {'conn':>4} "
        + " ".join(f"{n:>24}" for n in names)
        + f" {'mlkube/tuned':>12} {'sklearn/tuned':>13} {'mlkube/ksv-w2':>13} {'target':>7}"
        + f" {'steal%':>6}",
    ]
    cells = sorted({(r.model, r.batch, r.connections) for r in rows if r.model in trained})
    for model, batch, conn in cells:
        cell = [r for r in rows if (r.model, r.batch, r.connections) == (model, batch, conn)]
        stats = {n: _stats([r for r in cell if r.server == n]) for n in names}
        ratio = stats["mlkube"]["rps"] / stats["mls-tuned"]["rps"]
        target = "-"
        if (batch, conn) == (1, 8):
            met = ratio >= TARGETS[model] and stats["mlkube"]["p99"] <= P99_TARGET_MS
            target = "met" if met else "MISSED"
        lines.append(
            f"{model:10} {batch:5} {conn:4} "
            + " ".join(
                f"{stats[n]['rps']:9.1f} ({stats[n]['p99']:5.2f}, {stats[n]['cpu']:5.3f})"
                for n in names
            )
            + f" {ratio:12.2f}"
            + f" {stats['mlkube-sklearn']['rps'] / stats['mls-tuned']['rps']:13.2f}"
            + f" {_ratio(stats['mlkube']['rps'], stats['kserve-w2']['rps']):>13} {target:>7}"
            + f" {stats['mlkube']['steal']:6.1f}"
        )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
