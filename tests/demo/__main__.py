"""``python -m demo up|down`` — what ``make demo`` and ``make demo-down`` run.

``up`` builds the control plane if it is not cached (saying so), starts it under
``.demo/``, then runs the pods on a real node when it can (root on Linux: kubelet +
containerd, the operator installed by docs/install.md's recipe, ``demo.realnode``) and
otherwise on the node agent with ``mlkube operator`` on the host, saying why in one line.
It runs the iris loop with progress, prints a summary table, which node it used and how
to look around with kubectl; everything keeps running until ``down``, which stops it all
and leaves the machine as it was (the real node's clean-up, or the agent's namespaces,
links and processes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from demo import realnode
from demo.labels import LabelsLeg
from demo.loop import Loop, Summary
from demo.processes import start_node_agent, start_operator, stop_pid
from harness.controlplane import REPO, ControlPlane, ensure_binaries
from nodeagent.kube import Kube

DEMO_DIR = REPO / ".demo"
NAMESPACE = "mlkube-demo"
CRDS = REPO / "crds"


def say(text: str) -> None:
    print(text, flush=True)


def _up(_: argparse.Namespace) -> int:
    state_file = DEMO_DIR / "state.json"
    if state_file.exists():
        say(f"the demo is already running (see {state_file}); `make demo-down` first")
        return 1
    started = time.monotonic()
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir()
    say("▶ control plane: building etcd/kube-apiserver/kube-controller-manager if not cached")
    bin_dir = ensure_binaries()
    fallback = realnode.why_not(say)
    plane = ControlPlane.start(DEMO_DIR / "controlplane", bin_dir)
    state: dict[str, object] = {"controlplane": plane.state()}
    (plane.workdir / "state.json").write_text(json.dumps(plane.state(), indent=2))
    state_file.write_text(json.dumps(state, indent=2))
    say(f"  ✓ API server at {plane.server}")
    logs = DEMO_DIR / "logs"
    logs.mkdir()
    if fallback is None:
        node = _real_node(plane, state, logs)
    else:
        node = _node_agent(plane, state, logs, fallback)
    state_file.write_text(json.dumps(state, indent=2))
    loop = Loop(
        Kube(plane.kubeconfig), bin_dir / "kubectl", plane.kubeconfig, NAMESPACE, say=say,
        step_timeout=300 if fallback is None else 150, via_service=fallback is None,
    )  # fmt: skip
    summary = loop.run()
    _print_summary(summary, time.monotonic() - started)
    # -- issue 17: the ground-truth leg, its own Model and Monitor (iris-live) --
    labels = LabelsLeg(loop).run()
    say("\nGround truth (iris-live): live accuracy on the same shifted traffic")
    for number, score in sorted(labels.scores.items()):
        say(f"  v{number}  {score:.4f} on {labels.labels[number]} labels")
    say(f"  v2 trained on the reference rows + {labels.live_rows} labelled live rows")
    say(f"\nNode: {node}")
    kubectl = f"{bin_dir / 'kubectl'} --kubeconfig {plane.kubeconfig} -n {NAMESPACE}"
    where_logs = (
        "  k logs deploy/iris-predictor     # any container's log, from the kubelet"
        if fallback is None
        else f"  logs of every container: {DEMO_DIR / 'nodeagent' / 'pods'}"
    )
    say(
        "\nStill running in the background. Look around:\n"
        f"  alias k='{kubectl}'\n"
        "  k get mlkube                      # Models, TrainingJobs, Monitors\n"
        "  k describe model iris             # versions, promotions, conditions\n"
        "  k get monitor iris -o yaml        # drift scores per feature\n"
        f"  KUBECONFIG={plane.kubeconfig} .venv/bin/kubectl-mlkube -n {NAMESPACE} perf iris-live\n"
        "  k get jobs,cronjobs,deployments,pods -o wide\n"
        f"{where_logs}\n"
        "Stop everything with: make demo-down"
    )
    return 0


def _real_node(plane: ControlPlane, state: dict[str, object], logs: Path) -> str:
    """A kubelet + containerd node, the operator installed by docs/install.md's recipe."""
    say("▶ real node: containerd, kubelet, kube-proxy, kube-scheduler (images imported)")
    state["realnode"] = realnode.start(plane, DEMO_DIR / "realnode", logs / "realnode.log")
    (DEMO_DIR / "state.json").write_text(json.dumps(state, indent=2))
    _namespace(plane)
    say("▶ operator: kubectl apply --server-side -k manifests/overlays/local (docs/install.md)")
    realnode.install(plane, DEMO_DIR / "realnode", NAMESPACE)
    return (
        "a real node (kubelet + containerd; the operator and every pod run from the images "
        "built from images/*/Dockerfile; predictors called through their ClusterIP)"
    )


def _node_agent(plane: ControlPlane, state: dict[str, object], logs: Path, fallback: str) -> str:
    """The node agent (pods as local processes) and ``mlkube operator`` on the host."""
    say(f"▶ no real node ({fallback}): the node agent runs the pods instead")
    plane.kubectl("apply", "--server-side", "-f", str(CRDS))
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    _namespace(plane)
    agent = start_node_agent(
        plane.kubeconfig, DEMO_DIR / "nodeagent", NAMESPACE, logs / "nodeagent.log"
    )
    state["nodeagent"] = agent.pid
    (DEMO_DIR / "state.json").write_text(json.dumps(state, indent=2))
    say(f"▶ node agent running pods of {NAMESPACE} (log: {logs / 'nodeagent.log'})")
    operator = start_operator(plane.kubeconfig, NAMESPACE, logs / "operator.log")
    state["operator"] = operator.pid
    say(f"▶ operator: mlkube operator -n {NAMESPACE} (log: {logs / 'operator.log'})")
    return f"the node agent (pods as local processes), because there is no real node: {fallback}"


def _namespace(plane: ControlPlane) -> None:
    plane.kubectl("create", "namespace", NAMESPACE)
    plane.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")


def _print_summary(summary: Summary, total: float) -> None:
    say("\nVersions")
    say(f"  {'ver':<4}{'trigger':<10}{'score':>8}  {'decision':<10}reason")
    for version in summary.versions:
        say(
            f"  v{version['version']:<3}{version.get('trigger', ''):<10}"
            f"{version.get('score', 0):>8.4f}  {version.get('decision', ''):<10}"
            f"{version.get('reason', '')}"
        )
    monitor = summary.monitor
    say(
        f"\nDrift check: verdict {monitor.get('verdict')}, {monitor.get('samples')} samples, "
        f"drift share {monitor.get('driftShare')}"
    )
    for feature, result in sorted((monitor.get("features") or {}).items()):
        say(
            f"  {feature:<18}{result.get('method', ''):<8}score {result.get('score', 0):.3f}"
            f"  threshold {result.get('threshold', 0)}  drifted {result.get('drifted')}"
        )
    say("\nTimings")
    for title, seconds in summary.timings:
        say(f"  {seconds:6.1f}s  {title}")
    say(f"  {summary.total_seconds:6.1f}s  the loop; {total:.1f}s with start-up")


def _down(_: argparse.Namespace) -> int:
    state_file = DEMO_DIR / "state.json"
    if not state_file.exists():
        say("the demo is not running")
        return 0
    state = json.loads(state_file.read_text())
    if "operator" in state:
        stop_pid(int(state["operator"]))
        say("operator stopped")
    if "realnode" in state:
        realnode.stop(int(state["realnode"]))
        say("real node stopped, the machine cleaned")
    else:
        subprocess.run(
            [sys.executable, "-m", "nodeagent", "down", "--dir", str(DEMO_DIR / "nodeagent")],
            check=False,
        )
    subprocess.run(
        [sys.executable, "-m", "harness.controlplane", "down", "--dir",
         str(DEMO_DIR / "controlplane")],
        check=False,
    )  # fmt: skip
    pids = state.get("controlplane", {}).get("pids", {})
    for pid in pids.values():
        stop_pid(int(pid), grace=10)
    state_file.unlink()
    return 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo")
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)
    return _up(args) if args.action == "up" else _down(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
