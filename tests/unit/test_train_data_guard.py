"""A Model's data URI cannot make the trainer reach inside the cluster (issue 13).

Every byte these tests send goes to loopback. Names are mapped to addresses by a stub
resolver (``socket.getaddrinfo`` patched), and ``socket.create_connection`` is wrapped so
that every attempt is recorded and only loopback attempts are passed through: a refusal
is proven by an empty attempt list and by loopback listeners that count connections.

Covers: cluster names refused before resolving; names resolving to loopback, link-local,
private, shared, unique-local, multicast, reserved and IPv4-mapped addresses refused
before connecting; the check on every redirect hop; no https→http downgrade; the allow
setting; the total time limit; the bound on a ``.gz`` file's expanded size; and URI
credentials redacted from errors, stderr, the termination log and ``metadata.json``.
"""

from __future__ import annotations

import gzip
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from train_support import churn_frame, manifest, run_cli, write_manifest

from harness.certs import CertificateAuthority
from mlkube.runtime.train import TrainingInputError
from mlkube.runtime.train.data import load_data
from mlkube.runtime.train.settings import TrainSettings
from mlkube.runtime.train.spec import DataSpec

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


class Network:
    """The stub resolver and the recorder of connection attempts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> None:
        self.names = names
        self.resolved: list[str] = []
        self.attempts: list[tuple[str, int]] = []
        real_connect = socket.create_connection

        def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
            self.resolved.append(str(host))
            if host == "127.0.0.1":  # the real connect's own lookup of a checked address
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, int(port or 0)))]
            if host not in names:
                raise socket.gaierror(socket.EAI_NONAME, "unknown name (stub resolver)")
            family = {True: socket.AF_INET6, False: socket.AF_INET}
            return [
                (family[":" in a], socket.SOCK_STREAM, 6, "", (a, int(port or 0)))
                for a in names[host]
            ]

        def connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
            self.attempts.append(address)
            host = names.get(address[0], [address[0]])[0]
            if host != "127.0.0.1":
                raise ConnectionRefusedError("the test network only reaches 127.0.0.1")
            return real_connect(("127.0.0.1", address[1]), *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        monkeypatch.setattr(socket, "create_connection", connect)


class Site:
    """An HTTP(S) server on 127.0.0.1 answering with ``handler``; counts connections."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.connections = 0
        site = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            def setup(self) -> None:
                site.connections += 1
                super().setup()

            def do_GET(self) -> None:
                handler(self)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def sites() -> Iterator[list[Site]]:
    started: list[Site] = []
    yield started
    for site in started:
        site.close()


def _csv(request: http.server.BaseHTTPRequestHandler) -> None:
    body = churn_frame(60).to_csv(index=False).encode()
    request.send_response(200)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def _redirect(location: str) -> Handler:
    def answer(request: http.server.BaseHTTPRequestHandler) -> None:
        request.send_response(302)
        request.send_header("Location", location)
        request.send_header("Content-Length", "0")
        request.end_headers()

    return answer


def _load(uri: str, **settings: Any) -> Any:
    return load_data(DataSpec(uri=uri, target="churned"), TrainSettings(**settings))


@pytest.mark.parametrize(
    "uri",
    [
        "https://kubernetes.default.svc/api",
        "https://kubernetes.default.svc.cluster.local./x.csv",
        "https://redis:6379/x.csv",
        "https://localhost/x.csv",
        "https://metadata.google.internal/computeMetadata/v1/",
        "http://db.team-a.svc:5432/x.csv",
    ],
)
def test_cluster_names_are_refused_before_resolving(
    monkeypatch: pytest.MonkeyPatch, uri: str
) -> None:
    network = Network(monkeypatch, {})
    with pytest.raises(TrainingInputError, match="is a cluster or local name"):
        _load(uri)
    assert network.resolved == [] and network.attempts == []


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "169.254.169.254",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "100.64.0.10",
        "0.0.0.0",
        "224.0.0.251",
        "240.0.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
    ],
)
def test_names_resolving_to_internal_addresses_are_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    network = Network(monkeypatch, {"data.example.com": ["93.184.215.14", address]})
    with pytest.raises(TrainingInputError, match="resolves to an internal address"):
        _load("https://data.example.com/churn.csv")
    assert network.attempts == []


def test_internal_address_literals_are_refused(
    monkeypatch: pytest.MonkeyPatch, sites: list[Site]
) -> None:
    sites.append(Site(_csv))
    network = Network(monkeypatch, {})
    with pytest.raises(TrainingInputError, match="internal address"):
        _load(f"http://127.0.0.1:{sites[0].port}/churn.csv")
    assert network.attempts == [] and sites[0].connections == 0
    assert len(_load(f"http://127.0.0.1:{sites[0].port}/churn.csv", **ALLOW).frame) == 60


ALLOW: dict[str, Any] = {"allowed_internal_hosts": ("127.0.0.1",)}


def test_every_redirect_hop_is_checked(monkeypatch: pytest.MonkeyPatch, sites: list[Site]) -> None:
    inside = Site(_csv)
    front = Site(_redirect(f"http://secret.example:{inside.port}/churn.csv"))
    sites += [inside, front]
    network = Network(
        monkeypatch, {"files.example": ["127.0.0.1"], "secret.example": ["127.0.0.1"]}
    )
    with pytest.raises(TrainingInputError, match=r"'secret\.example' resolves to an internal"):
        _load(
            f"http://files.example:{front.port}/churn.csv",
            allowed_internal_hosts=("files.example",),
        )
    assert front.connections == 1 and inside.connections == 0
    assert [port for _, port in network.attempts] == [front.port]


def test_a_redirect_from_https_to_http_is_refused(
    monkeypatch: pytest.MonkeyPatch, sites: list[Site], tmp_path: Path
) -> None:
    ca = CertificateAuthority(tmp_path)
    pair = ca.issue("server", "127.0.0.1", ip_addresses=("127.0.0.1",), server=True)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pair.cert, pair.key)
    plain = Site(_csv)
    secure = Site(_redirect(f"http://127.0.0.1:{plain.port}/churn.csv"), tls)
    sites += [plain, secure]
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.pair.cert))
    with pytest.raises(TrainingInputError, match=r"redirected from https:// to http://"):
        _load(f"https://127.0.0.1:{secure.port}/churn.csv", **ALLOW)
    assert secure.connections == 1 and plain.connections == 0


def _drip(request: http.server.BaseHTTPRequestHandler) -> None:
    request.send_response(200)
    request.send_header("Content-Length", "100000")
    request.end_headers()
    started = time.monotonic()
    while time.monotonic() - started < 4:
        try:
            request.wfile.write(b"a")
            request.wfile.flush()
        except OSError:
            return
        time.sleep(0.1)


def test_the_download_has_a_total_time_limit(sites: list[Site]) -> None:
    sites.append(Site(_drip))
    started = time.monotonic()
    with pytest.raises(TrainingInputError, match=r"not downloaded within 1 s"):
        _load(f"http://127.0.0.1:{sites[0].port}/slow.csv", http_timeout_seconds=1.0, **ALLOW)
    assert time.monotonic() - started < 2.5


def test_a_gzip_file_may_not_expand_beyond_the_bound(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(b"a,b\n" + b"1,2\n" * (4 << 20)))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(TrainingInputError, match="expands to more than 1048576 bytes"):
        _load(str(bomb), max_decompressed_bytes=1 << 20)
    small = tmp_path / "small.csv.gz"
    small.write_bytes(gzip.compress(b"a,churned\n1,2\n") + gzip.compress(b"3,4\n"))
    assert len(_load(str(small), max_decompressed_bytes=1 << 20).frame) == 2


SECRETS = ("pa55w0rd", "SIGabc123", "tok456", "sigv789", "key000", "hunter2")
SECRET_QUERY = (
    "X-Amz-Signature=SIGabc123&token=tok456&sig=sigv789&api_key=key000&password=hunter2&keep=yes"
)


def test_uri_credentials_are_redacted_everywhere(
    monkeypatch: pytest.MonkeyPatch,
    sites: list[Site],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sites.append(Site(lambda r: _csv(r) if r.path.startswith("/churn") else r.send_error(404)))
    Network(monkeypatch, {"files.example": ["127.0.0.1"]})
    monkeypatch.setenv("MLKUBE_ALLOWED_INTERNAL_HOSTS", "files.example")
    base = f"http://user:pa55w0rd@files.example:{sites[0].port}"
    seen = []
    for name, path in (("ok", "churn.csv"), ("missing", "gone.csv")):
        document = manifest(name, uri=f"{base}/{path}?{SECRET_QUERY}", target="churned")
        log = tmp_path / f"{name}.log"
        result = run_cli(
            capsys,
            "-f",
            write_manifest(tmp_path, document, f"{name}.json"),
            "--store",
            tmp_path / "store",
            "--termination-log",
            log,
        )
        assert result.code == (0 if name == "ok" else 2), result.stderr
        seen += [result.stdout, result.stderr, log.read_text()]
    metadata = next((tmp_path / "store").rglob("metadata.json")).read_text()
    assert "REDACTED" in metadata and "keep=yes" in metadata
    assert "HTTP 404" in seen[-2] and "REDACTED" in seen[-2]
    leaks = [s for text in [*seen, metadata] for s in SECRETS if s in text]
    assert leaks == []
