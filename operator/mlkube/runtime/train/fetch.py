"""Downloads an ``http(s)://`` data URI without letting a Model reach inside the cluster.

A Model names its data URI, and the trainer runs in the cluster's network, so an
unguarded download is a way to read (and, through error messages in the Model's status,
to scan) internal services: the API server, cloud metadata endpoints, other pods. So:

- host names of the cluster (``*.svc``, ``*.cluster.local``, single-label names,
  ``localhost``) are refused before anything is resolved;
- every address a name resolves to must be public: loopback, link-local (cloud metadata),
  private, shared (100.64/10), unique-local, multicast, reserved and unspecified
  addresses are refused, and the connection goes to the address that was checked, so a
  second DNS answer cannot swap it (DNS rebinding);
- the same check runs on every redirect hop, redirects from https to anything but https
  are refused, and at most five are followed; proxies from the environment are not used,
  since they would hide the real destination;
- ``MLKUBE_ALLOWED_INTERNAL_HOSTS`` (operator setting) lists host names, addresses or
  networks that may be internal, for data served inside the cluster on purpose;
- the download has a total time limit and a size limit, and every message names the URI
  with its credentials redacted (``redact_uri``).
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from collections.abc import Sequence
from typing import Any, Final

from mlkube.runtime.train import TrainingInputError, TrainingUnavailableError
from mlkube.runtime.train.settings import TrainSettings

CLUSTER_SUFFIXES: Final = (".svc", ".cluster.local", ".local", ".internal", ".localhost")
MAX_REDIRECTS: Final = 5
CHUNK_BYTES: Final = 1 << 16
_SECRET_PARAM: Final = re.compile(
    r"sig|signature|token|key|password|passwd|secret|credential|auth|session", re.IGNORECASE
)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def redact_uri(uri: str) -> str:
    """The URI without userinfo and with the values of secret-looking query parameters hidden."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return "<unparseable uri>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "REDACTED@" + netloc.rpartition("@")[2]
    query = "&".join(
        f"{name}=REDACTED" if _SECRET_PARAM.search(name) else f"{name}={value}" if value else name
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _is_internal_address(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast or address.is_reserved


def _is_cluster_name(host: str) -> bool:
    return "." not in host or host == "localhost" or host.endswith(CLUSTER_SUFFIXES)


class AddressGuard:
    """Resolves a host once, refuses internal destinations, and connects to the checked address."""

    def __init__(self, uri: str, allowed: Sequence[str]) -> None:
        self._shown = redact_uri(uri)
        names = {a.strip().lower().rstrip(".").strip("[]") for a in allowed if a.strip()}
        self._networks = []
        for entry in names:
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue
        self._names = names

    def _refuse(self, host: str, why: str) -> TrainingInputError:
        return TrainingInputError(
            f"data {self._shown}: host {host!r} {why}; refusing to connect (a data host inside "
            "the cluster must be listed in MLKUBE_ALLOWED_INTERNAL_HOSTS)"
        )

    def _allowed(self, address: Address) -> bool:
        return any(address in network for network in self._networks)

    def resolve(self, host: str, port: int) -> str:
        """The checked address to connect to; ``TrainingInputError`` for an internal one."""
        name = host.lower().rstrip(".").strip("[]")
        if name in self._names:
            return host
        try:
            literal: Address | None = ipaddress.ip_address(name)
        except ValueError:
            literal = None
        if literal is None and _is_cluster_name(name):
            raise self._refuse(host, "is a cluster or local name")
        try:
            answers = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise TrainingInputError(
                f"data {self._shown}: cannot resolve {host!r}: {error.strerror or error}"
            ) from None
        addresses = [ipaddress.ip_address(str(answer[4][0]).split("%")[0]) for answer in answers]
        if not addresses:
            raise TrainingInputError(f"data {self._shown}: {host!r} has no address")
        for address in addresses:
            if _is_internal_address(address) and not self._allowed(address):
                raise self._refuse(host, "resolves to an internal address")
        return str(addresses[0])

    def connect(
        self, address: tuple[str, int], timeout: float | None = None, source: Any = None
    ) -> socket.socket:
        host, port = address
        return socket.create_connection((self.resolve(host, port), port), timeout, source)


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, *, guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._create_connection = guard.connect


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, *, guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._create_connection = guard.connect


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, guard: AddressGuard) -> None:
        super().__init__()
        self._guard = guard

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_GuardedHTTPConnection, guard=self._guard), req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, guard: AddressGuard) -> None:
        super().__init__()
        self._guard = guard

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_GuardedHTTPSConnection, guard=self._guard)
        return self.do_open(connection, req, context=getattr(self, "_context", None))


class _NoDowngradeRedirectHandler(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS

    def __init__(self, shown: str) -> None:
        self._shown = shown

    def redirect_request(  # noqa: PLR0917 (urllib's signature)
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        old = urllib.parse.urlsplit(req.full_url).scheme.lower()
        new = urllib.parse.urlsplit(newurl).scheme.lower()
        if new not in ("http", "https") or (old == "https" and new != "https"):
            raise TrainingInputError(
                f"data {self._shown}: redirected from {old}:// to {new or 'a relative'}:// "
                "(refusing: a redirect may not leave https)"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# HTTP answers that say "not now" rather than "not this URI".
RETRYABLE_HTTP: Final = frozenset({408, 429, 500, 502, 503, 504})


def download_http(uri: str, settings: TrainSettings) -> bytes:
    """The body of ``uri``, within the size and total time limits, from a permitted host."""
    shown = redact_uri(uri)
    guard = AddressGuard(uri, settings.allowed_internal_hosts)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        _GuardedHTTPHandler(guard),
        _GuardedHTTPSHandler(guard),
        _NoDowngradeRedirectHandler(shown),
    )
    limit, seconds = settings.http_max_bytes, settings.http_timeout_seconds
    request = _request(uri)
    deadline = time.monotonic() + seconds
    try:
        with opener.open(request, timeout=seconds) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise TrainingInputError(
                    f"data {shown} is {length} bytes, more than {limit} (MLKUBE_HTTP_MAX_BYTES)"
                )
            return _read_within(response, limit, deadline, shown, seconds)
    except urllib.error.HTTPError as error:
        # A server error or a throttle may pass (the Job retries); a 4xx is the URI's fault.
        kind = TrainingUnavailableError if error.code in RETRYABLE_HTTP else TrainingInputError
        raise kind(f"data {shown}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        # A certificate the trainer does not trust is the URI's problem; a refused or reset
        # connection may pass.
        kind = (
            TrainingInputError
            if isinstance(error.reason, ssl.SSLError)
            else (TrainingUnavailableError)
        )
        raise kind(f"data {shown}: cannot connect: {error.reason}") from None
    except TimeoutError:
        raise _too_slow(shown, seconds) from None
    except (OSError, http.client.HTTPException) as error:
        raise TrainingUnavailableError(f"data {shown}: download failed: {error}") from None


def _request(uri: str) -> urllib.request.Request:
    """The request without userinfo in the URL: it goes as basic auth, to the first host only."""
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]
    bare = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    request = urllib.request.Request(bare, headers={"User-Agent": "mlkube-train"})  # noqa: S310
    if "@" in parts.netloc:
        userinfo = urllib.parse.unquote(parts.netloc.rpartition("@")[0]).encode()
        request.add_unredirected_header("Authorization", "Basic " + b64encode(userinfo).decode())
    return request


def _too_slow(shown: str, seconds: float) -> TrainingInputError:
    return TrainingInputError(
        f"data {shown}: not downloaded within {seconds:g} s (MLKUBE_HTTP_TIMEOUT_SECONDS)"
    )


def _read_within(response: Any, limit: int, deadline: float, shown: str, seconds: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise TrainingInputError(
                f"data {shown} is larger than {limit} bytes (MLKUBE_HTTP_MAX_BYTES)"
            )
        if time.monotonic() > deadline:
            raise _too_slow(shown, seconds)
        chunks.append(chunk)
    return b"".join(chunks)
