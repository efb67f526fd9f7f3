"""A real Kubernetes node on this machine: containerd, runc, kubelet, kube-proxy, CNI.

Joins a running :class:`harness.controlplane.ControlPlane` and adds the kube-scheduler
(the control plane runs none). Built from Go modules by ``tests/node/build.sh``; the
images it runs are built from the project's Dockerfiles by ``tests/node/images.sh`` and
imported into containerd without a registry.

Identity: the kubelet authenticates with a node certificate from the control plane's CA
(``system:node:localhost`` in ``system:nodes``, authorized by the Node authorizer), serves
its API on 127.0.0.1 with a certificate from the same CA, accepts only client certificates
and webhook-authorized requests (no anonymous access), and the API server reaches it with
its kubelet client certificate at the node's Hostname address, ``localhost``.

Network safety: pods live on ``POD_CIDR`` behind the ``cni0`` bridge, with routes to the
pod subnet and the Service range only: no default route, no masquerade. A FORWARD rule
drops anything routed from the bridge to another interface, so a pod cannot reach past
this machine even through an unassigned ClusterIP, and an OUTPUT rule rejects the host's
own packets to pod or Service addresses that would leave through another interface.

Only one real node can run on a machine (``cni0``, the kubelet's cgroups, containerd's
shim sockets): a lock file serializes them. ``stop()`` leaves the machine as it was; the
``realnode`` tier checks that with :func:`host_snapshot` before and after.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from harness.certs import CertificateAuthority
from harness.controlplane import REPO, SERVICE_CIDR, ControlPlane, ControlPlaneError
from harness.ports import free_ports

BUILD_SCRIPT = REPO / "tests" / "node" / "build.sh"
IMAGES_SCRIPT = REPO / "tests" / "node" / "images.sh"
NODE_NAME = "localhost"  # the kubelet's Hostname address: it must resolve to loopback
POD_CIDR = "10.245.0.0/24"  # outside the node agent's 10.244.0.0/16
POD_GATEWAY = "10.245.0.1"
BRIDGE = "cni0"
FORWARD_CHAIN = "MLKUBE-NODE-FORWARD"
OUTPUT_CHAIN = "MLKUBE-NODE-OUTPUT"
LOCK_FILE = Path("/run/lock/mlkube-realnode.lock")
# What the running node must undo, kept while it runs: a node whose process died (killed
# test run) is cleaned up by the next one that takes the lock.
STATE_FILE = Path("/run/mlkube-realnode.json")
# In-cluster clients (the operator's pod) reach the API server at the ``kubernetes``
# Service: its EndpointSlice points at this port on the bridge's address, where the
# harness relays each connection to the API server's loopback port. TLS stays end to end.
API_RELAY_PORT = 6443
API_ENDPOINTSLICE = "kubernetes-mlkube-node"
# A test's loopback server exposed to the pods (``Node.expose``): a selector-less Service,
# and this EndpointSlice pointing at a relay on the bridge's address.
EXPOSED_SUFFIX = "mlkube-node"
MANAGED_BY = "harness.node.mlkube.io"
# Pods resolve Service names (kubernetes.default.svc, predictors) at the bridge's address,
# where the harness answers for cluster.local from the API server and refuses anything
# else: no query is forwarded off this machine.
CLUSTER_DOMAIN = "cluster.local"
# Written by the kubelet (setupKernelTunables), the bridge plugin (ip_forward) or kube-proxy;
# restored on stop.
SYSCTLS = (
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
)
# Host paths a node may create outside its work directory.
HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/run/containerd",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/etc/cni",
    "/opt/cni",
    "/etc/kubernetes",
)
# Mount points under these belong to a node (netns of other tools are left out of the check).
MOUNT_PREFIXES = (
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/run/containerd",
    "/run/netns/cni-",
    "/var/run/netns/cni-",
)
CHAIN_PATTERN = re.compile(r"^(KUBE-|CNI-|MLKUBE-NODE-)")
CORE_PROCESSES = ("containerd", "kubelet", "kube-scheduler", "kube-proxy")
IMAGE_REFERENCE_RUNTIME = "docker.io/mlkube/runtime:dev"
IMAGE_REFERENCE_OPERATOR = "docker.io/mlkube/operator:dev"


class NodeError(ControlPlaneError):
    """The node could not be built or started; the message includes log tails."""


def unavailable_reason() -> str | None:
    """Why a real node cannot run here (None when it can): root on Linux with loopback names,
    unless ``MLKUBE_REALNODE=0`` opts out."""
    if os.environ.get("MLKUBE_REALNODE") == "0":
        return "MLKUBE_REALNODE=0"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "a real node needs root"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup filesystem"
    try:
        address = socket.gethostbyname(NODE_NAME)
    except OSError:
        return f"{NODE_NAME} does not resolve"
    if address != "127.0.0.1":
        return f"{NODE_NAME} resolves to {address}, not 127.0.0.1"
    return None


def _run_script(script: Path) -> str:
    result = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"{script.relative_to(REPO)} failed (exit {result.returncode})")
    return result.stdout


def ensure_binaries() -> Path:
    """The directory holding kubelet, containerd, runc, cni/… (built and cached on first use)."""
    override = os.environ.get("MLKUBE_NODE_BIN")
    if override:
        return Path(override)
    return Path(_run_script(BUILD_SCRIPT).strip().splitlines()[-1])


def ensure_images() -> dict[str, Path]:
    """Image reference -> OCI archive, built from the Dockerfiles and cached by input hash."""
    images = {}
    for line in _run_script(IMAGES_SCRIPT).splitlines():
        reference, archive = line.split()
        images[reference] = Path(archive)
    return images


# -- the host's state, for the leaves-no-trace check ---------------------------------------
def _lines(*args: str) -> list[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    return result.stdout.splitlines() if result.returncode == 0 else []


def _read_sysctl(name: str) -> str | None:
    path = Path("/proc/sys") / name.replace(".", "/")
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _write_sysctl(name: str, value: str) -> None:
    path = Path("/proc/sys") / name.replace(".", "/")
    with contextlib.suppress(OSError):
        if path.read_text().strip() != value:
            path.write_text(value)


def _iptables_state(binary: str) -> list[str]:
    """Chains and rules of a node's making (kube-proxy, kubelet, CNI, ours), per table."""
    kept = []
    table = ""
    for line in _lines(f"{binary}-save"):
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            chain = line[1:].split()[0]
            if CHAIN_PATTERN.match(chain):
                kept.append(f"{table} chain {chain}")
        elif line.startswith("-A") and (
            re.search(r"\b(KUBE-|CNI-|MLKUBE-NODE-)", line)
            or BRIDGE in line.split()
            or "10.245." in line
        ):
            kept.append(f"{table} {line}")
    return kept


def _cgroup_dirs() -> list[str]:
    found = []
    root = Path("/sys/fs/cgroup")
    for hierarchy in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        for name in ("kubepods", "kubepods.slice", "k8s.io", "system.slice/containerd.service"):
            if (hierarchy / name).exists():
                found.append(str(hierarchy / name))
    return found


def _processes(bin_dir: Path | None) -> list[str]:
    if bin_dir is None:
        return []
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            exe = os.readlink(proc / "exe")
            if exe.startswith(str(bin_dir) + "/"):
                found.append(f"{proc.name} {exe}")
    return sorted(found)


def host_snapshot(bin_dir: Path | None = None) -> dict[str, list[str]]:
    """What a node could leave behind: processes, links, routes, netns, mounts, iptables,
    cgroups, host paths, sysctls, sockets listening on the bridge's address (the relays and
    the DNS answerer, threads of this process). Scoped to a node's names, so other tools'
    work (the node agent's ``mlkbr*`` bridges, say) running at the same time does not show."""
    links = [
        line.split(":")[1].strip().split("@")[0]
        for line in _lines("ip", "-o", "link", "show")
        if ":" in line
    ]
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            if point.startswith(MOUNT_PREFIXES):
                mounts.append(point)
    return {
        "processes": _processes(bin_dir),
        "links": sorted(x for x in links if x == BRIDGE or x.startswith("veth")),
        "routes": [r for r in _lines("ip", "route", "show") if "10.245." in r or BRIDGE in r],
        "netns": sorted(n for n in _lines("ip", "netns", "list") if n.startswith("cni-")),
        "mounts": sorted(mounts),
        "iptables": _iptables_state("iptables"),
        "ip6tables": _iptables_state("ip6tables"),
        "cgroups": _cgroup_dirs(),
        "paths": [p for p in HOST_PATHS if os.path.lexists(p)],
        "sysctls": [f"{name}={_read_sysctl(name)}" for name in SYSCTLS],
        "listeners": sorted(
            f"{words[0]} {words[4]}"
            for words in map(str.split, _lines("ss", "-H", "-ltnu"))
            if words[4].startswith(f"{POD_GATEWAY}:")
        ),
    }


def service_programmed(cluster_ip: str, port: int) -> bool:
    """kube-proxy has a rule for the ClusterIP and port, and an endpoint behind it."""
    rules = _lines("iptables", "-w", "-t", "nat", "-S")
    service = [
        line
        for line in rules
        if line.startswith("-A KUBE-SERVICES") and f"-d {cluster_ip}/32" in line
        if f"--dport {port}" in line
    ]
    if not service:
        return False
    chain = service[0].split(" -j ")[-1].split()[0]
    return any(line.startswith(f"-A {chain} ") and "KUBE-SEP-" in line for line in rules)


# -- the node ------------------------------------------------------------------------------
@dataclass
class Node:
    """One running node; ``stop()`` leaves the machine as ``start()`` found it."""

    plane: ControlPlane
    workdir: Path
    bin_dir: Path
    name: str = NODE_NAME
    images: dict[str, Path] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    _sysctls: dict[str, str] = field(default_factory=dict, repr=False)
    _paths_before: set[str] = field(default_factory=set, repr=False)
    _chains_before: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _bridge_before: bool = False
    _lock: IO[str] | None = field(default=None, repr=False)
    _relays: list[Relay] = field(default_factory=list, repr=False)
    _exposed: list[tuple[str, str]] = field(default_factory=list, repr=False)
    _dns: ClusterDns | None = field(default=None, repr=False)

    # -- paths -------------------------------------------------------------------------
    @property
    def socket(self) -> Path:
        return self.workdir / "run" / "containerd.sock"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "pki" / "node.kubeconfig"

    def log_path(self, component: str) -> Path:
        return self.workdir / "logs" / f"{component}.log"

    # -- start -------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        plane: ControlPlane,
        workdir: Path,
        *,
        bin_dir: Path | None = None,
        images: dict[str, Path] | None = None,
    ) -> Node:
        reason = unavailable_reason()
        if reason:
            raise NodeError(reason)
        workdir = workdir.resolve()
        for sub in ("logs", "run", "pki", "cni/net.d", "cni/ipam"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        node = cls(
            plane=plane,
            workdir=workdir,
            bin_dir=bin_dir or ensure_binaries(),
            images=images if images is not None else ensure_images(),
        )
        node._take_lock()
        try:
            node._record_host()
            node._save_state()
        except BaseException:
            node._release_lock()  # nothing was started: the host is someone else's to clean
            raise
        try:
            node._write_config()
            node._isolate()
            node._create_bridge()
            node._start_api_relay()
            node._start_containerd()
            node._import_images()
            node._start_kubelet()
            node._start_scheduler()
            node._start_kube_proxy()
            node._wait_ready()
            node._publish_api()
        except BaseException:
            node.stop()
            raise
        return node

    def _take_lock(self) -> None:
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        handle = LOCK_FILE.open("w")
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise NodeError(f"another real node holds {LOCK_FILE}") from None
                time.sleep(1)
        self._lock = handle

    def _record_host(self) -> None:
        if STATE_FILE.exists():
            self.recover_leaked()
        self._sysctls = {n: v for n in SYSCTLS if (v := _read_sysctl(n)) is not None}
        self._paths_before = {p for p in HOST_PATHS if os.path.lexists(p)}
        self._chains_before = {
            binary: {line for line in _iptables_state(binary) if " chain " in line}
            for binary in ("iptables", "ip6tables")
        }
        self._bridge_before = Path(f"/sys/class/net/{BRIDGE}").exists()
        if self._bridge_before:
            raise NodeError(f"{BRIDGE} already exists: another node runs here, or one leaked")

    def _save_state(self) -> None:
        state = {
            "workdir": str(self.workdir),
            "bin_dir": str(self.bin_dir),
            "plane_workdir": str(self.plane.workdir),
            "plane_bin_dir": str(self.plane.bin_dir),
            "server": self.plane.server,
            "pids": self.pids,
            "sysctls": self._sysctls,
            "paths_before": sorted(self._paths_before),
            "chains_before": {k: sorted(v) for k, v in self._chains_before.items()},
            "bridge_before": self._bridge_before,
        }
        STATE_FILE.write_text(json.dumps(state, indent=2))

    @staticmethod
    def recover_leaked() -> None:
        """Undoes what a node whose process died left (its processes, by PID and binary).

        The caller holds the lock (a live node's state file is not a leak)."""
        state = json.loads(STATE_FILE.read_text())
        plane = ControlPlane(
            workdir=Path(state["plane_workdir"]),
            bin_dir=Path(state["plane_bin_dir"]),
            server=state["server"],
        )
        leaked = Node(plane=plane, workdir=Path(state["workdir"]), bin_dir=Path(state["bin_dir"]))
        leaked.pids = {k: int(v) for k, v in state["pids"].items()}
        leaked._sysctls = dict(state["sysctls"])
        leaked._paths_before = set(state["paths_before"])
        leaked._chains_before = {k: set(v) for k, v in state["chains_before"].items()}
        leaked._bridge_before = bool(state["bridge_before"])
        leaked.stop()

    def _kill_recorded(self) -> None:
        """Processes of a node recorded by PID only (a dead run's): ended if still ours."""
        ours = (str(self.bin_dir) + "/", str(self.plane.bin_dir / "kube-scheduler"))
        for name, pid in list(self.pids.items()):
            if name in self._procs:
                continue
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/exe").startswith(ours):
                    os.killpg(pid, signal.SIGKILL)

    def _write_config(self) -> None:
        pki = self.workdir / "pki"
        ca = CertificateAuthority.load(self.plane.workdir / "pki")
        ca.directory = pki
        ca.issue(
            "node",
            f"system:node:{self.name}",
            organization="system:nodes",
            dns_names=(self.name,),
            ip_addresses=("127.0.0.1",),
            server=True,
            client=True,
        )
        ca.issue("kube-proxy", "system:kube-proxy")
        ca.issue("kube-scheduler", "system:kube-scheduler")
        for user in ("node", "kube-proxy", "kube-scheduler"):
            self.write_kubeconfig(pki / f"{user}.kubeconfig", pki / user)
        ca_file = self.plane.workdir / "pki" / "ca.crt"
        (self.workdir / "resolv.conf").write_text("nameserver 127.0.0.1\n")  # pods' own loopback
        (self.workdir / "cni" / "net.d" / "10-mlkube.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "mlkube-node",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": str(self.workdir / "cni" / "ipam"),
                                "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                                # No default route: the pod subnet and the Services only.
                                "routes": [{"dst": SERVICE_CIDR}],
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                        {"type": "loopback"},
                    ],
                },
                indent=2,
            )
        )
        (self.workdir / "containerd.toml").write_text(
            f"""version = 3
root = "{self.workdir / "containerd" / "root"}"
state = "{self.workdir / "containerd" / "state"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "localhost/pause:3.10"
[plugins.'io.containerd.cri.v1.runtime']
  # Root here may lack CAP_SYS_RESOURCE: a sandbox's oom_score_adj of -998 is refused.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{self.bin_dir / "runc"}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{self.bin_dir / "cni"}"]
    conf_dir = "{self.workdir / "cni" / "net.d"}"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
        )
        kubelet_port, healthz_port = free_ports(2)
        self._kubelet_port = kubelet_port
        (self.workdir / "kubelet.yaml").write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "failCgroupV1": False,  # kubelet >= 1.35 refuses cgroup v1 otherwise
                    "cgroupDriver": "cgroupfs",
                    "failSwapOn": False,
                    "containerRuntimeEndpoint": f"unix://{self.socket}",
                    "address": "127.0.0.1",
                    "port": kubelet_port,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": healthz_port,
                    "tlsCertFile": str(pki / "node.crt"),
                    "tlsPrivateKeyFile": str(pki / "node.key"),
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": True},
                        "x509": {"clientCAFile": str(ca_file)},
                    },
                    "authorization": {"mode": "Webhook"},
                    "podCIDR": POD_CIDR,
                    "clusterDomain": CLUSTER_DOMAIN,
                    "clusterDNS": [POD_GATEWAY],
                    "resolvConf": str(self.workdir / "resolv.conf"),
                    "podLogsDirectory": str(self.workdir / "pod-logs"),
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "evictionHard": {
                        "memory.available": "100Mi",
                        "nodefs.available": "1%",
                        "imagefs.available": "1%",
                    },
                    "serializeImagePulls": False,
                    "enforceNodeAllocatable": ["pods"],
                    "cgroupsPerQOS": True,
                    "localStorageCapacityIsolation": True,
                    "registerWithTaints": [],
                    "syncFrequency": "10s",
                    "fileCheckFrequency": "10s",
                },
                indent=2,
            )
        )
        proxy_healthz, proxy_metrics = free_ports(2)
        (self.workdir / "kube-proxy.yaml").write_text(
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(pki / "kube-proxy.kubeconfig")},
                    "hostnameOverride": self.name,
                    "mode": "iptables",
                    "clusterCIDR": POD_CIDR,
                    "bindAddress": "127.0.0.1",
                    "healthzBindAddress": f"127.0.0.1:{proxy_healthz}",
                    "metricsBindAddress": f"127.0.0.1:{proxy_metrics}",
                    "nodePortAddresses": ["127.0.0.1/32"],
                    # 0: leave the host's conntrack sysctls alone.
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                    # else kube-proxy sets net.ipv4.conf.all.route_localnet=1
                    "iptables": {"localhostNodePorts": False},
                },
                indent=2,
            )
        )

    def _create_bridge(self) -> None:
        """The pods' bridge with its gateway address, before any pod (the relay binds it)."""
        for args in (
            ["link", "add", BRIDGE, "type", "bridge"],
            ["addr", "add", f"{POD_GATEWAY}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE],
            ["link", "set", BRIDGE, "up"],
        ):
            subprocess.run(["ip", *args], check=True, capture_output=True)

    def _start_api_relay(self) -> None:
        port = int(self.plane.server.rsplit(":", 1)[1])
        self._start_relay(API_RELAY_PORT, ("127.0.0.1", port))
        self._dns = ClusterDns((POD_GATEWAY, 53), self.plane.server, self.plane.ssl_context())
        self._dns.start()

    def _start_relay(self, port: int, target: tuple[str, int]) -> None:
        """A relay from the bridge's gateway address, ``port``, to a server on loopback (and
        nowhere else: what the pods reach through it stays on this machine)."""
        if not ipaddress.ip_address(target[0]).is_loopback:
            raise NodeError(f"a relay connects to loopback only, not {target[0]}")
        relay = Relay((POD_GATEWAY, port), target)
        relay.start()
        self._relays.append(relay)

    def _apply_endpoints(
        self, service: str, namespace: str, slice_name: str, port: tuple[str, int]
    ) -> None:
        """The EndpointSlice of a selector-less Service (``port``: its name and number): the
        relay on the bridge's gateway address."""
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": slice_name,
                "namespace": namespace,
                "labels": {
                    "kubernetes.io/service-name": service,
                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [POD_GATEWAY], "conditions": {"ready": True}}],
            "ports": [{"name": port[0], "port": port[1], "protocol": "TCP"}],
        }
        self.plane.kubectl("apply", "-f", "-", input_text=json.dumps(slice_))

    def _publish_api(self) -> None:
        self._apply_endpoints("kubernetes", "default", API_ENDPOINTSLICE, ("https", API_RELAY_PORT))

    def expose(
        self, name: str, port: int, target: tuple[str, int], namespace: str = "default"
    ) -> str:
        """Makes a server on loopback (a test's S3 server) a Service the pods can reach:
        ``<name>.<namespace>.svc.cluster.local:<port>`` is a ClusterIP that kube-proxy sends
        to a relay on the bridge's gateway address (same port), which connects to ``target``.

        Returns the ClusterIP once kube-proxy routes it. The relay stops with the node, which
        also deletes the Service and its EndpointSlice."""
        self._start_relay(port, target)
        self._exposed.append((namespace, name))
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"name": "tcp", "port": port, "targetPort": port}]},
        }
        self.plane.kubectl("apply", "-f", "-", input_text=json.dumps(service))
        self._apply_endpoints(name, namespace, f"{name}-{EXPOSED_SUFFIX}", ("tcp", port))
        cluster_ip = self.plane.kubectl(
            "get", "service", name, "-n", namespace, "-o", "jsonpath={.spec.clusterIP}"
        ).stdout.strip()
        deadline = time.monotonic() + 60
        while not service_programmed(cluster_ip, port):
            if time.monotonic() > deadline:
                raise NodeError(f"kube-proxy did not program {cluster_ip}:{port} in 60 s")
            time.sleep(0.5)
        return cluster_ip

    def write_kubeconfig(self, path: Path, stem: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "mlkube-test",
                    "cluster": {
                        "server": self.plane.server,
                        "certificate-authority": str(self.plane.workdir / "pki" / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": "user",
                    "user": {
                        "client-certificate": f"{stem}.crt",
                        "client-key": f"{stem}.key",
                    },
                }
            ],
            "contexts": [{"name": "c", "context": {"cluster": "mlkube-test", "user": "user"}}],
            "current-context": "c",
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """One of the node's processes: logged, recorded by PID, stopped with the node."""
        log = self.log_path(name).open("ab")
        env = dict(os.environ)
        # containerd finds containerd-shim-runc-v2 on PATH; the kubelet finds iptables there.
        env["PATH"] = f"{self.bin_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.workdir,
            env=env,
        )
        log.close()
        self._procs[name] = proc
        self.pids[name] = proc.pid
        self._save_state()
        return proc

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        result = subprocess.run(
            [str(self.bin_dir / "ctr"), "--address", str(self.socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def _start_containerd(self) -> None:
        self.spawn(
            "containerd",
            [str(self.bin_dir / "containerd"), "--config", str(self.workdir / "containerd.toml")],
        )
        self._wait("containerd", self._containerd_serving, timeout=60)

    def _containerd_serving(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            self.ctr("version", timeout=10)
        except (NodeError, subprocess.TimeoutExpired):
            return False
        return True

    def _import_images(self) -> None:
        for reference, archive in self.images.items():
            self.ctr("images", "import", str(archive))
            listed = self.ctr("images", "ls", "-q").split()
            if reference not in listed:
                raise NodeError(f"importing {archive} did not create {reference}: {listed}")

    def _start_kubelet(self) -> None:
        self.spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={self.workdir / 'kubelet.yaml'}",
                f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--hostname-override={self.name}",
                "--v=2",
            ],
        )

    def _start_scheduler(self) -> None:
        kubeconfig = self.workdir / "pki" / "kube-scheduler.kubeconfig"
        self.spawn(
            "kube-scheduler",
            [
                str(self.plane.bin_dir / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        self.spawn(
            "kube-proxy",
            [
                str(self.bin_dir / "kube-proxy"),
                f"--config={self.workdir / 'kube-proxy.yaml'}",
                "--v=2",
            ],
        )

    def _node_json(self) -> dict[str, object] | None:
        result = self.plane.kubectl("get", "node", self.name, "-o", "json", check=False)
        if result.returncode != 0:
            return None
        node: dict[str, object] = json.loads(result.stdout)
        return node

    def _ready(self) -> bool:
        node = self._node_json()
        if node is None:
            return False
        status = node.get("status", {})
        assert isinstance(status, dict)
        for condition in status.get("conditions", []):
            if condition.get("type") == "Ready":
                return bool(condition.get("status") == "True")
        return False

    def _wait_ready(self) -> None:
        self._wait("kubelet", self._ready, timeout=120)
        # The node-lifecycle controller is off in the harness, so nothing lifts the taints
        # the kubelet registers with while it is not ready yet.
        node = self._node_json() or {}
        spec = node.get("spec", {})
        assert isinstance(spec, dict)
        for taint in spec.get("taints", []):
            self.plane.kubectl(
                "taint", "node", self.name, f"{taint['key']}:{taint['effect']}-", check=False
            )
        self._wait(
            "kube-proxy", lambda: bool(_lines("iptables", "-t", "nat", "-S", "KUBE-SERVICES")), 60
        )

    def _isolate(self) -> None:
        """Keeps pod and Service traffic on this machine, whatever kube-proxy has programmed.

        FORWARD: nothing is routed between the pods' bridge and another interface.
        OUTPUT: a packet of this host to a pod or Service address that kube-proxy did not
        (yet) translate to a pod on the bridge would follow the default route off the
        machine; it is rejected instead.
        """
        rules = [
            ["-N", FORWARD_CHAIN],
            ["-A", FORWARD_CHAIN, "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP"],
            ["-A", FORWARD_CHAIN, "-o", BRIDGE, "!", "-i", BRIDGE, "-j", "DROP"],
            ["-I", "FORWARD", "1", "-j", FORWARD_CHAIN],
            ["-N", OUTPUT_CHAIN],
            # Still addressed to a Service here: kube-proxy did not translate it.
            ["-A", OUTPUT_CHAIN, "-d", SERVICE_CIDR, "-j", "REJECT"],
            # The host's own bridge address, delivered on loopback (metrics-server listens
            # there for the API server): it stays on this machine.
            ["-A", OUTPUT_CHAIN, "-d", f"{POD_GATEWAY}/32", "-o", "lo", "-j", "RETURN"],
            # To a pod, not through the bridge. A translated ClusterIP packet is exempt: the
            # OUTPUT hooks all see the device of the route before translation, while the
            # packet itself was rerouted to the bridge.
            [
                "-A",
                OUTPUT_CHAIN,
                "-d",
                POD_CIDR,
                "!",
                "-o",
                BRIDGE,
                "-m",
                "conntrack",
                "!",
                "--ctstate",
                "DNAT",
                "-j",
                "REJECT",
            ],
            ["-I", "OUTPUT", "1", "-j", OUTPUT_CHAIN],
        ]
        for rule in rules:
            subprocess.run(["iptables", "-w", *rule], check=True, capture_output=True)

    def _wait(self, name: str, ready: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        proc = self._procs[name]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise NodeError(f"{name} exited with {proc.returncode}\n{self.log_tail(name)}")
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.5)
        raise NodeError(f"{name} not ready after {timeout}s\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_path(name)
        if not path.exists():
            return f"(no log for {name})"
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {name} (last {len(tail)} lines of {path}) ---\n" + "\n".join(tail)

    def all_log_tails(self, lines: int = 30) -> str:
        return "\n".join(self.log_tail(name, lines) for name in self.pids)

    # -- stop ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stops everything by PID and undoes what the node did to the machine."""
        try:
            self._drain()
            self._kill_recorded()
            for extra in [n for n in self._procs if n not in CORE_PROCESSES]:
                self.stop_process(extra)  # added to the node later (harness.metrics_server)
            self.stop_process("kube-proxy")
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    [str(self.bin_dir / "kube-proxy"), "--cleanup", "--v=0"],
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
            self.stop_process("kubelet")
            self.stop_process("kube-scheduler")
            self._remove_containers()
            self.stop_process("containerd")
            self._kill_shims()
            for relay in self._relays:
                relay.stop()
            self._relays.clear()
            if self._dns is not None:
                self._dns.stop()
                self._dns = None
            self._unmount()
            self._remove_network()
            self._remove_chains()
            self._remove_cgroups()
            for name, value in self._sysctls.items():
                _write_sysctl(name, value)
            self._remove_paths()
            with contextlib.suppress(Exception):
                self.plane.kubectl("delete", "node", self.name, "--ignore-not-found", check=False)
                self.plane.kubectl(
                    "delete", "endpointslice", API_ENDPOINTSLICE, "-n", "default",
                    "--ignore-not-found", check=False,
                )  # fmt: skip
                for namespace, name in self._exposed:
                    self.plane.kubectl(
                        "delete", f"service/{name}", f"endpointslice/{name}-{EXPOSED_SUFFIX}",
                        "-n", namespace, "--ignore-not-found", "--wait=false", check=False,
                    )  # fmt: skip
            STATE_FILE.unlink(missing_ok=True)
        finally:
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _drain(self) -> None:
        """Lets the kubelet tear its pods down (CNI DEL, unmounts) while all still runs."""
        if "kubelet" not in self._procs or self._procs["kubelet"].poll() is not None:
            return
        with contextlib.suppress(Exception):
            self.plane.kubectl("cordon", self.name, check=False)  # no new pods while draining
            self.plane.kubectl(
                "delete",
                "pods",
                "--all-namespaces",
                f"--field-selector=spec.nodeName={self.name}",
                "--grace-period=1",
                "--timeout=60s",
                check=False,
            )
        # Deleted pods have had their sandboxes stopped (CNI DEL done); exited containers
        # wait for the kubelet's garbage collection, which _remove_containers does instead.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tasks = self.ctr("tasks", "ls", check=False, timeout=30).splitlines()[1:]
            running = [t for t in tasks if "RUNNING" in t.split()]
            if not running and not any(Path("/run/netns").glob("cni-*")):
                return
            time.sleep(0.5)

    def stop_process(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def _remove_containers(self) -> None:
        if "containerd" not in self._procs:
            return
        for task in self.ctr("tasks", "ls", "-q", check=False, timeout=30).split():
            self.ctr("tasks", "kill", "-s", "KILL", task, check=False, timeout=30)
        time.sleep(1)
        for task in self.ctr("tasks", "ls", "-q", check=False, timeout=30).split():
            self.ctr("tasks", "delete", "-f", task, check=False, timeout=30)
        for container in self.ctr("containers", "ls", "-q", check=False, timeout=30).split():
            self.ctr("containers", "rm", container, check=False, timeout=30)

    def _kill_shims(self) -> None:
        """Shims outlive containerd by design: end those running our shim binary, by PID."""
        shim = str(self.bin_dir / "containerd-shim-runc-v2")
        for line in _processes(self.bin_dir):
            pid, exe = line.split(" ", 1)
            if exe == shim:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _processes(self.bin_dir) and time.monotonic() < deadline:
            time.sleep(0.2)

    def _unmount(self) -> None:
        prefixes = (*MOUNT_PREFIXES, str(self.workdir) + "/")
        for _ in range(3):
            points = []
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                point = line.split()[4]
                if point.startswith(prefixes):
                    points.append(point)
            if not points:
                return
            for point in sorted(points, key=len, reverse=True):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)

    def _remove_network(self) -> None:
        for name in _lines("ip", "netns", "list"):
            netns = name.split()[0]
            if netns.startswith("cni-"):
                subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        if not self._bridge_before and Path(f"/sys/class/net/{BRIDGE}").exists():
            subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)

    def _remove_chains(self) -> None:
        for binary in ("iptables", "ip6tables"):
            before = self._chains_before.get(binary, set())
            ours: dict[str, list[str]] = {}
            for line in _iptables_state(binary):
                if " chain " in line and line not in before:
                    table, _, chain = line.split(" ")
                    ours.setdefault(table, []).append(chain)
            for table, chains in ours.items():
                # Jumps into our chains from any chain, then the chains themselves.
                for rule in _lines(binary, "-w", "-t", table, "-S"):
                    words = rule.split()
                    if words[:1] == ["-A"] and "-j" in words:
                        target = words[words.index("-j") + 1]
                        if target in chains:
                            subprocess.run(
                                [binary, "-w", "-t", table, "-D", *words[1:]],
                                capture_output=True,
                                check=False,
                            )
                for chain in chains:
                    subprocess.run(
                        [binary, "-w", "-t", table, "-F", chain], capture_output=True, check=False
                    )
                for chain in chains:
                    subprocess.run(
                        [binary, "-w", "-t", table, "-X", chain], capture_output=True, check=False
                    )

    def _remove_cgroups(self) -> None:
        """Ends what still runs in the pods' cgroups (only the node's pods live there)."""
        for _ in range(20):
            pids: set[int] = set()
            for top in _cgroup_dirs():
                for procs in Path(top).glob("**/cgroup.procs"):
                    with contextlib.suppress(OSError):
                        pids.update(int(p) for p in procs.read_text().split())
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        for top in _cgroup_dirs():
            for directory in sorted(
                Path(top).glob("**/"), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    directory.rmdir()

    def _remove_paths(self) -> None:
        for path in HOST_PATHS:
            if path not in self._paths_before and os.path.lexists(path):
                shutil.rmtree(path, ignore_errors=True)
        for sub in ("containerd", "kubelet", "pod-logs", "run"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)

    # -- for tests -------------------------------------------------------------------------
    def state(self) -> dict[str, object]:
        return {"name": self.name, "workdir": str(self.workdir), "pids": self.pids}


class Relay:
    """Relays TCP connections from ``listen`` to ``target`` (threads; TLS passes through):
    the API server's relay, and each server a test exposes (``Node.expose``)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self._server = socket.create_server(listen, reuse_port=False)
        self._server.settimeout(0.5)
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._accept, name=f"node-relay-{listen[1]}", daemon=True
        )
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._server.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.close()
            self._open.clear()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, (peer, _) = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if ipaddress.ip_address(peer) not in ipaddress.ip_network(POD_CIDR):
                client.close()  # the pods (and the host on their bridge) only
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                for sock in (source, sink):
                    if sock in self._open:
                        sock.close()
                        self._open.discard(sock)


class ClusterDns:
    """A DNS server for ``<service>.<namespace>.svc.cluster.local`` A records (UDP).

    Answers from the API server (cached for 5 s); names outside the cluster domain get
    REFUSED, unknown ones NXDOMAIN, other record types of a known name no data.
    """

    def __init__(self, listen: tuple[str, int], server: str, context: ssl.SSLContext) -> None:
        self.server = server
        self.context = context
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(listen)
        self._sock.settimeout(0.5)
        self._stopping = threading.Event()
        self._cache: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._thread = threading.Thread(target=self._serve, name="node-dns", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                query, client = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(Exception):
                self._sock.sendto(self.answer(query), client)

    def cluster_ip(self, namespace: str, service: str) -> str | None:
        key = (namespace, service)
        cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        url = f"{self.server}/api/v1/namespaces/{namespace}/services/{service}"
        address: str | None = None
        try:
            with urllib.request.urlopen(url, timeout=3, context=self.context) as response:
                spec = json.loads(response.read()).get("spec", {})
                ip = spec.get("clusterIP")
                address = ip if ip and ip != "None" else None
        except (urllib.error.URLError, OSError, ValueError):
            address = None
        self._cache[key] = (time.monotonic() + 5, address)
        return address

    def answer(self, query: bytes) -> bytes:
        (ident, _flags, qdcount) = struct.unpack("!HHH", query[:6])
        labels, offset = [], 12
        while query[offset]:
            length = query[offset]
            labels.append(query[offset + 1 : offset + 1 + length].decode("ascii").lower())
            offset += 1 + length
        qtype, _qclass = struct.unpack("!HH", query[offset + 1 : offset + 5])
        question = query[12 : offset + 5]
        suffix = ["svc", *CLUSTER_DOMAIN.split(".")]
        address = None
        if labels[-len(suffix) :] != suffix and labels[-2:] != CLUSTER_DOMAIN.split("."):
            rcode = 5  # REFUSED: not ours, and never forwarded
        elif len(labels) == len(suffix) + 2 and labels[-len(suffix) :] == suffix:
            address = self.cluster_ip(labels[1], labels[0])
            rcode = 0 if address else 3
        else:
            rcode = 3  # NXDOMAIN
        answers = b""
        if address and qtype == 1:
            answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(address)
        flags = 0x8400 | rcode  # response, authoritative
        header = struct.pack("!HHHHHH", ident, flags, min(qdcount, 1), 1 if answers else 0, 0, 0)
        return header + question + answers


def clean_up_leaked() -> bool:
    """Cleans up after a node whose process died, from its state file (``make demo-down``
    after the demo's node process was killed); False when there is nothing to clean or a
    live node holds the lock."""
    if not STATE_FILE.exists():
        return False
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        Node.recover_leaked()
    return True


@contextlib.contextmanager
def running_node(plane: ControlPlane, workdir: Path) -> Iterator[Node]:
    node = Node.start(plane, workdir)
    try:
        yield node
    finally:
        node.stop()


if __name__ == "__main__":
    # `python -m harness.node why-not`: one line saying why no real node runs here (for
    # `make test`, which then skips the tier), nothing when one can.
    if sys.argv[1:] != ["why-not"]:
        sys.exit("usage: python -m harness.node why-not")
    print(unavailable_reason() or "")
