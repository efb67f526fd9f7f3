"""Operator benchmark: mlkube operator vs a no-op kopf operator on one control plane.

What it measures, for both operators in the same run (ratios = mlkube / no-op):

- **apply → Job**: time from creating a Model (one POST) to the watch event announcing its
  trainer Job (which implies its TrainingJob), p50/p95 over 50 Models per operator, the
  two operators' Models interleaved (A, B, A, B …) so drift of the machine hits both.
- **500 at once**: 500 Models created concurrently; seconds until every one has its Job
  (and, for mlkube, until every Model's status is written).
- **RSS at 1,000 Models**: resident memory of each operator process after 1,000 Models
  (with their TrainingJobs, Jobs and pending pods) are in its namespaces.
- **API requests per Model**: non-watch requests in the operator's namespace per Model,
  counted from the API server's audit log (every non-system request at Metadata level).

The no-op peer (``noop_operator.py``) watches the same resources and does only two
creates per Model (TrainingJob, Job) over the same aiohttp transport.

Targets (issue 3): p50 at most 2x the no-op and < 200 ms; 500 Models < 60 s; RSS < 150 MB.

Measured here (2 cores shared with other builds, 2026-11-24, final code, one full run):

| measure | mlkube | no-op | ratio |
| --- | --- | --- | --- |
| apply → Job p50 / p95 | 25.9 / 47.4 ms | 15.8 / 26.9 ms | 1.64 / 1.76 |
| 500 Models at once → all Jobs | 10.0 s (statuses 10.3 s) | 4.7 s | 2.15 |
| RSS at 1,000 Models | 128.8 MB | 106.4 MB | 1.21 |
| API requests per Model | 5.2 | 2.2 | 2.37 |

Other runs of the same code on a quieter or busier machine: p50 16.8-25.9 ms (ratio
1.5-1.6), 500 Models in 6.7-10 s, RSS 129-137 MB; the ratios move less than the absolute
figures. mlkube's 5.2 requests per Model: create TrainingJob and patch Model status (at
once), patch TrainingJob status and create Job (at once), and a patch when the Job's pod
appears.

Run: ``.venv/bin/python benchmarks/operator/run.py [--models 50] [--bulk 500]``; results
go to ``benchmarks/results/operator.json``. Needs the control-plane binaries the test
harness builds (``make controlplane-build`` or a first integration test run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kopf
import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from harness.controlplane import ControlPlane  # noqa: E402
from harness.ports import free_ports  # noqa: E402
from mlkube.controller.kube import Kube, path_of  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = REPO / "benchmarks" / "results"
BENCH_AGENT = "mlkube-bench/0.1"


def model_manifest(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "task": "classification",
            "training": {
                "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
                "data": {"uri": "sklearn://iris", "target": "target"},
            },
        },
    }


class JobWatch:
    """Timestamps the ADDED event of every Job in a namespace."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.seen: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ready = asyncio.Event()
        self.task = asyncio.create_task(self._run(ready))
        await ready.wait()

    async def _run(self, ready: asyncio.Event) -> None:
        """List, then watch from the list's resourceVersion; again whenever the stream ends
        (the API server closes watches when its cache re-initializes under load)."""
        import aiohttp

        session = self.kube._client()
        url = self.kube.server + path_of("Job", self.namespace)
        forever = aiohttp.ClientTimeout(total=None, sock_read=None)
        while True:
            listing = await self.kube.request("GET", path_of("Job", self.namespace))
            for item in listing["items"]:
                self._saw(item["metadata"]["name"])
            params = {
                "watch": "1",
                "timeoutSeconds": "3600",
                "resourceVersion": listing["metadata"]["resourceVersion"],
            }
            try:
                async with session.get(url, params=params, timeout=forever) as response:
                    ready.set()
                    async for line in response.content:
                        event = json.loads(line)
                        if event.get("type") == "ADDED":
                            self._saw(event["object"]["metadata"]["name"])
            except (aiohttp.ClientError, ValueError):
                await asyncio.sleep(0.2)

    def _saw(self, name: str) -> None:
        if name not in self.seen:
            self.seen[name] = time.perf_counter()
            self.changed.set()

    async def wait_for(self, names: set[str], timeout: float) -> float:
        deadline = time.perf_counter() + timeout
        while not names <= self.seen.keys():
            self.changed.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"{len(names - self.seen.keys())} Jobs missing")
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                continue
        return max(self.seen[n] for n in names)


def start_operator(
    which: str, plane: ControlPlane, namespaces: list[str], log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    (port,) = free_ports(1)
    liveness = f"http://127.0.0.1:{port}/healthz"
    flags = [a for ns in namespaces for a in ("--namespace", ns)]
    if which == "mlkube":
        cmd = [
            str(BIN / "mlkube"),
            "operator",
            *flags,
            "--liveness",
            liveness,
            "--metrics-port",
            "0",
        ]
    else:
        cmd = [
            sys.executable,
            str(Path(__file__).with_name("noop_operator.py")),
            *flags,
            "--liveness",
            liveness,
        ]
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
    handle = log.open("ab")
    proc = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    return proc, liveness


async def wait_live(url: str, kube: Kube) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"operator at {url} did not come up")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def latency(kube: Kube, watches: dict[str, JobWatch], count: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in watches}
    for i in range(count):
        for which, watch in watches.items():  # interleaved: A, B, A, B
            name = f"lat-{i}"
            started = time.perf_counter()
            await kube.create(model_manifest(name, watch.namespace))
            done = await watch.wait_for({f"{name}-v1-train"}, timeout=30)
            out[which].append(done - started)
            await asyncio.sleep(0.3)
    return out


async def bulk(kube: Kube, watch: JobWatch, prefix: str, count: int) -> float:
    gate = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with gate:
            await kube.create(model_manifest(f"{prefix}-{i}", watch.namespace))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    done = await watch.wait_for({f"{prefix}-{i}-v1-train" for i in range(count)}, timeout=600)
    return done - started


async def statuses_written(
    kube: Kube, namespace: str, prefix: str, count: int, started: float
) -> float:
    while True:
        items = (await kube.request("GET", path_of("Model", namespace)))["items"]
        ready = [
            m
            for m in items
            if m["metadata"]["name"].startswith(prefix + "-")
            and (m.get("status") or {}).get("allocatedVersion")
        ]
        if len(ready) >= count:
            return time.perf_counter() - started
        await asyncio.sleep(0.5)


def audit_counts(log: Path, namespaces: dict[str, str]) -> dict[str, dict[str, int]]:
    """Non-watch requests per namespace (minus the benchmark's own), by verb."""
    counts: dict[str, dict[str, int]] = {k: {} for k in namespaces}
    by_ns = {ns: k for k, ns in namespaces.items()}
    for line in log.read_text().splitlines():
        event = json.loads(line)
        ns = (event.get("objectRef") or {}).get("namespace")
        if ns not in by_ns or event.get("verb") == "watch":
            continue
        agent = str(event.get("userAgent", ""))
        if agent.startswith((BENCH_AGENT, "kubectl")):
            continue
        verb = f"{event['verb']} {(event.get('objectRef') or {}).get('resource')}"
        bucket = counts[by_ns[ns]]
        bucket[verb] = bucket.get(verb, 0) + 1
    return counts


def install_crds_and_namespaces(plane: ControlPlane, spaces: dict[str, tuple[str, str]]) -> None:
    plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/models.mlkube.io",
        "crd/trainingjobs.mlkube.io",
    )
    for pair in spaces.values():
        for ns in pair:
            plane.kubectl("create", "namespace", ns)


def latency_results(
    lat: dict[str, list[float]], requests: dict[str, dict[str, int]], models: int
) -> dict[str, Any]:
    """Median and p95 reconcile latency, and API requests per Model, for each operator."""
    results: dict[str, Any] = {
        "latency_ms": {},
        "bulk_s": {},
        "rss_mb": {},
        "requests_per_model": {},
        "requests_by_verb": requests,
    }
    for which, values in lat.items():
        results["latency_ms"][which] = {
            "p50": 1000 * statistics.median(values),
            "p95": 1000 * pct(values, 0.95),
        }
        results["requests_per_model"][which] = sum(requests[which].values()) / models
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="mlkube-bench-operator-"))
    print(f"work directory: {workdir}", flush=True)
    plane = ControlPlane.start(workdir / "cp")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        spaces = {"mlkube": ("lat-a", "bulk-a"), "noop": ("lat-b", "bulk-b")}
        install_crds_and_namespaces(plane, spaces)
        os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
        kube = Kube.from_connection(info)
        kube._headers["User-Agent"] = BENCH_AGENT
        lives = {}
        for which, pair in spaces.items():
            procs[which], lives[which] = start_operator(
                which, plane, list(pair), workdir / f"{which}.log"
            )
        for url in lives.values():
            await wait_live(url, kube)
        await asyncio.sleep(2)
        watches = {w: JobWatch(kube, pair[0]) for w, pair in spaces.items()}
        bulk_watches = {w: JobWatch(kube, pair[1]) for w, pair in spaces.items()}
        for watch in [*watches.values(), *bulk_watches.values()]:
            await watch.start()

        print(f"latency: {args.models} Models per operator, interleaved …", flush=True)
        lat = await latency(kube, watches, args.models)
        await asyncio.sleep(3)
        requests = audit_counts(plane.audit_log, {w: p[0] for w, p in spaces.items()})

        results = latency_results(lat, requests, args.models)

        for which in spaces:
            print(f"bulk: {args.bulk} Models at once for {which} …", flush=True)
            started = time.perf_counter()
            jobs = await bulk(kube, bulk_watches[which], "b", args.bulk)
            entry = {"jobs": jobs}
            if which == "mlkube":
                entry["status"] = await statuses_written(
                    kube, spaces[which][1], "b", args.bulk, started
                )
            results["bulk_s"][which] = entry
            await asyncio.sleep(2)

        for which in spaces:
            print(f"rss: {2 * args.bulk} Models for {which} …", flush=True)
            await bulk(kube, bulk_watches[which], "c", args.bulk)
        await asyncio.sleep(5)
        for which, proc in procs.items():
            rss = psutil.Process(proc.pid).memory_info().rss
            results["rss_mb"][which] = rss / 2**20
        results["models_for_rss"] = 2 * args.bulk
        results["bulk_models"] = args.bulk
        await kube.close()
        return results
    finally:
        for proc in procs.values():
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        plane.stop()


def report(results: dict[str, Any]) -> str:
    lat = results["latency_ms"]
    bulk_s = results["bulk_s"]
    rss = results["rss_mb"]
    req = results["requests_per_model"]
    rows = [
        ("apply → Job p50 (ms)", lat["mlkube"]["p50"], lat["noop"]["p50"], "<= 2x and < 200"),
        ("apply → Job p95 (ms)", lat["mlkube"]["p95"], lat["noop"]["p95"], ""),
        (
            f"{results['bulk_models']} Models → all Jobs (s)",
            bulk_s["mlkube"]["jobs"],
            bulk_s["noop"]["jobs"],
            "< 60",
        ),
        (f"RSS at {results['models_for_rss']} Models (MB)", rss["mlkube"], rss["noop"], "< 150"),
        ("API requests per Model", req["mlkube"], req["noop"], ""),
    ]
    lines = [f"{'measure':34} {'mlkube':>10} {'no-op':>10} {'ratio':>7}  target", "-" * 78]
    for label, ours, peer, target in rows:
        ratio = ours / peer if peer else float("nan")
        lines.append(f"{label:34} {ours:10.1f} {peer:10.1f} {ratio:7.2f}  {target}")
    lines.append(f"{'mlkube: bulk → all statuses (s)':34} {bulk_s['mlkube']['status']:10.1f}")
    lines.append("requests by verb: " + json.dumps(results["requests_by_verb"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--bulk", type=int, default=500)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop what was started
    results = asyncio.run(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "operator.json").write_text(json.dumps(results, indent=2))
    print(report(results))


if __name__ == "__main__":
    main()
