"""The harness's pure pieces: certificates it generates and the ports it picks."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.certs import CertificateAuthority, write_service_account_keys
from harness.ports import free_port, free_ports


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_serving_cert_is_signed_by_the_ca_with_sans(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    pair = ca.issue(
        "apiserver",
        "kube-apiserver",
        dns_names=("localhost",),
        ip_addresses=("127.0.0.1",),
        server=True,
    )
    cert, ca_cert = _load(pair.cert), _load(ca.pair.cert)
    cert.verify_directly_issued_by(ca_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert pair.key.stat().st_mode & 0o777 == 0o600


def test_admin_client_cert_carries_the_masters_group(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    cert = _load(ca.issue("admin", "mlkube-admin", organization="system:masters").cert)
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [a.value for a in org] == ["system:masters"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_service_account_keys_are_pem(tmp_path: Path) -> None:
    pair = write_service_account_keys(tmp_path)
    assert pair.cert.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert pair.key.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in [*ports, free_port()]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
