"""The servers ``benchmarks/serve/run.py`` measures, and how the peers among them are run.

Kept apart from run.py (which builds the models, drives wrk and writes the table) so
each peer's installation and start-up is in one place. Each peer lives in its own venv
under ``~/.cache/mlkube/bench-venvs/`` (never the project's venv), built once with pinned
versions and the project venv's own scikit-learn and joblib, so that the joblib files the
benchmark dumps load there:

- MLServer 1.7.1 + mlserver-sklearn 1.7.1 (with uvloop==0.21.0, which it needs), started
  with ``mlserver start`` on a folder of ``model-settings.json`` files;
- KServe 0.21.0 (the ``kserve`` library: its ``sklearnserver`` is not published as a
  package), started as ``kserve_sklearn.py``, a minimal ``kserve.Model`` written here,
  on the same joblib files.

Every server listens on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import joblib
import psutil
import sklearn

VENVS = Path.home() / ".cache" / "mlkube" / "bench-venvs"
PINS = {
    "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"],
    "kserve": ["kserve==0.21.0"],
}
KSERVE_SERVER = Path(__file__).with_name("kserve_sklearn.py")
# Peer columns: MLServer tuned / as shipped; KServe with 1 or 2 uvicorn workers.
MLSERVER_PEERS = ("mls-tuned", "mls-shipped")
KSERVE_PEERS = {"kserve": 1, "kserve-w2": 2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_venv(peer: str) -> Path:
    """The peer's venv (built on first use); returns its ``bin`` folder."""
    venv = VENVS / peer
    marker = venv / ".mlkube-bench-ready"
    if not marker.exists():
        print(f"installing {peer} into {venv} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                *(str(venv / "bin" / "python"), "-m", "pip", "install", "-q"),
                *PINS[peer],
                f"scikit-learn=={sklearn.__version__}",
                f"joblib=={joblib.__version__}",
            ],
            check=True,
        )
        marker.write_text("ok\n")
    return venv / "bin"


def venv_of(peer: str) -> str:
    return "kserve" if peer in KSERVE_PEERS else "mlserver"


def ensure_venvs(peers: tuple[str, ...]) -> dict[str, Path]:
    """The ``bin`` folders of the venvs these peer columns need, by venv name."""
    return {venv: ensure_venv(venv) for venv in sorted({venv_of(p) for p in peers})}


def write_peer_model(peer: Path, name: str, model: Any) -> None:
    """``peer/name/model.joblib``, read by both peers, and MLServer's settings for it."""
    folder = peer / name
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": name,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
    )


class Server:
    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        port: int,
        log: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name, self.port = name, port
        self.log = log
        with log.open("wb") as handle:
            self.process = subprocess.Popen(
                argv,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        self.ps = psutil.Process(self.process.pid)

    def wait_ready(self, models: list[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        pending = list(models)
        while pending:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{self.name} not ready in {timeout} s:\n{self.log.read_text()[-3000:]}"
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", f"/v2/models/{pending[0]}/ready")
                if conn.getresponse().status == 200:
                    pending.pop(0)
                conn.close()
            except OSError:
                time.sleep(0.3)

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in [self.ps, *self.ps.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_mlserver(name: str, bin_dir: Path, *, peer: Path, work: Path) -> Server:
    """MLServer on a copy of ``peer``: tuned (``mls-tuned``) or as shipped."""
    folder = work / name
    shutil.copytree(peer, folder)
    port = free_port()
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
    }
    if name == "mls-tuned":
        settings.update(parallel_workers=0, debug=False)
    (folder / "settings.json").write_text(json.dumps(settings))
    argv = [str(bin_dir / "mlserver"), "start", "."]
    return Server(name, argv, port=port, log=work / f"{name}.log", cwd=folder)


def start_kserve(name: str, bin_dir: Path, *, peer: Path, work: Path) -> Server:
    """``kserve_sklearn.py`` on ``peer``'s joblib files with the column's workers."""
    port = free_port()
    argv = [
        *(str(bin_dir / "python"), str(KSERVE_SERVER), "--models-dir", str(peer)),
        *("--http_port", str(port), "--workers", str(KSERVE_PEERS[name])),
    ]
    return Server(name, argv, port=port, log=work / f"{name}.log")


def start_peer(name: str, bin_dirs: dict[str, Path], *, peer: Path, work: Path) -> Server:
    start = start_kserve if name in KSERVE_PEERS else start_mlserver
    return start(name, bin_dirs[venv_of(name)], peer=peer, work=work)
