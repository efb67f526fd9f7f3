"""One pod's life on the node: sandbox, containers, probes, status, deletion.

Each pod bound to the agent's node gets a :class:`PodWorker` thread. It makes the pod's
network namespace and volumes, runs the init containers one after another and then the
containers, restarts them per ``restartPolicy`` (crash-loop back-off doubling from the
agent's base), runs their probes, and writes ``status`` (phase, conditions, IPs, container
states) whenever it changes. When the pod gets a ``deletionTimestamp`` it sends SIGTERM,
SIGKILL after the grace period, and deletes the object with grace 0, as a kubelet does.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.containers import Container, now_rfc3339, run_probe
from nodeagent.env import ConfigError, EnvResolver, command_line
from nodeagent.kube import ApiError, Kube, Obj
from nodeagent.network import (
    SERVICE_HOST,
    SERVICE_PORT,
    ApiRelay,
    Bridge,
    PodNetwork,
    listen_in_namespace,
)
from nodeagent.volumes import VolumeBuilder, remove_pod_volumes

LOG = logging.getLogger("nodeagent")
TICK = 0.2
DEFAULT_NONROOT_UID = 65532
# The checkout whose editable install the venv's ``mlkube`` runs from.
SOURCE_TREE = Path(__file__).resolve().parents[2]
MANAGED_CONDITIONS = (
    "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled",
)  # fmt: skip


@dataclass
class NodeContext:
    """What every pod worker shares with its agent."""

    kube: Kube
    bridge: Bridge
    node_name: str
    state_dir: Path
    venv_bin: Path
    backoff_base: float
    backoff_cap: float
    stop_grace: float
    relays: tuple[tuple[str, int, int], ...] = ()
    """(address in the pod, port, host loopback port) for each relayed host service."""
    top_level_dirs: set[Path] = field(default_factory=set)
    """Mount points made directly under ``/`` (no tmpfs can cover the root); removed on stop."""

    def make_top_level(self, mount_path: str) -> None:
        parts = Path(mount_path).parts
        if len(parts) >= 2 and not Path("/", parts[1]).exists():
            top = Path("/", parts[1])
            top.mkdir(mode=0o755, exist_ok=True)
            self.top_level_dirs.add(top)


class PodWorker:
    """Drives one pod from its own thread; the agent feeds it the latest pod object."""

    def __init__(self, node: NodeContext, pod: Obj) -> None:
        meta = pod["metadata"]
        self._thread = threading.Thread(
            target=self.run, name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True
        )
        self.node = node
        self.uid: str = meta["uid"]
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        pod_dir = f"{meta['namespace']}_{meta['name']}_{self.uid[:8]}"
        self.directory = node.state_dir / "pods" / pod_dir
        self._pod = pod
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop_requested = threading.Event()
        self.network: PodNetwork | None = None
        self._relays: list[ApiRelay] = []
        self._network_released = False
        self._volumes: dict[str, Path] = {}
        spec = pod["spec"]
        containers_dir = self.directory / "containers"
        self.init = [Container(c, containers_dir) for c in spec.get("initContainers", [])]
        self.containers = [Container(c, containers_dir) for c in spec["containers"]]
        self._init_index = 0
        self._start_time = now_rfc3339()
        self._published: Obj | None = None
        self._conditions: dict[str, Obj] = {}
        self._terminal_phase = ""
        self._setup_error = ""
        self.finished = False

    # -- inputs from the agent -----------------------------------------------------------
    def update(self, pod: Obj) -> None:
        with self._lock:
            self._pod = pod
        self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def stop(self) -> None:
        """Agent shutdown: kill the containers quickly; leave the API object alone."""
        self._stop_requested.set()
        self._wake.set()

    @property
    def pod(self) -> Obj:
        with self._lock:
            return self._pod

    @property
    def pids(self) -> list[int]:
        return [c.proc.pid for c in (*self.init, *self.containers) if c.proc and c.running]

    # -- main loop -----------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._live()
        except Exception:
            LOG.error("pod %s: %s", self.key, traceback.format_exc())
            self._kill_all(self.node.stop_grace)
        finally:
            self._teardown()
            self.finished = True

    def _live(self) -> None:
        while not self._stop_requested.is_set():
            pod = self.pod
            if pod["metadata"].get("deletionTimestamp"):
                self._delete_pod(pod)
                return
            if self.network is None or not self._volumes_ready():
                self._setup(pod)
            elif not self._terminal_phase:
                self._step(pod)
                if self._terminal_phase:
                    self._release_network()
            self._publish()
            self._wake.wait(TICK)
            self._wake.clear()
        self._kill_all(self.node.stop_grace)

    def _volumes_ready(self) -> bool:
        return not self._setup_error and (
            bool(self._volumes) or not self.pod["spec"].get("volumes")
        )

    def _setup(self, pod: Obj) -> None:
        if self.network is None:
            network = PodNetwork(self.node.bridge, self.node.bridge.allocate())
            self.network = network
            relays = ((SERVICE_HOST, SERVICE_PORT, self.node.kube.port), *self.node.relays)
            network.create(tuple(host for host, _, _ in relays))
            for host, port, target in relays:
                listener = listen_in_namespace(network.path, host, port)
                self._relays.append(ApiRelay(listener, target))
            self.directory.mkdir(parents=True, exist_ok=True)
            name = pod["metadata"]["name"]
            (self.directory / "hosts").write_text(
                f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{network.address}\t{name}\n"
            )
        try:
            builder = VolumeBuilder(
                self.node.kube, pod, self.directory, self.node.bridge.gateway, self.network.address
            )
            self._volumes = builder.build()
            self._setup_error = ""
        except (ConfigError, ApiError) as error:
            self._setup_error = str(error)
            for container in (*self.init, *self.containers):
                container.state = {
                    "waiting": {"reason": "CreateContainerConfigError", "message": str(error)}
                }
            self._wake.wait(1.0)

    # -- containers ----------------------------------------------------------------------
    def _start(self, container: Container, pod: Obj) -> None:
        assert self.network is not None
        resolver = EnvResolver(self.node.kube, pod["metadata"]["namespace"])
        try:
            env = resolver.environment(
                pod,
                container.spec,
                self.node.venv_bin,
                self.node.bridge.gateway,
                self.network.address,
            )
            spec = self._shim_spec(pod, container, env)
        except (ConfigError, ApiError) as error:
            container.state = {
                "waiting": {"reason": "CreateContainerConfigError", "message": str(error)}
            }
            container.restart_at = time.monotonic() + 1.0
            return
        container.start(self.network.namespace, spec)

    def _shim_spec(self, pod: Obj, container: Container, env: dict[str, str]) -> Obj:
        spec = container.spec
        mounts = []
        for mount in spec.get("volumeMounts", []):
            source = self._volumes[mount["name"]]
            if mount.get("subPath"):
                source = source / mount["subPath"]
                if not source.exists():
                    source.mkdir(parents=True)
                    source.chmod(0o777)
            self.node.make_top_level(mount["mountPath"])
            mounts.append(
                {
                    "source": str(source),
                    "target": mount["mountPath"],
                    "readOnly": bool(mount.get("readOnly", False)),
                }
            )
        self.node.make_top_level(spec.get("terminationMessagePath", "/dev/termination-log"))
        mounts.append(
            {
                "source": str(container.termination_log),
                "target": spec.get("terminationMessagePath", "/dev/termination-log"),
                "readOnly": False,
            }
        )
        mounts.append(
            {"source": str(self.directory / "hosts"), "target": "/etc/hosts", "readOnly": False}
        )
        pod_security = pod["spec"].get("securityContext", {})
        security = {**pod_security, **spec.get("securityContext", {})}
        uid = security.get("runAsUser")
        if uid is None and security.get("runAsNonRoot"):
            uid = DEFAULT_NONROOT_UID
        groups = list(pod_security.get("supplementalGroups", []))
        if "fsGroup" in pod_security:
            groups.insert(0, pod_security["fsGroup"])
        return {
            "argv": command_line(spec, env),
            "expose": [sys.base_prefix, str(self.node.venv_bin.parent)],
            "preserve": [sys.base_prefix, str(self.node.venv_bin.parent), str(SOURCE_TREE)],
            "env": env,
            "mounts": mounts,
            "workingDir": spec.get("workingDir") or "/",
            "uid": uid,
            "gid": security.get("runAsGroup", 0) if uid is not None else None,
            "groups": groups,
            "readOnlyRoot": bool(security.get("readOnlyRootFilesystem", False)),
            "hostname": (pod["spec"].get("hostname") or pod["metadata"]["name"])[:63],
        }

    def _step(self, pod: Obj) -> None:
        policy = pod["spec"].get("restartPolicy", "Always")
        now = time.monotonic()
        if self._init_index < len(self.init):
            container = self.init[self._init_index]
            self._drive(container, pod, "OnFailure" if policy == "Always" else policy, now)
            state = container.state.get("terminated")
            if state and state["exitCode"] == 0:
                self._init_index += 1
            elif state and policy == "Never":
                self._terminal_phase = "Failed"
            return
        for container in self.containers:
            self._drive(container, pod, policy, now)
            if container.running:
                self._probe(container, pod, policy)
        if policy != "Always" and all(c.terminated for c in self.containers):
            codes = [c.state["terminated"]["exitCode"] for c in self.containers]
            if all(code == 0 for code in codes):
                self._terminal_phase = "Succeeded"
            elif policy == "Never":
                self._terminal_phase = "Failed"

    def _drive(self, container: Container, pod: Obj, policy: str, now: float) -> None:
        if container.proc is None and container.restart_at <= now:
            self._start(container, pod)
            return
        if container.reap():
            code = container.state["terminated"]["exitCode"]
            if policy == "Always" or (policy == "OnFailure" and code != 0):
                delay = min(
                    self.node.backoff_base * 2**container.restart_count, self.node.backoff_cap
                )
                container.last_state = container.state
                container.restart_at = now + delay
                container.state = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {delay:g}s restarting failed container="
                        f"{container.name} pod={pod['metadata']['name']}",
                    }
                }
            return
        if "waiting" in container.state and container.proc and container.restart_at <= now:
            container.restart_count += 1
            self._start(container, pod)

    def _probe(self, container: Container, pod: Obj, policy: str) -> None:
        assert self.network is not None and container.proc is not None
        now = time.monotonic()
        for kind, probe in container.probes.items():
            if kind != "startupProbe" and not container.started:
                continue
            if kind == "startupProbe" and container.started:
                continue
            if not probe.due(now):
                continue
            ok = run_probe(probe.spec, container.spec, self.network.address, container.proc.pid)
            probe.record(ok, time.monotonic())
            if kind == "readinessProbe":
                container.ready = probe.passed is True
            elif probe.passed is False:
                grace = probe.spec.get(
                    "terminationGracePeriodSeconds",
                    pod["spec"].get("terminationGracePeriodSeconds", 30),
                )
                container.kill(float(grace))
                self._drive(container, pod, policy, time.monotonic())
                return
            elif kind == "startupProbe" and probe.passed:
                container.started = True
        if "readinessProbe" not in container.probes:
            container.ready = container.started

    def _kill_all(self, grace: float) -> None:
        live = [c for c in (*self.init, *self.containers) if c.running]
        for container in live:
            container.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(c.running for c in live) and time.monotonic() < deadline:
            time.sleep(0.05)
        for container in live:
            container.kill(0)
            container.reap()

    def _delete_pod(self, pod: Obj) -> None:
        grace = pod["metadata"].get(
            "deletionGracePeriodSeconds", pod["spec"].get("terminationGracePeriodSeconds", 30)
        )
        self._kill_all(float(grace))
        with contextlib.suppress(ApiError):
            self._publish()
        self.node.kube.delete(
            self.path,
            {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid},
            },
        )

    # -- status --------------------------------------------------------------------------
    def _phase(self, pod: Obj) -> str:
        if self._terminal_phase:
            return self._terminal_phase
        if self._init_index < len(self.init):
            return "Pending"
        if any(c.proc is None for c in self.containers):
            return "Pending"
        return "Running"

    def _condition(self, kind: str, value: bool, reason: str = "") -> Obj:
        status = "True" if value else "False"
        previous = self._conditions.get(kind)
        if previous is None or previous["status"] != status:
            previous = {"type": kind, "status": status, "lastTransitionTime": now_rfc3339()}
            if reason:
                previous["reason"] = reason
            self._conditions[kind] = previous
        return previous

    def _publish(self) -> None:
        pod = self.pod
        sandbox = self.network is not None
        initialized = self._init_index >= len(self.init)
        ready = initialized and all(c.ready for c in self.containers) and not self._terminal_phase
        not_ready = "PodCompleted" if self._terminal_phase else "ContainersNotReady"
        not_ready = "" if ready else not_ready
        not_initialized = "" if initialized else "ContainersNotInitialized"
        conditions = [
            self._condition("PodReadyToStartContainers", sandbox),
            self._condition("Initialized", initialized, not_initialized),
            self._condition("Ready", ready, not_ready),
            self._condition("ContainersReady", ready, not_ready),
            self._condition("PodScheduled", True),
        ]
        foreign = [
            c for c in pod.get("status", {}).get("conditions", [])
            if c["type"] not in MANAGED_CONDITIONS
        ]  # fmt: skip
        status: Obj = {
            "phase": self._phase(pod),
            "conditions": conditions + foreign,
            "hostIP": self.node.bridge.gateway,
            "hostIPs": [{"ip": self.node.bridge.gateway}],
            "startTime": self._start_time,
            "qosClass": pod.get("status", {}).get("qosClass", "BestEffort"),
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.network is not None:
            status["podIP"] = self.network.address
            status["podIPs"] = [{"ip": self.network.address}]
        if self.init:
            status["initContainerStatuses"] = [c.status() for c in self.init]
        if self._setup_error:
            status["message"] = self._setup_error
        if status == self._published:
            return
        try:
            self.node.kube.merge_patch(self.path + "/status", {"status": status})
            self._published = status
        except ApiError as error:
            if error.status != 404:
                raise

    # -- cleanup -------------------------------------------------------------------------
    def _release_network(self) -> None:
        for relay in self._relays:
            relay.close()
        self._relays = []
        if self.network is not None and not self._network_released:
            self._network_released = True
            self.network.delete()
            self.node.bridge.release(self.network.slot)

    def _teardown(self) -> None:
        self._kill_all(0)
        self._release_network()
        remove_pod_volumes(self.directory)
