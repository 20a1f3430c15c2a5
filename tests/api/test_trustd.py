"""trustd: a worker gets its API certificate with machine.token, then serves mutual TLS with it."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from cryptography import x509

from libtalos import pki
from libtalos.errors import NetworkError
from talos_apply.cli import main
from talos_init.api import ApiServer
from talos_init.api.memory import MemoryNode
from talos_init.api.trustd import TrustdServer, worker_certificate

from .conftest import ServerThread


@pytest.fixture
def trustd(servers, cluster):
    token = "abcdef.0123456789abcdef"
    s = ServerThread(lambda: TrustdServer(cluster.bundle.talos_ca, token, ["127.0.0.1"], "cp"))
    servers.append(s)
    return s, token


def test_worker_certificate_then_mtls(trustd, cluster, servers, talosconfig_for, capsys):
    s, token = trustd
    cert, ca = asyncio.run(
        worker_certificate([s.endpoint], token, ["127.0.0.1"], "worker-1", ["w1.example"])
    )
    assert ca == cluster.bundle.talos_ca.crt
    leaf = pki.load_certificate(cert.crt)
    leaf.verify_directly_issued_by(pki.load_certificate(ca))
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert set(sans.get_values_for_type(x509.DNSName)) == {"worker-1", "w1.example"}
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() == 24 * 3600

    worker = ServerThread(
        lambda: ApiServer.configured(
            MemoryNode("worker-1", config_text=cluster.configs["join"]), cert, ca
        )
    )
    servers.append(worker)
    tc = talosconfig_for([worker.endpoint], [worker.endpoint])
    assert main(["--talosconfig", str(tc), "version"]) == 0
    assert worker.endpoint in capsys.readouterr().out


def test_wrong_token_refused(trustd):
    s, _token = trustd
    with pytest.raises(NetworkError, match="PERMISSION_DENIED"):
        asyncio.run(worker_certificate([s.endpoint], "wrong.token", ["127.0.0.1"], "w"))
