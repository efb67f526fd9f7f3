"""A real node leaves the machine as it found it, and keeps its pods on this machine.

The node is started and stopped here (not the module fixture), around a pod that really
ran: the snapshot taken before the start must equal the one taken after the stop. While
it runs, the snapshot must show the node's traces, or the comparison would prove nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.controlplane import SERVICE_CIDR, ControlPlane
from harness.node import (
    API_RELAY_PORT,
    BRIDGE,
    FORWARD_CHAIN,
    IMAGE_REFERENCE_RUNTIME,
    OUTPUT_CHAIN,
    POD_GATEWAY,
    Node,
    host_snapshot,
)
from realnode.workloads import apply, first_log_line, get, pods_images

# Prints the pod's routing table (from /proc: the image has no `ip`), then waits.
ROUTES = """
import json, socket, struct, time
def ip(hex_le):
    return socket.inet_ntoa(struct.pack("<I", int(hex_le, 16)))
rows = open("/proc/net/route").read().splitlines()[1:]
print(json.dumps([[ip(r.split()[1]), ip(r.split()[7]), ip(r.split()[2])] for r in rows]),
      flush=True)
time.sleep(600)
"""


def _routes_pod(namespace: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "routes", "namespace": namespace},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE_REFERENCE_RUNTIME,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", ROUTES],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def test_node_leaves_no_trace_and_pods_have_no_way_out(
    control_plane: ControlPlane,
    node_requirements: tuple[Path, dict[str, Path]],
    tmp_path: Path,
) -> None:
    bin_dir, images = node_requirements
    before = host_snapshot(bin_dir)
    node = Node.start(control_plane, tmp_path / "node", bin_dir=bin_dir, images=pods_images(images))
    try:
        apply(control_plane, _routes_pod("default"))
        routes = json.loads(first_log_line(control_plane, "default", "routes"))
        destinations = {(dest, mask) for dest, mask, _ in routes}
        # The pod subnet on its interface and the Services through the bridge: no default.
        assert ("0.0.0.0", "0.0.0.0") not in destinations, routes
        service_net, service_bits = SERVICE_CIDR.split("/")
        assert (service_net, "255.255.0.0") in destinations and service_bits == "16"
        assert len(routes) == 2, routes
        pod = get(control_plane, "pod", "routes", "-n", "default")
        assert pod["status"]["podIP"].startswith("10.245.0.")

        during = host_snapshot(bin_dir)
        assert BRIDGE in during["links"]
        assert any(FORWARD_CHAIN in rule for rule in during["iptables"])
        assert any(OUTPUT_CHAIN in rule for rule in during["iptables"])
        assert any("KUBE-SERVICES" in rule for rule in during["iptables"])
        assert during["cgroups"], "no kubepods cgroup while the node runs"
        assert during["processes"], "no node process seen while the node runs"
        assert during["netns"], "no pod network namespace while a pod runs"
        assert f"tcp {POD_GATEWAY}:{API_RELAY_PORT}" in during["listeners"], during["listeners"]
    finally:
        node.stop()
    after = host_snapshot(bin_dir)
    for key in before:
        assert after[key] == before[key], (
            f"{key} differs after the node stopped:\n before {before[key]}\n after {after[key]}"
        )
