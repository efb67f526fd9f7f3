"""``make demo`` on a real node: a process that holds the node, and the install recipe.

A node's API relay and DNS answerer are threads of the process that started it, so the
demo runs the node in a process of its own (``python -m demo.realnode run``) that stops it,
and cleans the machine, on SIGTERM, which ``make demo-down`` sends by PID. When that process
was killed outright, ``down`` still cleans up from the node's state file. The operator is
installed with docs/install.md's own kubectl lines, as the real-node tier does.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from demo.processes import stop_pid
from harness.controlplane import ControlPlane
from harness.node import (
    Node,
    NodeError,
    clean_up_leaked,
    ensure_binaries,
    ensure_images,
    unavailable_reason,
)
from realnode.install import read_recipe, run_kubectl_lines
from realnode.workloads import store_volume

TESTS = Path(__file__).resolve().parents[1]


def why_not(say: Callable[[str], None]) -> str | None:
    """None when the demo can use a real node (building what is not cached), else why not
    (``MLKUBE_REALNODE=0`` asks for the node agent)."""
    reason = unavailable_reason()
    if reason is not None:
        return reason
    try:
        say("▶ real node: kubelet, containerd and the images (built once, then cached)")
        ensure_binaries()
        ensure_images()
    except NodeError as error:
        return str(error).splitlines()[0]
    return None


def start(plane: ControlPlane, workdir: Path, log: Path, timeout: float = 300) -> int:
    """Starts the node process; returns its PID once the node is Ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    plane_state = workdir / "controlplane.json"
    plane_state.write_text(json.dumps(plane.state()))
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "demo.realnode", "run", "--dir", str(workdir)],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while not (workdir / "ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc.pid)
            raise RuntimeError(f"the real node did not start; see {log}")
        time.sleep(0.5)
    return proc.pid


def install(plane: ControlPlane, workdir: Path, namespace: str) -> None:
    """The operator by docs/install.md's recipe; the demo namespace's store volume."""
    run_kubectl_lines(plane, read_recipe())
    store_volume(plane, workdir / "node", namespace, "mlkube-models", with_claim=False)


def stop(pid: int) -> None:
    """SIGTERM to the node process (it stops the node), then any leftovers from its state."""
    stop_pid(pid, grace=180)
    clean_up_leaked()


def _run(workdir: Path) -> int:
    state = json.loads((workdir / "controlplane.json").read_text())
    plane = ControlPlane(
        workdir=Path(state["kubeconfig"]).parent,
        bin_dir=Path(state["bin_dir"]),
        server=state["server"],
    )
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    node = Node.start(plane, workdir / "node", images=ensure_images())
    try:
        (workdir / "ready").write_text(str(os.getpid()))
        print(f"real node {node.name} Ready; PIDs {node.pids}", flush=True)
        stopping.wait()
    finally:
        node.stop()
        (workdir / "ready").unlink(missing_ok=True)
        print("real node stopped and the machine cleaned", flush=True)
    return 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.realnode")
    parser.add_argument("action", choices=["run"])
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    return _run(args.dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
