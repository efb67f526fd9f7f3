"""Benchmark: reliability figures for issue 9 (``make reliability``).

What it does
    1. Bad-input corpus: every CLI case of ``tests/reliability/corpus.py`` as a child
       process (``python -m mlkube …``) and every inference case against one real server;
       counts cases, failures, crashes (tracebacks, 500s) and store changes.
    2. Load: ``mlkube serve`` (the corpus's reference churn model: numeric + categorical,
       predicting in the thread pool) driven by ``wrk`` with 8 connections (its
       sustainable rate), then 10x and 64x that concurrency; records accepted (200) vs
       shed (503/429 with Retry-After) and the p99 a separate 5 req/s probe client sees
       for accepted requests while the overload runs.
    3. Inference logging: the same load with sample rate 1 into a writable log directory
       and into one that cannot be created; requests must keep succeeding.
    4. Soak: RSS of the server every 5 s under steady load with sample rate 1
       (30 s quick, 600 s ``--full``).
    5. Drift checker peak RSS for 100k and 1M logged rows (JSONL inference log) and
       100k / 1M / 10M rows (Parquet; 10M only with ``--full``).
    Operator faults (kill -9, API server and etcd restarts) run as pytest on the control
    plane: ``tests/integration/test_reliability_faults.py`` — see docs/reliability.md.

Run
    .venv/bin/python benchmarks/reliability/run.py            # quick: ~5 minutes
    .venv/bin/python benchmarks/reliability/run.py --full     # 10-minute soak, 10M rows

Output
    A table on stdout; JSON in ``benchmarks/results/reliability-<time>.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from reliability.corpus import CLI_CASES, INFER  # noqa: E402
from reliability.load import (  # noqa: E402
    RssSampler,
    peak_rss_of,
    request_body,
    write_live_log,
    write_live_parquet,
    wrk,
)
from reliability.runner import run_cli_case, run_http_cases, serving  # noqa: E402
from reliability.workspace import MODEL, build_reference, copy_store  # noqa: E402


def corpus(ref: Any, work: Path) -> dict[str, Any]:
    outcomes = [run_cli_case(case, ref, work / "cli") for case in CLI_CASES]
    outcomes += run_http_cases(INFER, ref, work / "http")
    failed = [o for o in outcomes if not o.passed]
    return {
        "cases": len(outcomes),
        "failures": len(failed),
        "crashes": sum(
            any("traceback" in p or "server error" in p for p in o.problems) for o in outcomes
        ),
        "storeChanged": sum(
            any(p.startswith("store changed") for p in o.problems) for o in outcomes
        ),
        "failed": {o.id: o.problems for o in failed},
        "bySurface": {
            s: sum(1 for o in outcomes if o.surface == s)
            for s in sorted({o.surface for o in outcomes})
        },
    }


def _probe(port: int, stop: threading.Event, found: list[tuple[int, float]]) -> None:
    body = request_body().encode()
    while not stop.is_set():
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(
                "POST", f"/v2/models/{MODEL}/infer", body, {"content-type": "application/json"}
            )
            status = conn.getresponse().status
            conn.close()
        except OSError:
            status = 0
        found.append((status, (time.perf_counter() - started) * 1000))
        stop.wait(0.2)


def _p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def load(ref: Any, work: Path, seconds: int) -> dict[str, Any]:
    store = copy_store(ref, work / "load-store")
    results: dict[str, Any] = {}
    with serving(store / "default/churn/v1", work / "load.log") as server:
        for connections in (8, 80, 512):
            stop, probed = threading.Event(), []
            thread = threading.Thread(target=_probe, args=(server.port, stop, probed))
            thread.start()
            run = wrk(server.port, connections, seconds, work)
            stop.set()
            thread.join()
            accepted = [ms for status, ms in probed if status == 200]
            run["probeAcceptedP99"] = _p99(accepted)
            run["probeShed"] = sum(1 for status, _ in probed if status in (429, 503))
            run["rssMiB"] = 0.0
            results[str(connections)] = run
        results["alive"] = server.request("GET", "/v2/health/live")[0] == 200
    return results


def logging_blocked(ref: Any, work: Path, seconds: int) -> dict[str, Any]:
    store = copy_store(ref, work / "log-store")
    results: dict[str, Any] = {}
    blocked = work / "not-a-dir"
    blocked.write_text("a file where the log directory should be")
    for label, extra in (
        ("off", ["--sample-rate", "0"]),
        ("writable", ["--sample-rate", "1", "--log-dir", str(work / "logs")]),
        ("unwritable", ["--sample-rate", "1", "--log-dir", str(blocked / "inference")]),
    ):
        with serving(store / "default/churn/v1", work / f"log-{label}.log", *extra) as server:
            run = wrk(server.port, 8, seconds, work)
            results[label] = {
                "rate": run["rate"],
                "ok": run["ok"],
                "other": run["other"],
                "p99": run["p99"],
            }
    return results


def soak(ref: Any, work: Path, seconds: int) -> dict[str, Any]:
    store = copy_store(ref, work / "soak-store")
    with serving(store / "default/churn/v1", work / "soak.log", "--sample-rate", "1") as server:
        sampler = RssSampler(server.proc.pid, 5.0)
        run = wrk(server.port, 8, seconds, work)
        samples = sampler.stop()
    return {
        "requests": run["ok"],
        "other": run["other"],
        "samples": samples,
        "startMiB": samples[1][1] if len(samples) > 1 else samples[0][1],
        "endMiB": samples[-1][1],
        "maxMiB": max(s[1] for s in samples),
    }


def drift_memory(ref: Any, work: Path, full: bool) -> dict[str, Any]:
    model_dir = ref.version_dir()
    results: dict[str, Any] = {}
    sizes = [100_000, 1_000_000] + ([10_000_000] if full else [])
    for rows in sizes:
        path = work / f"live-{rows}.parquet"
        write_live_parquet(path, rows)
        code, peak, secs = peak_rss_of(
            [
                "drift-check",
                "--model-dir",
                str(model_dir),
                "--live",
                str(path),
                "--report",
                str(work / "r.json"),
                "--no-plot",
            ]
        )
        results[f"parquet-{rows}"] = {"exit": code, "peakMiB": peak, "seconds": secs}
        path.unlink()
    for rows in (100_000, 1_000_000):
        log_dir = work / f"log-{rows}"
        write_live_log(log_dir, rows)
        code, peak, secs = peak_rss_of(
            [
                "drift-check",
                "--model-dir",
                str(model_dir),
                "--live",
                str(log_dir),
                "--report",
                str(work / "r.json"),
                "--now",
                "2026-01-05T12:00:00Z",
                "--window",
                "2h",
                "--no-plot",
            ]
        )
        results[f"jsonl-{rows}"] = {"exit": code, "peakMiB": peak, "seconds": secs}
        shutil.rmtree(log_dir)
    return results


def render(figures: dict[str, Any]) -> str:
    lines = [f"mlkube reliability — {figures['date']} on {figures['machine']}", ""]
    c = figures["corpus"]
    lines += [
        "## Bad-input corpus",
        "| cases | failures | crashes | store changed |",
        "| --- | --- | --- | --- |",
        f"| {c['cases']} | {c['failures']} | {c['crashes']} | {c['storeChanged']} |",
    ]
    for case, problems in c["failed"].items():
        lines.append(f"  failed: {case}: {'; '.join(problems)}")
    lines += [
        "",
        "## Load (wrk, closed loop; probe = separate 5 req/s client)",
        "| connections | accepted/s | accepted | shed (503/429) | with Retry-After "
        "| other | p99 all (ms) | probe p99 accepted (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in ("8", "80", "512"):
        r = figures["load"][key]
        lines.append(
            f"| {key} | {r['rate']:.0f} | {r['ok']} | {r['shed']} | {r['retryAfter']} "
            f"| {r['other'] + r['socketErrors']} | {r['p99']:.0f} "
            f"| {r['probeAcceptedP99']:.0f} |"
        )
    lines += [
        "",
        "## Inference logging (8 connections)",
        "| log | req/s | non-200 | p99 (ms) |",
        "| --- | --- | --- | --- |",
    ]
    for label, r in figures["logging"].items():
        lines.append(f"| {label} | {r['rate']:.0f} | {r['other']} | {r['p99']:.0f} |")
    s = figures["soak"]
    series = ", ".join(
        f"{t:.0f}s:{m:.0f}" for t, m in s["samples"][:: max(1, len(s["samples"]) // 12)]
    )
    lines += [
        "",
        f"## Soak ({figures['soakSeconds']} s, 8 connections, sample rate 1)",
        f"requests {s['requests']}, non-200 {s['other']}, RSS start {s['startMiB']:.0f} "
        f"MiB → end {s['endMiB']:.0f} MiB (max {s['maxMiB']:.0f})",
        f"RSS over time (s:MiB): {series}",
    ]
    lines += [
        "",
        "## Drift checker peak RSS",
        "| input | rows | exit | peak RSS (MiB) | s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, r in figures["drift"].items():
        kind, rows = key.split("-")
        lines.append(
            f"| {kind} | {int(rows):,} | {r['exit']} | {r['peakMiB']:.0f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="10-minute soak and 10M rows")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = ROOT / "benchmarks" / "results" / f"reliability-{stamp}"
    work.mkdir(parents=True)
    ref = build_reference(work / "reference")
    soak_seconds = 600 if args.full else 30
    figures: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, "
        f"{round(_mem_gib())} GiB, Python {platform.python_version()}",
        "soakSeconds": soak_seconds,
    }
    print("corpus …", flush=True)
    figures["corpus"] = corpus(ref, work / "corpus")
    print("load …", flush=True)
    figures["load"] = load(ref, work, 15)
    print("inference logging …", flush=True)
    figures["logging"] = logging_blocked(ref, work, 10)
    print(f"soak {soak_seconds}s …", flush=True)
    figures["soak"] = soak(ref, work, soak_seconds)
    print("drift memory …", flush=True)
    figures["drift"] = drift_memory(ref, work, args.full)
    table = render(figures)
    (work.parent / f"reliability-{stamp}.json").write_text(json.dumps(figures, indent=2))
    (work.parent / f"reliability-{stamp}.md").write_text(table + "\n")
    print(table)


def _mem_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1 << 20)
    return 0.0


if __name__ == "__main__":
    main()
