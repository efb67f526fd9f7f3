"""Helpers for the S3 store's tests: the mlkube commands as a laptop runs them, a model
server on loopback, and a proxy that kills the trainer at the moment it commits."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness.controlplane import REPO
from harness.ports import free_port

MLKUBE = Path(sys.executable).with_name("mlkube")
IRIS = REPO / "manifests" / "examples" / "iris.yaml"
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 5.1, 1.8]]


def mlkube(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MLKUBE), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **(env or {})},
    )


def train(store: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = mlkube("train", "-f", str(IRIS), "--store", store, *extra, env=env)
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def predict(self, rows: list[list[float]], request_id: str = "") -> dict[str, Any]:
        return self.post("/v1/models/iris:predict", {"instances": rows}, request_id)

    def post(self, path: str, body: dict[str, Any], request_id: str = "") -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers["x-request-id"] = request_id
        request = urllib.request.Request(
            f"{self.base}{path}", data=json.dumps(body).encode(), headers=headers
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
            result: dict[str, Any] = json.loads(answer.read())
            return result

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@contextlib.contextmanager
def serving(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``mlkube serve ARGS`` on 127.0.0.1, once it answers ready; stopped with SIGTERM."""
    port = free_port()
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(MLKUBE), "serve", *args, "--host", "127.0.0.1", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{server.base}/v2/models/iris/ready", timeout=2):
                    break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"the server never became ready:\n{log.read_text()}"
            time.sleep(0.3)
        yield server
    finally:
        if proc.poll() is None:
            server.stop()


class CommitKiller:
    """A loopback proxy in front of the S3 server that SIGKILLs ``victim`` when it sees the
    PUT of a ``metadata.json`` (the commit) and never forwards that request."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.victim: int | None = None
        self.killed = threading.Event()
        self.forwarded: list[str] = []
        killer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _relay(self) -> None:
                body = self._body()
                path = self.path.split("?", 1)[0]
                if self.command == "PUT" and path.endswith("/metadata.json"):
                    if killer.victim is not None:
                        os.kill(killer.victim, signal.SIGKILL)
                    killer.killed.set()
                    self.close_connection = True
                    return
                killer.forwarded.append(f"{self.command} {path}")
                upstream = http.client.HTTPConnection(killer.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _relay  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CommitKiller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
