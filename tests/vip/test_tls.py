"""talos-vip against an etcd that requires client certificates (made by the real openssl CLI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import viplab as vlab

pytestmark = [pytest.mark.system, pytest.mark.etcd]

TALOS_VIP = str(Path(sys.executable).with_name("talos-vip"))
VIP = "10.66.0.100"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _leaf(d: Path, name: str, ext: str) -> None:
    _openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(d / f"{name}.key"),
        "-out",
        str(d / f"{name}.csr"),
        "-subj",
        f"/CN={name}",
    )
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        "x509",
        "-req",
        "-in",
        str(d / f"{name}.csr"),
        "-CA",
        str(d / "ca.crt"),
        "-CAkey",
        str(d / "ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        str(d / f"{name}.crt"),
        "-extfile",
        str(d / f"{name}.ext"),
    )


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(tmp_path / "ca.key"),
        "-out",
        str(tmp_path / "ca.crt"),
        "-days",
        "1",
        "-subj",
        "/CN=etcd-ca",
    )
    # etcd's JSON gateway dials etcd itself with the server certificate: it needs clientAuth too.
    _leaf(
        tmp_path,
        "server",
        f"subjectAltName=IP:{vlab.ETCD_IP}\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    _leaf(tmp_path, "client", "extendedKeyUsage=clientAuth\n")
    for key in tmp_path.glob("*.key"):
        key.chmod(0o600)
    return {
        "ca": str(tmp_path / "ca.crt"),
        "cert": str(tmp_path / "server.crt"),
        "key": str(tmp_path / "server.key"),
        "client_cert": str(tmp_path / "client.crt"),
        "client_key": str(tmp_path / "client.key"),
    }


@pytest.fixture
def tls_lab(netns_capable: None, etcd_capable: None, pki: dict[str, str]) -> Iterator[vlab.Lab]:
    with vlab.Lab(1, etcd_tls=pki) as lab:
        yield lab


def _status(lab: vlab.Lab, *tls: str) -> subprocess.CompletedProcess[str]:
    node = lab.nodes[0]
    return subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            node.netns,
            TALOS_VIP,
            "status",
            "--vip",
            VIP,
            "--etcd-endpoints",
            lab.etcd_endpoint,
            "--node-name",
            node.name,
            *tls,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_and_status_with_client_certificates(tls_lab: vlab.Lab, pki: dict[str, str]) -> None:
    tls = [
        "--etcd-ca",
        pki["ca"],
        "--etcd-cert",
        pki["client_cert"],
        "--etcd-key",
        pki["client_key"],
    ]
    node = tls_lab.nodes[0]
    tls_lab.spawn(
        node,
        [
            TALOS_VIP,
            "run",
            "--interface",
            "eth0",
            "--vip",
            VIP,
            "--etcd-endpoints",
            tls_lab.etcd_endpoint,
            "--node-name",
            node.name,
            *tls,
        ],
        log_name="node1",
    )
    sampler = vlab.Sampler({node.name: node.netns}, VIP)
    try:
        vlab.wait_for(lambda: sampler.holders() == (node.name,), 30, "the VIP over TLS etcd")
    finally:
        sampler.close()
    done = _status(tls_lab, *tls)
    assert done.returncode == 0, done.stderr
    assert "holder: node1" in done.stdout and "state: leader" in done.stdout


def test_without_client_certificate_is_refused(tls_lab: vlab.Lab, pki: dict[str, str]) -> None:
    """Negative control: the etcd really demands a client certificate."""
    done = _status(tls_lab, "--etcd-ca", pki["ca"])
    assert done.returncode == 1
    assert done.stdout == ""
    assert f"etcd https://{vlab.ETCD_IP}:2379: kv/range:" in done.stderr


def test_bad_tls_files_are_named_not_quoted(
    tls_lab: vlab.Lab, pki: dict[str, str], tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.key"
    bogus.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n")
    done = _status(
        tls_lab, "--etcd-ca", pki["ca"], "--etcd-cert", pki["client_cert"], "--etcd-key", str(bogus)
    )
    assert done.returncode == 1
    assert str(bogus) in done.stderr
    assert "c2VjcmV0" not in done.stderr and "Traceback" not in done.stderr
    missing = _status(tls_lab, "--etcd-ca", str(tmp_path / "nope.crt"))
    assert missing.returncode == 1 and "nope.crt" in missing.stderr
