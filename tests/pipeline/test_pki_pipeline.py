"""talos-pki through its installed console script, chained with pipes and judged by openssl."""

from __future__ import annotations

import base64
import hashlib
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.pipeline


def test_ca_issue_verify_fingerprint_pipeline(run_script, openssl: str, tmp_path: Path) -> None:
    ca = run_script(
        "talos-pki", "ca", "--algorithm", "ed25519", "--organization", "talos", check=True
    )
    leaf = run_script(
        "talos-pki",
        "issue",
        "--ca",
        "-",
        "--kind",
        "server",
        "--cn",
        "node1",
        "--ip",
        "10.5.0.2",
        "--dns",
        "node1",
        stdin=ca.stdout,
        check=True,
    )
    (tmp_path / "ca.yaml").write_text(ca.stdout)
    verified = run_script(
        "talos-pki", "verify", "--ca", str(tmp_path / "ca.yaml"), "-", stdin=leaf.stdout
    )
    assert (verified.returncode, verified.stdout) == (0, "<stdin>: OK\n"), verified.stderr

    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(base64.b64decode(yaml.safe_load(ca.stdout)["crt"]))
    leaf_pem = tmp_path / "leaf.pem"
    leaf_pem.write_bytes(base64.b64decode(yaml.safe_load(leaf.stdout)["crt"]))
    check = subprocess.run(
        [openssl, "verify", "-purpose", "sslserver", "-CAfile", str(ca_pem), str(leaf_pem)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr

    pub = subprocess.run(
        [openssl, "x509", "-pubkey", "-noout", "-in", str(leaf_pem)],
        capture_output=True,
        check=True,
    )
    der = subprocess.run(
        [openssl, "pkey", "-pubin", "-outform", "DER"],
        input=pub.stdout,
        capture_output=True,
        check=True,
    )
    expected = base64.b64encode(hashlib.sha256(der.stdout).digest()).decode() + "\n"
    assert run_script("talos-pki", "fingerprint", str(leaf_pem)).stdout == expected
    assert run_script("talos-pki", "fingerprint", "-", stdin=leaf.stdout).stdout == expected
    other = run_script("talos-pki", "fingerprint", str(ca_pem)).stdout
    assert other != expected  # negative control


def test_secrets_file_inspect_and_kubeconfig_cert(run_script, tmp_path: Path) -> None:
    bundle = tmp_path / "secrets.yaml"
    result = run_script("talos-pki", "secrets", "-o", str(bundle))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    again = run_script("talos-pki", "secrets", "-o", str(bundle))
    assert again.returncode == 1 and "file exists" in again.stderr
    inspected = run_script("talos-pki", "inspect", str(bundle), "--check", "--within", "3650d")
    assert inspected.returncode == 1  # 10-year CAs expire within 3650 days + leap days
    data = yaml.safe_load(inspected.stdout)
    assert data["certs.os.crt"]["keyAlgorithm"] == "Ed25519"
    assert (
        run_script("talos-pki", "inspect", str(bundle), "--check", "--within", "30d").returncode
        == 0
    )
    cert = run_script("talos-pki", "kubeconfig-cert", "--ca", str(bundle), check=True)
    info = run_script("talos-pki", "inspect", "-", stdin=cert.stdout, check=True)
    assert yaml.safe_load(info.stdout)["crt"]["subject"] == "CN=admin,O=system:masters"
    certs = yaml.safe_load(bundle.read_text())["certs"]
    k8s, etcd = tmp_path / "k8s.pem", tmp_path / "etcd.pem"
    k8s.write_bytes(base64.b64decode(certs["k8s"]["crt"]))
    etcd.write_bytes(base64.b64decode(certs["etcd"]["crt"]))
    ok = run_script("talos-pki", "verify", "--ca", str(k8s), "-", stdin=cert.stdout)
    assert ok.returncode == 0, ok.stderr
    wrong = run_script("talos-pki", "verify", "--ca", str(etcd), "-", stdin=cert.stdout)
    assert (wrong.returncode, wrong.stdout) == (1, "")
    assert wrong.stderr == f"error: <stdin>: not signed by {etcd} (wrong CA?)\n"
    # A whole bundle is a pool of CAs: the Kubernetes CA in it signed the certificate.
    pool = run_script("talos-pki", "verify", "--ca", str(bundle), "-", stdin=cert.stdout)
    assert pool.returncode == 0, pool.stderr


def test_exit_codes_through_the_console_script(run_script, tmp_path: Path) -> None:
    usage = run_script("talos-pki", "ca", "--no-such-flag")
    assert (usage.returncode, usage.stdout) == (2, "")
    assert "No such option" in usage.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nMIIBfjCCASOgAwIBAgIQ\n")
    failed = run_script("talos-pki", "fingerprint", str(garbage))
    assert (failed.returncode, failed.stdout) == (1, "")
    assert (
        failed.stderr == f"error: {garbage}: truncated PEM: the CERTIFICATE block has no END line\n"
    )
    version = run_script("talos-pki", "--version")
    assert (version.returncode, version.stdout) == (0, "talos-pki 0.1.0\n")


def test_bad_option_values_through_the_console_script(run_script) -> None:
    """Usage errors name the option and exit 2 with nothing on stdout; the values that fit
    pass through the pipe (an IDNA name comes out as its A-label)."""
    ca = run_script("talos-pki", "ca", "--algorithm", "ed25519", "--organization", "t", check=True)
    for argv in (
        ["ca", "--organization", "t", "--ttl", "8000y"],
        ["issue", "--ca", "-", "--ttl", "8000y"],
        ["kubeconfig-cert", "--ca", "-", "--ttl", "8000y"],
        ["issue", "--ca", "-", "--cn", "c" * 100],
        ["issue", "--ca", "-", "--dns", "a b.example"],
    ):
        result = run_script("talos-pki", *argv, stdin=ca.stdout)
        option = next(a for a in reversed(argv) if a.startswith("--"))
        assert (result.returncode, result.stdout) == (2, ""), (argv, result.stderr)
        assert result.stderr.startswith(f"error: {option}: "), (argv, result.stderr)
    leaf = run_script(
        "talos-pki",
        "issue",
        "--ca",
        "-",
        "--cn",
        "c" * 64,
        "--dns",
        "ü.example",
        "--ttl",
        "7000y",
        stdin=ca.stdout,
        check=True,
    )
    info = yaml.safe_load(run_script("talos-pki", "inspect", "-", stdin=leaf.stdout).stdout)
    assert info["crt"]["dnsNames"] == ["xn--tda.example"]
