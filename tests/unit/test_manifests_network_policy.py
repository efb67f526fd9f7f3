"""The production NetworkPolicies for a namespace holding Models (issue 13), as rendered.

``manifests/overlays/production/model-namespace`` is rendered with the kubectl built with
the control plane. Covers: each policy selects the labels the operator's builders put on
the pods it means (predictor, trainer, drift); predictors accept only their serving port
and reach nothing; trainers and drift pods accept nothing; trainers reach only DNS and
https on public addresses (every private, link-local, shared, loopback, multicast range
excepted); drift pods reach only DNS and the API server's address.
"""

from __future__ import annotations

import ipaddress
import subprocess
from typing import Any

import pytest
import yaml

from harness.controlplane import REPO, ensure_binaries
from mlkube.api import names
from mlkube.api.resources import base_labels
from mlkube.controller.builders.predictor import HTTP_PORT

TARGET = REPO / "manifests" / "overlays" / "production" / "model-namespace"
DNS_PORTS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
INTERNAL = ["10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1", "127.0.0.1"]


@pytest.fixture(scope="module")
def policies() -> dict[str, dict[str, Any]]:
    kubectl = ensure_binaries() / "kubectl"
    out = subprocess.run(
        [str(kubectl), "kustomize", str(TARGET)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    documents = [d for d in yaml.safe_load_all(out) if d]
    assert {d["kind"] for d in documents} == {"NetworkPolicy"}
    return {d["spec"]["podSelector"]["matchLabels"][names.LABEL_COMPONENT]: d for d in documents}


def _is_dns(rule: dict[str, Any]) -> bool:
    peers = rule["to"]
    return rule["ports"] == DNS_PORTS and all(
        p["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
        and p["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
        for p in peers
    )


def _reaches(rule: dict[str, Any], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    for peer in rule["to"]:
        block = peer.get("ipBlock")
        if block is None:
            continue
        network = ipaddress.ip_network(block["cidr"])
        excepted = any(
            ip.version == ipaddress.ip_network(e).version and ip in ipaddress.ip_network(e)
            for e in block.get("except", [])
        )
        if ip.version == network.version and ip in network and not excepted:
            return True
    return False


def test_every_workload_has_a_policy_selecting_its_pods(
    policies: dict[str, dict[str, Any]],
) -> None:
    assert set(policies) == {"predictor", "trainer", "drift"}
    for component, policy in policies.items():
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert selector.items() <= base_labels("any-model", component).items()
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert "namespace" not in policy["metadata"]  # applied into each Model namespace


def test_predictors_accept_only_their_serving_port_and_reach_nothing(
    policies: dict[str, dict[str, Any]],
) -> None:
    spec = policies["predictor"]["spec"]
    assert spec["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert spec["egress"] == []
    assert HTTP_PORT == 8080  # the port named http in the predictor's container


def test_trainers_reach_only_dns_and_public_https(policies: dict[str, dict[str, Any]]) -> None:
    spec = policies["trainer"]["spec"]
    assert spec["ingress"] == []
    dns, data = spec["egress"]
    assert _is_dns(dns)
    assert data["ports"] == [{"port": 443, "protocol": "TCP"}]
    assert _reaches(data, "93.184.215.14") and _reaches(data, "2606:2800:21f::1")
    for address in [*INTERNAL, "::1", "fd00::1", "fe80::1", "224.0.0.1"]:
        assert not _reaches(data, address), address


def test_drift_pods_reach_only_dns_and_the_api_server(
    policies: dict[str, dict[str, Any]],
) -> None:
    spec = policies["drift"]["spec"]
    assert spec["ingress"] == []
    dns, api = spec["egress"]
    assert _is_dns(dns)
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert [ipaddress.ip_network(p["ipBlock"]["cidr"]).num_addresses for p in api["to"]] == [1]
    assert not any(_reaches(api, address) for address in ["93.184.215.14", *INTERNAL])


def test_the_s3_store_policy_lets_every_workload_reach_public_https_only() -> None:
    kubectl = ensure_binaries() / "kubectl"
    target = TARGET.parent / "s3-store"
    out = subprocess.run(
        [str(kubectl), "kustomize", str(target)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    (policy,) = [d for d in yaml.safe_load_all(out) if d]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Egress"] and "ingress" not in spec
    (components,) = spec["podSelector"]["matchExpressions"]
    assert set(components["values"]) == {"predictor", "trainer", "drift"}
    for component in components["values"]:
        labels = base_labels("any-model", component)
        assert spec["podSelector"]["matchLabels"].items() <= labels.items()
        assert labels[components["key"]] == component
    dns, store = spec["egress"]
    assert _is_dns(dns)
    assert store["ports"] == [{"port": 443, "protocol": "TCP"}]
    assert _reaches(store, "52.216.0.1")
    for address in [*INTERNAL, "::1", "fd00::1", "fe80::1"]:
        assert not _reaches(store, address), address
