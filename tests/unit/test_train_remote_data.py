"""Training from remote data: a real TLS web server and moto's S3 server, both on loopback.

The https server gets a certificate from a throwaway CA that the trainer process trusts
through ``SSL_CERT_FILE`` (OpenSSL's standard variable), so certificate checking stays
on. Loopback is an internal address the trainer refuses by default, so these runs allow
127.0.0.1 explicitly (``MLKUBE_ALLOWED_INTERNAL_HOSTS``). Covers a successful download, a
404 (one line, exit 2, empty store), the size limit, and ``s3://`` through
``AWS_ENDPOINT_URL`` for a present and an absent key.
"""

from __future__ import annotations

import functools
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from train_support import (
    churn_frame,
    manifest,
    run_process,
    store_files,
    train_manifest_process,
    write_manifest,
)

from harness.certs import CertificateAuthority
from harness.ports import free_port

ALLOW_LOOPBACK = {"MLKUBE_ALLOWED_INTERNAL_HOSTS": "127.0.0.1"}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        if self.path.startswith("/busy"):  # a data host that is overloaded right now
            self.send_error(503, "Service Unavailable")
            return
        super().do_GET()


@pytest.fixture
def https_site(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """(base URL, served directory, CA bundle) of a TLS file server on 127.0.0.1."""
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = CertificateAuthority(pki)
    pair = ca.issue("server", "127.0.0.1", ip_addresses=("127.0.0.1",), server=True)
    served = tmp_path / "site"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pair.cert, pair.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", served, ca.pair.cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_https_download_trains(tmp_path: Path, https_site: tuple[str, Path, Path]) -> None:
    base, served, ca_bundle = https_site
    churn_frame(300).to_csv(served / "churn.csv", index=False)
    document = manifest(uri=f"{base}/churn.csv", target="churned")
    result = train_manifest_process(
        tmp_path,
        document,
        tmp_path / "log",
        env={"SSL_CERT_FILE": str(ca_bundle), **ALLOW_LOOPBACK},
    )
    assert result.code == 0, result.stderr
    assert result.summary["rows"] == {"train": 240, "test": 60}


def test_https_404_is_one_line_and_leaves_no_version(
    tmp_path: Path, https_site: tuple[str, Path, Path]
) -> None:
    base, _, ca_bundle = https_site
    document = manifest(uri=f"{base}/missing.csv", target="churned")
    log = tmp_path / "log"
    result = train_manifest_process(
        tmp_path,
        document,
        log,
        env={"SSL_CERT_FILE": str(ca_bundle), **ALLOW_LOOPBACK},
    )
    assert result.code == 2
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [f"mlkube train: error: data {base}/missing.csv: HTTP 404 File not found"]
    assert json.loads(log.read_text())["error"].endswith("HTTP 404 File not found")
    assert store_files(tmp_path / "store") == []


def test_untrusted_certificate_is_refused(
    tmp_path: Path, https_site: tuple[str, Path, Path]
) -> None:
    base, served, _ = https_site
    churn_frame(100).to_csv(served / "churn.csv", index=False)
    document = manifest(uri=f"{base}/churn.csv", target="churned")
    result = train_manifest_process(tmp_path, document, tmp_path / "log", env=ALLOW_LOOPBACK)
    assert result.code == 2 and "CERTIFICATE_VERIFY_FAILED" in result.stderr


def test_download_over_the_size_limit_fails(
    tmp_path: Path, https_site: tuple[str, Path, Path]
) -> None:
    base, served, ca_bundle = https_site
    churn_frame(300).to_csv(served / "churn.csv", index=False)
    document = manifest(uri=f"{base}/churn.csv", target="churned")
    result = train_manifest_process(
        tmp_path,
        document,
        tmp_path / "log",
        env={"SSL_CERT_FILE": str(ca_bundle), "MLKUBE_HTTP_MAX_BYTES": "1000", **ALLOW_LOOPBACK},
    )
    assert result.code == 2 and "more than 1000 (MLKUBE_HTTP_MAX_BYTES)" in result.stderr


def test_s3_through_a_loopback_endpoint(tmp_path: Path, s3_endpoint: str) -> None:
    import boto3

    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_bucket(Bucket="datasets")
    client.put_object(
        Bucket="datasets", Key="churn/data.csv", Body=churn_frame(250).to_csv(index=False).encode()
    )
    document = manifest(uri="s3://datasets/churn/data.csv", target="churned")
    ok = train_manifest_process(
        tmp_path,
        document,
        tmp_path / "log",
        env=env,
    )
    assert ok.code == 0, ok.stderr
    assert ok.summary["rows"]["train"] == 200

    missing = manifest("other", uri="s3://datasets/churn/nope.csv", target="churned")
    failed = run_process(
        "-f",
        write_manifest(tmp_path, missing, "other.json"),
        "--store",
        tmp_path / "store",
        "--termination-log",
        tmp_path / "log",
        env=env,
    )
    assert failed.code == 2 and "s3://datasets/churn/nope.csv: NoSuchKey" in failed.stderr
    assert not (tmp_path / "store" / "default" / "other").exists()


@pytest.mark.parametrize(
    ("path", "code", "said"),
    [("busy.csv", 1, "HTTP 503"), ("missing.csv", 2, "HTTP 404")],
)
def test_a_data_host_that_is_away_exits_1_so_the_job_retries_and_a_bad_uri_exits_2(
    tmp_path: Path, https_site: tuple[str, Path, Path], path: str, code: int, said: str
) -> None:
    base, _, ca_bundle = https_site
    result = train_manifest_process(
        tmp_path,
        manifest(uri=f"{base}/{path}", target="churned"),
        tmp_path / "log",
        env={"SSL_CERT_FILE": str(ca_bundle), **ALLOW_LOOPBACK},
    )
    assert result.code == code, result.stderr
    assert said in result.stderr


def test_a_refused_connection_exits_1(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: the connection is refused on loopback
    result = train_manifest_process(
        tmp_path,
        manifest(uri=f"https://127.0.0.1:{port}/data.csv", target="churned"),
        tmp_path / "log",
        env=ALLOW_LOOPBACK,
    )
    assert result.code == 1, result.stderr
    assert "cannot connect" in result.stderr
