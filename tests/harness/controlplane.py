"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

Built from Go modules (``tests/controlplane/build.sh``) and run the way envtest runs it,
plus the controller manager so Jobs, CronJobs, ReplicaSets, garbage collection and
service-account tokens behave as in a cluster. There is no kubelet: pods stay Pending
unless a test plays the kubelet's part or the node agent runs them.

Used by the pytest fixtures (``tests/conftest.py``) and, for people and scripts, by
``python -m harness.controlplane up|down|status --dir .controlplane``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.certs import CertificateAuthority, write_service_account_keys
from harness.ports import free_ports

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "controlplane" / "build.sh"
SERVICE_CIDR = "10.96.0.0/16"
# Published as the apiserver's address but never bound (a loopback address is refused).
ADVERTISE_ADDRESS = "192.0.2.10"
FRONT_PROXY_CLIENT = "front-proxy-client"
DISABLED_CONTROLLERS = (
    "node-ipam-controller",
    "node-lifecycle-controller",
    "cloud-node-lifecycle-controller",
    "service-lb-controller",
    "node-route-controller",
)
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: ["system:apiserver", "system:kube-controller-manager", "system:kube-scheduler"]
  - level: None
    userGroups: ["system:serviceaccounts:kube-system", "system:nodes"]
  - level: None
    nonResourceURLs: ["/readyz*", "/livez*", "/healthz*", "/version", "/openapi*", "/api*"]
  - level: Metadata
"""


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message includes log tails."""


def ensure_binaries() -> Path:
    """The directory holding etcd, kube-apiserver, … (built and cached on first use)."""
    override = os.environ.get("MLKUBE_CONTROLPLANE_BIN")
    if override:
        return Path(override)
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise ControlPlaneError(f"building the control plane failed (exit {result.returncode})")
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass
class ControlPlane:
    """One running control plane; ``stop()`` leaves no process behind."""

    workdir: Path
    bin_dir: Path
    server: str = ""
    etcd_url: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    _args: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "logs" / "audit.log"

    def log_path(self, component: str) -> Path:
        return self.workdir / "logs" / f"{component}.log"

    # -- start ---------------------------------------------------------------------------
    @classmethod
    def start(
        cls, workdir: Path, bin_dir: Path | None = None, *, controller_manager: bool = True
    ) -> ControlPlane:
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "logs").mkdir(exist_ok=True)
        plane = cls(workdir=workdir, bin_dir=bin_dir or ensure_binaries())
        try:
            plane._write_pki()
            plane._start_etcd()
            plane._start_apiserver()
            plane._write_kubeconfig()
            if controller_manager:
                plane._start_controller_manager()
                plane._wait_for_default_service_account()
        except BaseException:
            plane.stop()
            raise
        return plane

    def _write_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        ca = CertificateAuthority(pki)
        ca.issue(
            "apiserver",
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=("127.0.0.1", "10.96.0.1", ADVERTISE_ADDRESS),
            server=True,
        )
        ca.issue("admin", "mlkube-admin", organization="system:masters")
        # How the API server authenticates to kubelets (logs, exec, port-forward) on a real
        # node (harness.node); the kubelet authorizes it through a SubjectAccessReview.
        ca.issue(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            organization="system:masters",
        )
        # How the API server authenticates to aggregated API servers (metrics-server on a
        # real node, harness.metrics_server), which trust it through the request headers.
        ca.issue("front-proxy-client", FRONT_PROXY_CLIENT)
        write_service_account_keys(pki)
        (self.workdir / "audit-policy.yaml").write_text(AUDIT_POLICY)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.log_path(name).open("ab")
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.workdir,
        )
        log.close()
        self._procs[name] = proc
        self._args[name] = args
        self.pids[name] = proc.pid
        return proc

    def _start_etcd(self) -> None:
        client, peer = free_ports(2)
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )
        self._wait("etcd", lambda: _http_ok(f"{self.etcd_url}/health"), timeout=30)

    def _start_apiserver(self) -> None:
        (port,) = free_ports(1)
        self.server = f"https://127.0.0.1:{port}"
        pki = self.workdir / "pki"
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--advertise-address={ADVERTISE_ADDRESS}",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Kubelets (harness.node) are reached with a client cert, and must serve one
                # from this CA. Hostname first: a real node's name resolves to loopback, and
                # the node agent only publishes its bridge address as InternalIP.
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=Hostname,InternalIP",
                # Aggregated APIs (metrics.k8s.io): reached at their endpoint, not a ClusterIP.
                f"--requestheader-client-ca-file={pki / 'ca.crt'}",
                f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                "--enable-aggregator-routing=true",
                # Node: what a kubelet (system:node:<name>) may read, as in any cluster.
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=false",
                f"--cert-dir={pki}",
                f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-maxsize=200",
                "--audit-log-maxbackup=1",
                "--v=1",
            ],
        )
        self._wait("kube-apiserver", lambda: self._api_ok("/readyz"), timeout=90)

    def _start_controller_manager(self) -> None:
        pki = self.workdir / "pki"
        controllers = "*," + ",".join(f"-{c}" for c in DISABLED_CONTROLLERS)
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--controllers={controllers}",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--concurrent-job-syncs=10",
                # An HPA scales back down 30 s after the load ends (default 5 min).
                "--horizontal-pod-autoscaler-downscale-stabilization=30s",
                "--v=1",
            ],
        )

    def _wait_for_default_service_account(self) -> None:
        self._wait(
            "kube-controller-manager",
            lambda: self._api_ok("/api/v1/namespaces/default/serviceaccounts/default"),
            timeout=60,
        )

    def _write_kubeconfig(self) -> None:
        pki = self.workdir / "pki"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "mlkube-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(pki / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(pki / "admin.crt"),
                        "client-key": str(pki / "admin.key"),
                    },
                }
            ],
            "contexts": [
                {"name": "mlkube-test", "context": {"cluster": "mlkube-test", "user": "admin"}}
            ],
            "current-context": "mlkube-test",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    # -- talk to it ----------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        pki = self.workdir / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    def _api_ok(self, path: str) -> bool:
        return _http_ok(self.server + path, self.ssl_context())

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Runs the kubectl built with the control plane (the machine's one is too old)."""
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, result.stderr
            )
        return result

    def _wait(self, name: str, ready: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        proc = self._procs[name]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with {proc.returncode}\n{self.log_tail(name)}"
                )
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.2)
        raise ControlPlaneError(f"{name} not ready after {timeout}s\n{self.log_tail(name)}")

    # -- faults and teardown -------------------------------------------------------------
    def restart(self, name: str) -> None:
        """Stops one component and starts it again with the same arguments (fault tests)."""
        _terminate(self._procs[name])
        self._spawn(name, self._args[name])
        if name == "etcd":
            self._wait("etcd", lambda: _http_ok(f"{self.etcd_url}/health"), timeout=30)
        elif name == "kube-apiserver":
            self._wait(name, lambda: self._api_ok("/readyz"), timeout=90)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_path(name)
        if not path.exists():
            return f"(no log for {name})"
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {name} (last {len(tail)} lines of {path}) ---\n" + "\n".join(tail)

    def all_log_tails(self, lines: int = 30) -> str:
        return "\n".join(self.log_tail(name, lines) for name in self.pids)

    def stop(self) -> None:
        for name in reversed(list(self._procs)):
            _terminate(self._procs[name])
        for name, pid in self.pids.items():
            if name not in self._procs:
                _kill_group(pid)
        self._procs.clear()

    def state(self) -> dict[str, object]:
        return {
            "server": self.server,
            "etcd": self.etcd_url,
            "kubeconfig": str(self.kubeconfig),
            "bin_dir": str(self.bin_dir),
            "pids": self.pids,
        }


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _kill_group(pid: int, grace: float = 10.0) -> None:
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    _signal_group(pid, signal.SIGKILL)


def _cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.controlplane")
    parser.add_argument("action", choices=["up", "down", "status", "build"])
    parser.add_argument("--dir", default=str(REPO / ".controlplane"), type=Path)
    args = parser.parse_args(argv)
    state_file: Path = args.dir / "state.json"
    if args.action == "build":
        print(ensure_binaries())
        return 0
    if args.action == "up":
        if state_file.exists():
            print(f"already up (see {state_file}); run `make controlplane-down` first")
            return 1
        if args.dir.exists():
            shutil.rmtree(args.dir)
        plane = ControlPlane.start(args.dir)
        state_file.write_text(json.dumps(plane.state(), indent=2))
        print(f"control plane up at {plane.server}")
        print(f"  export KUBECONFIG={plane.kubeconfig}")
        print(f"  kubectl: {plane.bin_dir / 'kubectl'}")
        return 0
    if not state_file.exists():
        print("control plane is not up")
        return 0 if args.action == "down" else 1
    state = json.loads(state_file.read_text())
    if args.action == "status":
        print(json.dumps(state, indent=2))
        return 0
    for pid in reversed(list(state["pids"].values())):
        _kill_group(int(pid))
    state_file.unlink()
    print("control plane stopped")
    return 0


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
