"""Load, soak and memory probes for issue 9: wrk against a real ``mlkube serve``, RSS
sampled from /proc, and the drift checker's peak RSS as the window grows.

Used by ``benchmarks/reliability/run.py`` (full figures) and, in a short form, by
``tests/unit/test_reliability_load.py``. Nothing here asserts on time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reliability.workspace import MODEL

WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
statuses = {}
retry = 0
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if headers["retry-after"] or headers["Retry-After"] then retry = retry + 1 end
end
function setup(thread) table.insert(threads, thread) end
threads = {}
function done(summary, latency, requests)
  local total = {}
  local retries = 0
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do total[k] = (total[k] or 0) + v end
    retries = retries + t:get("retry")
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, string.format('"%%d": %%d', k, v)) end
  io.write(string.format('RESULT {"statuses": {%%s}, "retryAfter": %%d, "p50": %%f, ' ..
    '"p99": %%f, "max": %%f, "requests": %%d, "seconds": %%f}\\n',
    table.concat(parts, ", "), retries, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.requests,
    summary.duration / 1e6))
end
"""


def request_body() -> str:
    return json.dumps(
        {
            "inputs": [
                {"name": "age", "shape": [1], "datatype": "FP64", "data": [41]},
                {"name": "income", "shape": [1], "datatype": "FP64", "data": [52000.0]},
                {"name": "region", "shape": [1], "datatype": "BYTES", "data": ["north"]},
                {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]},
            ]
        }
    )


def wrk(
    port: int, connections: int, seconds: int, work: Path, timeout_seconds: int = 10
) -> dict[str, Any]:
    """A closed-loop ``wrk`` run: status counts, Retry-After count, latency in ms."""
    lua = work / "post.lua"
    lua.write_text(WRK_LUA % request_body())
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            f"{timeout_seconds}s",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    ).stdout
    match = re.search(r"RESULT (\{.*\})", out)
    if not match:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    result: dict[str, Any] = json.loads(match.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socketErrors"] = sum(int(g) for g in errors.groups()) if errors else 0
    result["timeouts"] = int(errors.group(4)) if errors else 0
    statuses = {int(k): v for k, v in result["statuses"].items()}
    result["ok"] = statuses.get(200, 0)
    result["shed"] = statuses.get(503, 0) + statuses.get(429, 0)
    result["other"] = sum(v for k, v in statuses.items() if k not in (200, 429, 503))
    result["rate"] = result["ok"] / result["seconds"] if result["seconds"] else 0.0
    return result


def rss_mib(pid: int) -> float:
    """Resident set of a process and its children (workers), in MiB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


@dataclass
class RssSampler:
    """Samples ``rss_mib(pid)`` every ``every`` seconds in a thread until stopped."""

    pid: int
    every: float
    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._started, rss_mib(self.pid)))
            self._stop.wait(self.every)

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def write_live_parquet(path: Path, rows: int, seed: int = 3) -> None:
    """``rows`` live rows of the reference model's features, in 1M-row row groups."""
    rng = np.random.default_rng(seed)
    writer: pq.ParquetWriter | None = None
    done = 0
    regions = np.array(["north", "south", "east", "west"])
    plans = np.array(["basic", "pro"])
    while done < rows:
        n = min(1_000_000, rows - done)
        table = pa.table(
            {
                "age": rng.integers(18, 80, n).astype(np.int64),
                "income": rng.normal(52_000, 15_000, n).round(2),
                "region": regions[rng.integers(0, 4, n)],
                "plan": plans[rng.integers(0, 2, n)],
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        done += n
    assert writer is not None
    writer.close()


def write_live_log(directory: Path, rows: int, hour: str = "2026-01-05/11") -> None:
    """``rows`` inference-log lines (the server's JSONL contract) in one hour partition."""
    target = directory / hour
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(4)
    with (target / "w0-0.jsonl").open("w") as out:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            ages = rng.integers(18, 80, n)
            incomes = rng.normal(52_000, 15_000, n).round(2)
            out.writelines(
                f'{{"ts":"2026-01-05T11:{(start + i) // 60 % 60:02d}:{(start + i) % 60:02d}Z",'
                f'"model":"{MODEL}","version":1,"request_id":"r{start + i}","status":200,'
                f'"inputs":{{"age":{ages[i]},"income":{incomes[i]},"region":"north",'
                f'"plan":"basic"}},"output":"no"}}\n'
                for i in range(n)
            )


def peak_rss_of(args: list[str]) -> tuple[int, float, float]:
    """Runs ``python -m mlkube …`` in a fresh child: exit code, peak RSS (MiB), seconds."""
    probe = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps([code, peak, time.perf_counter() - t]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, sys.executable, "-m", "mlkube", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    ).stdout
    code, peak, seconds = json.loads(out.strip().splitlines()[-1])
    return int(code), float(peak), float(seconds)
