"""metrics-server for a real node, so a HorizontalPodAutoscaler scales on real CPU use.

Built from its Go module by ``tests/node/build.sh`` (``metrics-server-<version>`` beside
the kubelet), it runs as a process of the node (started and stopped by PID with it, and
killed with a leaked node's processes), listening on the bridge's gateway address only.
The API server reaches it there as the ``v1beta1.metrics.k8s.io`` APIService (aggregator
routing to the EndpointSlice, TLS verified with the harness CA, the front-proxy client
certificate authenticating the API server); it reads the kubelet's ``/metrics/resource``
on loopback with a client certificate of its own, which the kubelet authorizes through a
SubjectAccessReview (``nodes/metrics``), and verifies the kubelet's serving certificate.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from harness.certs import CertificateAuthority
from harness.node import POD_GATEWAY, Node

PORT = 4443
NAMESPACE = "kube-system"
NAME = "metrics-server"
API_SERVICE = "v1beta1.metrics.k8s.io"
USER = "system:metrics-server"


def binary(bin_dir: Path) -> Path | None:
    """The built metrics-server, if ``MLKUBE_METRICS_SERVER=1 make node`` (or ``make
    test-realnode``) has built it."""
    found = sorted(bin_dir.glob("metrics-server-v*"))
    return found[-1] if found else None


def _objects(ca_bundle: str) -> list[dict[str, object]]:
    labels = {"app.kubernetes.io/name": NAME}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": USER, "labels": labels},
            # The upstream manifest's rules: the kubelets' resource metrics, nodes and pods.
            "rules": [
                {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["pods", "nodes"],
                 "verbs": ["get", "list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": USER, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": USER},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": USER}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{NAME}:auth-reader", "namespace": NAMESPACE,
                         "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "extension-apiserver-authentication-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": USER}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{NAME}:auth-delegator", "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:auth-delegator"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": USER}],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": PORT}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": NAME, "namespace": NAMESPACE,
                "labels": {**labels, "kubernetes.io/service-name": NAME},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [POD_GATEWAY], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": PORT, "protocol": "TCP"}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": API_SERVICE, "labels": labels},
            "spec": {
                "group": "metrics.k8s.io", "version": "v1beta1",
                "service": {"name": NAME, "namespace": NAMESPACE, "port": 443},
                "caBundle": ca_bundle,
                "groupPriorityMinimum": 100, "versionPriority": 100,
            },
        },
    ]  # fmt: skip


def start(node: Node, timeout: float = 180) -> None:
    """Starts metrics-server as one of the node's processes; returns once node metrics come."""
    plane = node.plane
    pki = node.workdir / "pki"
    ca = CertificateAuthority.load(plane.workdir / "pki")
    ca.directory = pki
    ca.issue(NAME, f"{NAME}.{NAMESPACE}.svc", dns_names=(f"{NAME}.{NAMESPACE}.svc",),
             ip_addresses=(POD_GATEWAY,), server=True)  # fmt: skip
    ca.issue(f"{NAME}-client", USER)
    node.write_kubeconfig(pki / f"{NAME}.kubeconfig", pki / f"{NAME}-client")
    ca_file = plane.workdir / "pki" / "ca.crt"
    bundle = base64.b64encode(ca_file.read_bytes()).decode()
    plane.kubectl("apply", "-f", "-", input_text=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": _objects(bundle)}
    ))  # fmt: skip
    kubeconfig = pki / f"{NAME}.kubeconfig"
    program = binary(node.bin_dir)
    if program is None:
        raise FileNotFoundError(f"no metrics-server in {node.bin_dir}: make test-realnode")
    proc = node.spawn(NAME, [
        str(program),
        f"--bind-address={POD_GATEWAY}", f"--secure-port={PORT}",
        f"--tls-cert-file={pki / f'{NAME}.crt'}", f"--tls-private-key-file={pki / f'{NAME}.key'}",
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
        f"--kubelet-certificate-authority={ca_file}",
        "--kubelet-preferred-address-types=Hostname", "--kubelet-use-node-status-port",
        "--metric-resolution=15s", "--kubelet-request-timeout=5s", "--v=1",
    ])  # fmt: skip
    deadline = time.monotonic() + timeout
    while not _node_metrics(node):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = node.log_tail(NAME, 15)
            raise AssertionError(f"no node metrics (exit {proc.poll()}, {timeout:.0f}s)\n{tail}")
        time.sleep(2)


def _node_metrics(node: Node) -> bool:
    got = node.plane.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes", check=False)
    return got.returncode == 0 and bool(json.loads(got.stdout).get("items"))


def stop(node: Node) -> None:
    """Stops the process (by PID) and removes what ``start`` applied."""
    node.stop_process(NAME)
    plane = node.plane
    plane.kubectl("delete", "apiservice", API_SERVICE, "--ignore-not-found", check=False)
    plane.kubectl("delete", "-n", NAMESPACE, "service,endpointslice", NAME,
                  "--ignore-not-found", check=False)  # fmt: skip
    plane.kubectl("delete", "clusterrole,clusterrolebinding,rolebinding", "-A", "-l",
                  f"app.kubernetes.io/name={NAME}", "--ignore-not-found", check=False)  # fmt: skip
