"""Pod networking: one bridge per agent, one network namespace and IP per pod.

Each agent takes a free ``10.244.N.0/24`` (a range no host here uses), puts the gateway
``10.244.N.1`` on a bridge it creates, and gives every pod a namespace joined to the bridge
by a veth pair, so two replicas can listen on the same port. IP forwarding stays off:
traffic only flows between the host and the addresses the agent made.

Pods reach the API server the way in-cluster clients expect, at the ``kubernetes``
Service address ``10.96.0.1:443`` (already in the serving certificate): the agent puts that
address on each pod's loopback and listens there itself, from a socket opened inside the
pod's namespace, relaying each connection to the API server's loopback port on the host.
Other host services a test runs on loopback (the S3 server) are reached the same way, at a
Service-like address the test names (``--relay 10.96.0.10:9000=<host port>``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

SUBNET_PREFIX = "10.244"
SERVICE_HOST = "10.96.0.1"
SERVICE_PORT = 443
LOCK_FILE = Path("/run/lock/mlkube-nodeagent.lock")
_CLONE_NEWNET = 0x40000000


class NetworkError(RuntimeError):
    """An ``ip`` command failed."""


def ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _used_subnets() -> set[int]:
    used = set()
    for line in ip("-o", "-4", "addr", "show").splitlines():
        for word in line.split():
            if word.startswith(SUBNET_PREFIX + "."):
                used.add(int(word.split(".")[2]))
    return used


class Bridge:
    """The agent's bridge and address pool; ``delete()`` removes it and every pod link."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"mlkbr{index}"
        self.gateway = f"{SUBNET_PREFIX}.{index}.1"
        self._free = list(range(2, 255))
        self._lock = threading.Lock()

    @classmethod
    def create(cls) -> Bridge:
        with _allocation_lock():
            used = _used_subnets()
            index = next(n for n in range(1, 255) if n not in used)
            bridge = cls(index)
            ip("link", "add", bridge.name, "type", "bridge")
            ip("addr", "add", f"{bridge.gateway}/24", "dev", bridge.name)
            ip("link", "set", bridge.name, "up")
        return bridge

    def allocate(self) -> int:
        with self._lock:
            return self._free.pop(0)

    def release(self, slot: int) -> None:
        with self._lock:
            if slot not in self._free:
                self._free.append(slot)

    def delete(self) -> None:
        ip("link", "del", self.name, check=False)


class PodNetwork:
    """A pod's namespace ``mlk<N>-<slot>`` with ``eth0`` at ``10.244.N.<slot>``."""

    def __init__(self, bridge: Bridge, slot: int) -> None:
        self.slot = slot
        self.namespace = f"mlk{bridge.index}-{slot}"
        self.address = f"{SUBNET_PREFIX}.{bridge.index}.{slot}"
        self.host_link = f"mlkv{bridge.index}h{slot}"
        self._peer = f"mlkv{bridge.index}p{slot}"
        self._bridge = bridge

    def create(self, extra_addresses: tuple[str, ...] = ()) -> None:
        ns = self.namespace
        ip("netns", "add", ns)
        ip("link", "add", self.host_link, "type", "veth", "peer", "name", self._peer)
        ip("link", "set", self._peer, "netns", ns)
        ip("link", "set", self.host_link, "master", self._bridge.name, "up")
        ip("-n", ns, "link", "set", self._peer, "name", "eth0")
        ip("-n", ns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        for address in dict.fromkeys((SERVICE_HOST, *extra_addresses)):
            ip("-n", ns, "addr", "add", f"{address}/32", "dev", "lo")

    @property
    def path(self) -> Path:
        return Path("/run/netns") / self.namespace

    def delete(self) -> None:
        ip("link", "del", self.host_link, check=False)
        ip("netns", "del", self.namespace, check=False)


def listen_in_namespace(netns: Path, host: str, port: int) -> socket.socket:
    """A listening TCP socket created inside ``netns`` (a thread joins it, then exits)."""
    box: list[socket.socket | BaseException] = []

    def join_and_listen() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(netns, os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            box.append(sock)
        except BaseException as error:
            box.append(error)

    thread = threading.Thread(target=join_and_listen, name=f"netns-{netns.name}")
    thread.start()
    thread.join()
    result = box[0]
    if isinstance(result, BaseException):
        raise result
    return result


class ApiRelay:
    """Relays connections accepted in a pod namespace to the API server on the host."""

    def __init__(self, listener: socket.socket, target_port: int) -> None:
        self._listener = listener
        self._target = ("127.0.0.1", target_port)
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="api-relay")
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        with self._lock:
            self._conns.difference_update((client, upstream))
        client.close()
        upstream.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def in_subnet(address: str, gateway: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(f"{gateway}/24", strict=False)
