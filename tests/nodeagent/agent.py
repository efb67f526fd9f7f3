"""The node agent: a Node, its heartbeat, a scheduler's binding and a provisioner's PVs.

The agent plays three parts a real cluster has, for the namespaces it is given (so it
never touches pods other tests leave Pending on purpose):

- **kubelet**: registers a Node (Ready, capacity, ``kube-node-lease`` heartbeat) and runs
  every pod bound to it through a :class:`~nodeagent.pods.PodWorker`.
- **scheduler**: with a single node there is nothing to weigh, so rather than run
  kube-scheduler (another process, its own credentials and start-up time) it posts a
  ``Binding`` for each Pending pod whose nodeSelector the node satisfies and whose claims
  are bound; a pod that does not fit stays Pending, as it would.
- **provisioner**: a Pending claim gets a ``hostPath`` PersistentVolume under the agent's
  state directory, pre-bound to the claim so the real PV controller completes the binding;
  released volumes are deleted with their directory.

It polls the API (every half second by default) instead of watching: a handful of pods,
and no watch to re-establish when a test restarts the API server.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.kube import ApiError, Kube, Obj
from nodeagent.network import Bridge, ip
from nodeagent.pods import NodeContext, PodWorker

LOG = logging.getLogger("nodeagent")
PROVISIONER = "nodeagent.mlkube.io"
AGENT_LABEL = "nodeagent.mlkube.io/node"
LEASE_NAMESPACE = "kube-node-lease"


@dataclass
class AgentSettings:
    """How one agent runs; every field has a default but the kubeconfig and state dir."""

    kubeconfig: Path
    state_dir: Path
    namespaces: tuple[str, ...] = ()
    """Namespaces whose pods and claims the agent handles; empty means all of them."""
    node_name: str = ""
    """Defaults to ``mlkube-node-<N>`` for the agent's ``10.244.N.0/24``."""
    venv_bin: Path = field(default_factory=lambda: Path(sys.prefix) / "bin")
    poll_interval: float = 0.5
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    stop_grace: float = 5.0
    lease_seconds: int = 40
    relays: tuple[tuple[str, int, int], ...] = ()
    """Host services on loopback that pods reach at (address, port): see network.py."""
    labels: tuple[tuple[str, str], ...] = ()
    """Extra node labels (``--label zone=a``), for tests that place pods on named nodes."""


def _micro_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def _memory_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 8 * 2**20


class NodeAgent:
    """Start with :meth:`start`; :meth:`stop` (also run at interpreter exit) undoes it all."""

    def __init__(self, settings: AgentSettings, kube: Kube, bridge: Bridge) -> None:
        self.settings = settings
        self.kube = kube
        self.bridge = bridge
        self.node_name = settings.node_name or f"mlkube-node-{bridge.index}"
        self.context = NodeContext(
            kube=kube,
            bridge=bridge,
            node_name=self.node_name,
            state_dir=settings.state_dir,
            venv_bin=settings.venv_bin,
            backoff_base=settings.backoff_base,
            backoff_cap=settings.backoff_cap,
            stop_grace=settings.stop_grace,
            relays=settings.relays,
        )
        self.workers: dict[str, PodWorker] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nodeagent", daemon=True)
        self._next_lease = 0.0
        self._next_node_status = 0.0
        self._stopped = False

    @classmethod
    def start(cls, settings: AgentSettings) -> NodeAgent:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        kube = Kube(settings.kubeconfig)
        bridge = Bridge.create()
        agent = cls(settings, kube, bridge)
        atexit.register(agent.stop)
        try:
            agent._write_state()
            agent._register_node()
        except BaseException:
            agent.stop()
            raise
        agent._thread.start()
        return agent

    @property
    def gateway(self) -> str:
        return self.bridge.gateway

    # -- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sync()
            except Exception:
                LOG.exception("node agent sync failed")
            self._stopping.wait(self.settings.poll_interval)

    def sync(self) -> None:
        now = time.monotonic()
        if now >= self._next_lease:
            self._heartbeat(now)
        self._provision_claims()
        seen: set[str] = set()
        for pod in self._pods():
            meta, spec = pod["metadata"], pod["spec"]
            node = spec.get("nodeName")
            if not node:
                if self._schedulable(pod):
                    self._bind(pod)
                continue
            if node != self.node_name:
                continue
            seen.add(meta["uid"])
            worker = self.workers.get(meta["uid"])
            if worker is not None:
                worker.update(pod)
            elif pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                if meta.get("deletionTimestamp"):
                    self._force_delete(pod)
            else:
                worker = PodWorker(self.context, pod)
                self.workers[meta["uid"]] = worker
                worker.start()
        for uid, worker in list(self.workers.items()):
            if uid not in seen:
                worker.stop()
            if worker.finished:
                worker.join()
                del self.workers[uid]

    def _pods(self) -> list[Obj]:
        if not self.settings.namespaces:
            return list(self.kube.get("/api/v1/pods")["items"])
        pods: list[Obj] = []
        for namespace in self.settings.namespaces:
            pods += self.kube.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
        return pods

    # -- scheduler -----------------------------------------------------------------------
    def _schedulable(self, pod: Obj) -> bool:
        spec = pod["spec"]
        if pod["metadata"].get("deletionTimestamp"):
            return False
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return False
        labels = self._node_labels()
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return False
        namespace = pod["metadata"]["namespace"]
        for volume in spec.get("volumes", []):
            claim = volume.get("persistentVolumeClaim")
            if claim is None:
                continue
            pvc = self.kube.find(
                f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim['claimName']}"
            )
            if pvc is None or pvc.get("status", {}).get("phase") != "Bound":
                return False
        return all(self._spread_allows(pod, c) for c in spec.get("topologySpreadConstraints", []))

    def _spread_allows(self, pod: Obj, constraint: Obj) -> bool:
        """A hostname spread constraint, as the scheduler reads it: binding here must not put
        this node more than ``maxSkew`` pods ahead of the emptiest Ready node (each agent only
        binds to itself, so ``ScheduleAnyway`` is kept the same way: another agent binds)."""
        if constraint.get("topologyKey") != "kubernetes.io/hostname":
            return True
        labels = pod["metadata"].get("labels") or {}
        selector = dict((constraint.get("labelSelector") or {}).get("matchLabels") or {})
        selector.update({k: labels[k] for k in constraint.get("matchLabelKeys", []) if k in labels})
        counts = dict.fromkeys(self._ready_nodes(), 0)
        namespace = pod["metadata"]["namespace"]
        query = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        for other in self.kube.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=query)[
            "items"
        ]:
            node = other["spec"].get("nodeName")
            if node in counts and not other["metadata"].get("deletionTimestamp"):
                counts[node] += 1
        here = counts.get(self.node_name, 0)
        return here + 1 - min(counts.values(), default=here) <= int(constraint.get("maxSkew", 1))

    def _ready_nodes(self) -> list[str]:
        nodes = self.kube.get("/api/v1/nodes")["items"]
        return [
            n["metadata"]["name"]
            for n in nodes
            if any(c["type"] == "Ready" and c["status"] == "True"
                   for c in n.get("status", {}).get("conditions", []))
        ]  # fmt: skip

    def _bind(self, pod: Obj) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self.kube.create(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", binding
            )
        except ApiError as error:
            if error.status not in (404, 409):
                raise

    def _force_delete(self, pod: Obj) -> None:
        meta = pod["metadata"]
        self.kube.delete(
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
            {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
        )

    # -- provisioner ---------------------------------------------------------------------
    def _claims(self) -> list[Obj]:
        if not self.settings.namespaces:
            return list(self.kube.get("/api/v1/persistentvolumeclaims")["items"])
        claims: list[Obj] = []
        for namespace in self.settings.namespaces:
            path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
            claims += self.kube.get(path)["items"]
        return claims

    def _volume_dir(self, claim: Obj) -> Path:
        meta = claim["metadata"]
        name = f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        return self.settings.state_dir / "volumes" / name

    def _provision_claims(self) -> None:
        for claim in self._claims():
            meta, spec = claim["metadata"], claim["spec"]
            if spec.get("volumeName") or claim.get("status", {}).get("phase") != "Pending":
                continue
            if meta.get("deletionTimestamp"):
                continue
            directory = self._volume_dir(claim)
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o777)
            size = spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
            volume = {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {
                    "name": f"pvc-{meta['uid']}",
                    "labels": {AGENT_LABEL: self.node_name},
                    "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
                },
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": spec.get("storageClassName") or "",
                    "volumeMode": spec.get("volumeMode", "Filesystem"),
                    "hostPath": {"path": str(directory), "type": "Directory"},
                    "claimRef": {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                    },
                },
            }
            try:
                self.kube.create("/api/v1/persistentvolumes", volume)
            except ApiError as error:
                if error.status != 409:
                    raise
        self._delete_released_volumes()

    def _delete_released_volumes(self) -> None:
        volumes = self.kube.get(
            "/api/v1/persistentvolumes", labelSelector=f"{AGENT_LABEL}={self.node_name}"
        )["items"]
        for volume in volumes:
            if volume.get("status", {}).get("phase") in ("Released", "Failed"):
                self.kube.delete(f"/api/v1/persistentvolumes/{volume['metadata']['name']}")
                shutil.rmtree(volume["spec"]["hostPath"]["path"], ignore_errors=True)

    # -- node ----------------------------------------------------------------------------
    def _node_labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                platform.machine(), platform.machine()
            ),
            "node.kubernetes.io/instance-type": "mlkube-nodeagent",
            **dict(self.settings.labels),
        }

    def _register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": self._node_labels()},
            "spec": {
                "podCIDR": f"10.244.{self.bridge.index}.0/24",
                "podCIDRs": [f"10.244.{self.bridge.index}.0/24"],
            },
        }
        try:
            self.kube.create("/api/v1/nodes", node)
        except ApiError as error:
            if error.status != 409:
                raise
        self._heartbeat(time.monotonic())

    def _node_status(self) -> Obj:
        capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{_memory_kib()}Ki",
            "pods": "110",
            "ephemeral-storage": "100Gi",
        }
        beat = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        healthy = [
            ("MemoryPressure", "KubeletHasSufficientMemory"),
            ("DiskPressure", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "KubeletHasSufficientPID"),
        ]
        conditions = [
            {"type": kind, "status": "False", "reason": reason, "lastHeartbeatTime": beat}
            for kind, reason in healthy
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "node agent is posting ready status",
                "lastHeartbeatTime": beat,
            }
        )
        uname = platform.uname()
        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": conditions,
            # Only the bridge address: a Hostname entry would send the API server's
            # kubelet connections (logs, exec) through DNS, off this machine.
            "addresses": [{"type": "InternalIP", "address": self.bridge.gateway}],
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": uname.release,
                "osImage": "mlkube node agent",
                "containerRuntimeVersion": "nodeagent://0.1.0",
                "kubeletVersion": self.kube.get("/version").get("gitVersion", ""),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": self._node_labels()["kubernetes.io/arch"],
            },
        }

    def _heartbeat(self, now: float) -> None:
        self._next_lease = now + self.settings.lease_seconds / 4
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.node_name}"
        renewed = {"spec": {"holderIdentity": self.node_name, "renewTime": _micro_time()}}
        try:
            self.kube.merge_patch(path, renewed)
        except ApiError as error:
            if error.status != 404:
                raise
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": LEASE_NAMESPACE},
                "spec": {**renewed["spec"], "leaseDurationSeconds": self.settings.lease_seconds},
            }
            self.kube.create(path.rsplit("/", 1)[0], lease)
        if now >= self._next_node_status:
            self._next_node_status = now + self.settings.lease_seconds
            self.kube.merge_patch(
                f"/api/v1/nodes/{self.node_name}/status", {"status": self._node_status()}
            )

    # -- stop ----------------------------------------------------------------------------
    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "node": self.node_name,
            "bridge": self.bridge.name,
            "subnet": self.bridge.index,
            "kubeconfig": str(self.settings.kubeconfig),
        }
        (self.settings.state_dir / "state.json").write_text(json.dumps(state, indent=2))

    def stop(self, *, delete_node: bool = True) -> None:
        """Kills every container, removes every namespace and link, deletes the Node."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        for worker in self.workers.values():
            worker.stop()
        for worker in self.workers.values():
            worker.join(timeout=self.settings.stop_grace + 30)
        self.workers.clear()
        remove_leftovers(self.bridge.index)
        for top in self.context.top_level_dirs:
            with contextlib.suppress(OSError):
                top.rmdir()
        self.bridge.delete()
        if delete_node:
            with contextlib.suppress(ApiError, OSError):
                self.kube.delete(f"/api/v1/nodes/{self.node_name}")
                self.kube.delete(
                    f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.node_name}"
                )
        with contextlib.suppress(FileNotFoundError):
            (self.settings.state_dir / "state.json").unlink()
        self.kube.close()


def remove_leftovers(subnet: int) -> None:
    """Kills processes left in the agent's namespaces and deletes them (a crash's remains)."""
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(f"mlk{subnet}-"):
            continue
        for pid in ip("netns", "pids", name, check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    ip("link", "del", f"mlkbr{subnet}", check=False)
