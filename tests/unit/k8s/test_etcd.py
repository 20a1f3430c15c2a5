"""etcd certificates (judged by openssl) and the etcd 3.4 command line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from libtalos import pki
from libtalos.errors import ExitCode, PKIError, TalosError
from libtalos.k8s.etcd import (
    DENIED_EXTRA_ARGS,
    EtcdArgs,
    etcd_command,
    issue_etcd_certs,
)
from libtalos.secrets import SecretsBundle


def _flags(argv: list[str]) -> dict[str, str]:
    out = {}
    for arg in argv[1:]:
        assert arg.startswith("--"), arg
        key, _, value = arg[2:].partition("=")
        assert key not in out, f"duplicate flag {key}"
        out[key] = value
    return out


def _verify(
    openssl: str, tmp: Path, ca: bytes, leaf: bytes, purpose: str
) -> subprocess.CompletedProcess[str]:
    (tmp / "ca.pem").write_bytes(ca)
    (tmp / "leaf.pem").write_bytes(leaf)
    return subprocess.run(
        [
            openssl,
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            str(tmp / "ca.pem"),
            str(tmp / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_certs_chain_to_the_etcd_ca(bundle: SecretsBundle, openssl: str, tmp_path: Path) -> None:
    certs = issue_etcd_certs(
        bundle.etcd_ca, hostname="demo-master-1", ips=["10.5.0.2"], dns_names=["m1.example"]
    )
    for pair, purpose in (
        (certs.server, "sslserver"),
        (certs.peer, "sslserver"),
        (certs.peer, "sslclient"),
        (certs.client, "sslclient"),
    ):
        done = _verify(openssl, tmp_path, bundle.etcd_ca.crt, pair.crt, purpose)
        assert done.returncode == 0, done.stdout + done.stderr
        pki.check_key_matches(pair.crt, pair.key)
    # negative control: the same certificate does not chain to the Kubernetes CA
    wrong = _verify(openssl, tmp_path, bundle.kubernetes_ca.crt, certs.server.crt, "sslserver")
    assert wrong.returncode != 0
    # the client certificate is not a server certificate
    assert (
        _verify(openssl, tmp_path, bundle.etcd_ca.crt, certs.client.crt, "sslserver").returncode
        != 0
    )


def test_cert_names(bundle: SecretsBundle) -> None:
    certs = issue_etcd_certs(
        bundle.etcd_ca,
        hostname="demo-master-1",
        ips=["10.5.0.2", "fd00::2"],
        dns_names=["m1.example"],
    )
    server = x509.load_pem_x509_certificate(certs.server.crt)
    peer = x509.load_pem_x509_certificate(certs.peer.crt)
    for cert in (server, peer):
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == "demo-master-1"
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        years = (cert.not_valid_after_utc - cert.not_valid_before_utc).days / 365
        assert 9.9 < years < 10.1
    san = peer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["demo-master-1", "m1.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.5.0.2", "fd00::2"]
    ssan = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in ssan.get_values_for_type(x509.DNSName)
    assert {"127.0.0.1", "::1", "10.5.0.2"} <= {
        str(i) for i in ssan.get_values_for_type(x509.IPAddress)
    }
    client = x509.load_pem_x509_certificate(certs.client.crt)
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    files = certs.files()
    assert {k for k, (_, mode) in files.items() if mode == 0o600} == {
        "server.key",
        "peer.key",
        "client.key",
    }


def test_cert_input_errors(bundle: SecretsBundle) -> None:
    with pytest.raises(TalosError, match="not an IP address"):
        issue_etcd_certs(bundle.etcd_ca, hostname="n", ips=["10.5.0.300"])
    with pytest.raises(TalosError, match="hostname"):
        issue_etcd_certs(bundle.etcd_ca, hostname="", ips=["10.5.0.2"])
    no_key = type(bundle.etcd_ca)(bundle.etcd_ca.crt, b"")
    with pytest.raises(PKIError, match="cluster.etcd.ca: the private key is missing"):
        issue_etcd_certs(no_key, hostname="n", ips=["10.5.0.2"])


def test_new_cluster_command() -> None:
    argv = etcd_command(EtcdArgs(name="demo-master-1", advertise_ip="10.5.0.2"))
    assert argv[0] == "/usr/bin/etcd"
    flags = _flags(argv)
    assert flags["initial-cluster-state"] == "new"
    assert flags["initial-cluster"] == "demo-master-1=https://10.5.0.2:2380"
    assert flags["listen-peer-urls"] == "https://0.0.0.0:2380"
    assert flags["listen-client-urls"] == "https://0.0.0.0:2379"
    assert flags["advertise-client-urls"] == "https://10.5.0.2:2379"
    assert flags["initial-advertise-peer-urls"] == "https://10.5.0.2:2380"
    assert flags["client-cert-auth"] == flags["peer-client-cert-auth"] == "true"
    assert (
        flags["peer-trusted-ca-file"] == flags["trusted-ca-file"] == "/system/secrets/etcd/ca.crt"
    )
    assert flags["data-dir"] == "/var/lib/etcd"


def test_existing_cluster_command() -> None:
    members = {
        "demo-master-1": ["https://10.5.0.2:2380"],
        "demo-master-2": ["https://10.5.0.3:2380"],
    }
    flags = _flags(
        etcd_command(
            EtcdArgs(
                name="demo-master-2",
                advertise_ip="10.5.0.3",
                state="existing",
                initial_cluster=members,
                extra_args={"election-timeout": "5000"},
            )
        )
    )
    assert flags["initial-cluster-state"] == "existing"
    assert flags["initial-cluster"] == (
        "demo-master-1=https://10.5.0.2:2380,demo-master-2=https://10.5.0.3:2380"
    )
    assert flags["election-timeout"] == "5000"


def test_ipv6_listens_on_all_v6() -> None:
    flags = _flags(etcd_command(EtcdArgs(name="n", advertise_ip="fd00::2")))
    assert flags["listen-peer-urls"] == "https://[::]:2380"
    assert flags["initial-cluster"] == "n=https://[fd00::2]:2380"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (EtcdArgs(name="n", advertise_ip="10.5.0.2", state="existing"), "this member"),
        (
            EtcdArgs(
                name="n",
                advertise_ip="10.5.0.2",
                initial_cluster={"other": ["https://10.5.0.9:2380"]},
            ),
            "new cluster starts with this member only",
        ),
        (EtcdArgs(name="n", advertise_ip="nope"), "'nope' is not an IP address"),
        (EtcdArgs(name="", advertise_ip="10.5.0.2"), "member name is empty"),
        (
            EtcdArgs(name="n", advertise_ip="10.5.0.2", extra_args={"data-dir": "/x", "name": "y"}),
            "cluster.etcd.extraArgs: data-dir, name: set by Talos",
        ),
        (EtcdArgs(name="n", advertise_ip="10.5.0.2", state="bogus"), "'bogus' is not 'new'"),  # type: ignore[arg-type]
    ],
)
def test_command_errors(args: EtcdArgs, message: str) -> None:
    with pytest.raises(TalosError, match=message) as info:
        etcd_command(args)
    assert info.value.exit_code == ExitCode.FAILURE  # bad input data, not a bad command line


def test_every_denied_flag_is_one_we_set() -> None:
    flags = _flags(etcd_command(EtcdArgs(name="n", advertise_ip="10.5.0.2")))
    assert set(flags) >= DENIED_EXTRA_ARGS
