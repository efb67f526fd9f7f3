"""Starting and stopping the operator and the node agent as background processes.

The end-to-end test and the demo run them the same way a person would: ``mlkube
operator`` from the project's venv with the admin kubeconfig, and ``python -m nodeagent
run``, each in its own session with its output in a log file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from harness.ports import free_ports

TESTS = Path(__file__).resolve().parents[1]
MLKUBE = Path(sys.executable).with_name("mlkube")


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_operator(
    kubeconfig: Path, namespace: str, log: Path, settings: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``mlkube operator -n NAMESPACE`` (``settings``: more ``MLKUBE_…`` variables); returns
    once its liveness endpoint answers."""
    (port,) = free_ports(1)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "MLKUBE_METRICS_PORT": "0"}
    env.update(settings or {})
    liveness = f"http://127.0.0.1:{port}/healthz"
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            [str(MLKUBE), "operator", "-n", namespace, "--liveness", liveness],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not _alive(liveness):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"the operator did not start; see {log}")
        time.sleep(0.2)
    return proc


def start_node_agent(
    kubeconfig: Path, state_dir: Path, namespace: str, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """``python -m nodeagent run`` (``extra``: more of its flags: ``--node-name``,
    ``--relay``); returns once it has written its state file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodeagent", "run", "--kubeconfig", str(kubeconfig),
             "--dir", str(state_dir), "--namespace", namespace, *extra],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (state_dir / "state.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"the node agent did not start; see {log}")
        time.sleep(0.1)
    return proc


def stop_pid(pid: int, grace: float = 60) -> None:
    """SIGTERM to the process (it cleans up), SIGKILL to its group if it outstays ``grace``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            os.kill(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)


def stop(proc: subprocess.Popen[bytes], grace: float = 60) -> None:
    if proc.poll() is None:
        stop_pid(proc.pid, grace)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def agent_and_operator(
    kubeconfig: Path,
    namespace: str,
    directory: Path,
    *,
    nodes: tuple[tuple[str, ...], ...] = ((),),
    settings: dict[str, str] | None = None,
) -> Iterator[None]:
    """Node agents (one per ``nodes`` entry: its extra flags) and ``mlkube operator -n
    NAMESPACE`` (``settings``: more MLKUBE_ variables) for the block, logs in ``directory``
    (``agent*.log``, ``operator.log``); on an AssertionError the logs' tails are printed."""
    logs = [directory / ("agent.log" if i == 0 else f"agent-{i}.log") for i in range(len(nodes))]
    agents = []
    try:
        for i, flags in enumerate(nodes):
            state = directory / ("agent" if i == 0 else f"agent-{i}")
            agents.append(start_node_agent(kubeconfig, state, namespace, logs[i], *flags))
        operator = start_operator(kubeconfig, namespace, directory / "operator.log", settings)
        try:
            yield
        except AssertionError:
            print((directory / "operator.log").read_text()[-6000:])
            for log in logs:
                print(log.read_text()[-4000:])
            raise
        finally:
            stop(operator)
    finally:
        for agent in agents:
            stop(agent)
