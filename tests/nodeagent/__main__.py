"""``python -m nodeagent run|down --dir DIR``: the agent as a long-running process.

``run`` stays in the foreground until SIGTERM or SIGINT and then cleans up; ``down``
signals the agent recorded in ``DIR/state.json``, waits for it, and removes anything a
crashed agent left behind (processes in its namespaces, the namespaces, the bridge).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from nodeagent.agent import AgentSettings, NodeAgent, remove_leftovers


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s"
    )
    settings = AgentSettings(
        kubeconfig=args.kubeconfig,
        state_dir=args.dir.resolve(),
        namespaces=tuple(args.namespace),
        node_name=args.node_name or "",
        relays=tuple(_relay(r) for r in args.relay),
        labels=tuple(tuple(label.split("=", 1)) for label in args.label),  # type: ignore[misc]
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    agent = NodeAgent.start(settings)
    print(f"node agent up: node {agent.node_name}, pods on {agent.gateway}/24", flush=True)
    done.wait()
    agent.stop()
    print("node agent stopped", flush=True)
    return 0


def _relay(text: str) -> tuple[str, int, int]:
    """``10.96.0.10:9000=34567`` → ("10.96.0.10", 9000, 34567)."""
    address, _, host_port = text.partition("=")
    host, _, port = address.rpartition(":")
    return host, int(port), int(host_port)


def _down(args: argparse.Namespace) -> int:
    state_file = args.dir / "state.json"
    if not state_file.exists():
        print("node agent is not running")
        return 0
    state = json.loads(state_file.read_text())
    pid = int(state["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    remove_leftovers(int(state["subnet"]))
    state_file.unlink(missing_ok=True)
    print("node agent stopped")
    return 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodeagent")
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run the agent in the foreground")
    run.add_argument("--kubeconfig", type=Path, required=True)
    run.add_argument("--dir", type=Path, required=True, help="state directory")
    run.add_argument("--namespace", action="append", default=[], help="repeatable; default all")
    run.add_argument("--node-name", help="default mlkube-node-<N> for 10.244.N.0/24")
    run.add_argument(
        "--relay", action="append", default=[], metavar="ADDRESS:PORT=HOSTPORT",
        help="pods reach 127.0.0.1:HOSTPORT at ADDRESS:PORT (repeatable)",
    )  # fmt: skip
    run.add_argument("--label", action="append", default=[], help="extra node label k=v")
    run.set_defaults(func=_run)
    down = sub.add_parser("down", help="stop the agent recorded in --dir")
    down.add_argument("--dir", type=Path, required=True)
    down.set_defaults(func=_down)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
