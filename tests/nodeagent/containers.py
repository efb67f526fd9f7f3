"""One container as a local process, and the probes that judge it.

The process is ``ip netns exec <pod-ns> python -I -S shim.py <spec>`` in its own session,
so a signal to its process group reaches everything the container started. Exit codes
follow the runtime convention (128 + signal for a killed process); the termination
message comes from the file bind-mounted at ``terminationMessagePath`` or, under
``FallbackToLogsOnError``, from the tail of the container's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.kube import Obj

SHIM = Path(__file__).with_name("shim.py")
MESSAGE_LIMIT = 4096
FALLBACK_LINES = 80
FALLBACK_BYTES = 2048


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Probe:
    """Counts consecutive results the way the kubelet's prober does."""

    spec: Obj
    started: float
    next_due: float = 0.0
    successes: int = 0
    failures: int = 0
    passed: bool | None = None

    def __post_init__(self) -> None:
        self.next_due = self.started + self.spec.get("initialDelaySeconds", 0)

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def record(self, ok: bool, now: float) -> None:
        self.next_due = now + self.spec.get("periodSeconds", 10)
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.spec.get("successThreshold", 1):
                self.passed = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= self.spec.get("failureThreshold", 3):
                self.passed = False


def run_probe(spec: Obj, container: Obj, pod_ip: str, pid: int | None) -> bool:
    timeout = float(spec.get("timeoutSeconds", 1))
    if "httpGet" in spec:
        action = spec["httpGet"]
        port = _port(action["port"], container)
        host = action.get("host") or pod_ip
        scheme = action.get("scheme", "HTTP").lower()
        path = action.get("path", "/")
        request = urllib.request.Request(f"{scheme}://{host}:{port}{path}")
        for header in action.get("httpHeaders", []):
            request.add_header(header["name"], header["value"])
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return 200 <= int(response.status) < 400
        except urllib.error.HTTPError as error:
            return 200 <= error.code < 400
        except (OSError, ValueError):
            return False
    if "tcpSocket" in spec:
        port = _port(spec["tcpSocket"]["port"], container)
        try:
            with socket.create_connection((pod_ip, port), timeout=timeout):
                return True
        except OSError:
            return False
    if "exec" in spec and pid is not None:
        argv = ["nsenter", "-t", str(pid), "-m", "-n", "-u", "--", *spec["exec"]["command"]]
        try:
            result = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0
    return False


def _port(port: int | str, container: Obj) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for item in container.get("ports", []):
        if item.get("name") == port:
            return int(item["containerPort"])
    raise ValueError(f"no container port named {port}")


@dataclass
class Container:
    """A container's process, counters and probe state across restarts."""

    spec: Obj
    directory: Path
    restart_count: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    started_mono: float = 0.0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    probes: dict[str, Probe] = field(default_factory=dict)
    restart_at: float = 0.0
    instance: int = 0

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def termination_log(self) -> Path:
        return self.directory / f"{self.name}.termination-log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def terminated(self) -> bool:
        return "terminated" in self.state

    def start(self, netns: str, shim_spec: Obj) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.termination_log.write_bytes(b"")
        self.termination_log.chmod(0o666)
        self.instance += 1
        spec_file = self.directory / f"{self.name}.{self.instance}.json"
        spec_file.write_text(json.dumps(shim_spec))
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-I", "-S", str(SHIM), str(spec_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        log.close()
        self.started_at = now_rfc3339()
        self.started_mono = time.monotonic()
        self.state = {"running": {"startedAt": self.started_at}}
        self.ready = False
        self.started = "startupProbe" not in self.spec
        self.probes = {
            kind: Probe(self.spec[kind], self.started_mono)
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
            if kind in self.spec
        }

    def container_id(self) -> str:
        pid = self.proc.pid if self.proc else 0
        return f"nodeagent://{self.name}-{pid}"

    def reap(self) -> bool:
        """Records the exit if the process ended; True when it just did."""
        if self.proc is None or "running" not in self.state:
            return False
        code = self.proc.poll()
        if code is None:
            return False
        exit_code = code if code >= 0 else 128 - code
        terminated: Obj = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": self.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": self.container_id(),
        }
        message = self._message(exit_code)
        if message:
            terminated["message"] = message
        self.state = {"terminated": terminated}
        self.ready = False
        return True

    def _message(self, exit_code: int) -> str:
        with contextlib.suppress(OSError):
            text = self.termination_log.read_bytes()[:MESSAGE_LIMIT].decode(errors="replace")
            if text:
                return text
        policy = self.spec.get("terminationMessagePolicy", "File")
        if policy == "FallbackToLogsOnError" and exit_code != 0:
            with contextlib.suppress(OSError):
                lines = self.log_path.read_bytes().decode(errors="replace").splitlines()
                return "\n".join(lines[-FALLBACK_LINES:])[-FALLBACK_BYTES:]
        return ""

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self, grace: float) -> None:
        """SIGTERM, then SIGKILL once ``grace`` seconds have passed; waits for the exit."""
        if self.proc is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=max(grace, 0.0))
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def status(self) -> Obj:
        status: Obj = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": self.spec.get("image", ""),
            "ready": self.ready,
            "started": self.started and "running" in self.state,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.proc is not None:
            status["containerID"] = self.container_id()
        return status
