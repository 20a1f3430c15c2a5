"""``talosctl gen ca|key|csr|crt|keypair`` (talos-pki gen): real PEM files, checked by openssl.

Run in-process through ``talosctl``'s ``main(argv)`` (the route to talos-pki) in a temporary
working directory, as a user runs them; openssl is the independent judge of the files.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from talosctl.cli import main


@pytest.fixture
def talosctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run ``talosctl ARGS`` in tmp_path; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def ossl(openssl: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([openssl, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_key_csr_crt_chain_verifies_with_openssl(talosctl: Any, tmp_path: Path, openssl: str):
    assert talosctl("gen", "ca", "--organization", "talos") == (0, "", "")
    assert talosctl("gen", "key", "--name", "node") == (0, "", "")
    assert talosctl("gen", "csr", "--key", "node.key", "--ip", "10.5.0.2") == (0, "", "")
    code, out, err = talosctl("gen", "crt", "--ca", "talos", "--csr", "node.csr", "--name", "node")
    assert (code, out, err) == (0, "", "")
    names = ["node.crt", "node.csr", "node.key", "talos.crt", "talos.key", "talos.sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert all(mode(tmp_path / n) == 0o600 for n in names)  # talosctl writes each 0600

    ca_text = ossl(openssl, "x509", "-in", "talos.crt", "-noout", "-text", cwd=tmp_path)
    assert ca_text.returncode == 0, ca_text.stderr
    assert "CA:TRUE" in ca_text.stdout and "ED25519" in ca_text.stdout
    req = ossl(openssl, "req", "-in", "node.csr", "-verify", "-noout", "-text", cwd=tmp_path)
    assert req.returncode == 0, req.stderr
    assert "IP Address:10.5.0.2" in req.stdout
    verified = ossl(openssl, "verify", "-CAfile", "talos.crt", "node.crt", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert "node.crt: OK" in verified.stdout

    leaf, ca = cert(tmp_path / "node.crt"), cert(tmp_path / "talos.crt")
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "talos"
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == dt.timedelta(hours=87600)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(hours=24)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):  # talosctl's leaf has no BasicConstraints
        leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert isinstance(leaf.public_key(), ed25519.Ed25519PublicKey)
    assert (tmp_path / "node.key").read_bytes().startswith(b"-----BEGIN ED25519 PRIVATE KEY-----")
    assert (tmp_path / "talos.sha256").read_text().startswith("sha256:")
    assert len((tmp_path / "talos.sha256").read_text()) == len("sha256:") + 64


def test_a_certificate_from_another_ca_does_not_verify(talosctl: Any, tmp_path: Path, openssl: str):
    """Negative control for the openssl verification above."""
    assert talosctl("gen", "ca", "--organization", "one")[0] == 0
    assert talosctl("gen", "ca", "--organization", "two")[0] == 0
    assert talosctl("gen", "key", "--name", "n")[0] == 0
    assert talosctl("gen", "csr", "--key", "n.key", "--ip", "10.0.0.1")[0] == 0
    assert talosctl("gen", "crt", "--ca", "one.crt", "--csr", "n.csr", "--name", "n")[0] == 0
    assert ossl(openssl, "verify", "-CAfile", "one.crt", "n.crt", cwd=tmp_path).returncode == 0
    assert ossl(openssl, "verify", "-CAfile", "two.crt", "n.crt", cwd=tmp_path).returncode != 0


def test_rsa_ca_hours_and_keypair_with_ip(talosctl: Any, tmp_path: Path, openssl: str):
    assert talosctl("gen", "ca", "--organization", "big", "--rsa", "--hours", "48")[0] == 0
    ca = cert(tmp_path / "big.crt")
    public = ca.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 4096
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == dt.timedelta(hours=48)
    # an RSA CA signs here (talosctl's gen crt reads PKCS#8 CA keys only)
    assert talosctl("gen", "key", "--name", "n")[0] == 0
    assert talosctl("gen", "csr", "--key", "n.key", "--ip", "fd00::1")[0] == 0
    assert talosctl("gen", "crt", "--ca", "big", "--csr", "n.csr", "--name", "n")[0] == 0
    assert ossl(openssl, "verify", "-CAfile", "big.crt", "n.crt", cwd=tmp_path).returncode == 0

    assert talosctl("gen", "keypair", "--organization", "kp", "--ip", "10.5.0.9")[0] == 0
    assert sorted(p.name for p in tmp_path.glob("kp.*")) == ["kp.crt", "kp.key"]
    pair = cert(tmp_path / "kp.crt")
    sans = pair.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.5.0.9"]
    assert pair.not_valid_after_utc - pair.not_valid_before_utc == dt.timedelta(hours=24)
    text = ossl(openssl, "x509", "-in", "kp.crt", "-noout", "-text", cwd=tmp_path)
    assert text.returncode == 0 and "IP Address:10.5.0.9" in text.stdout


def test_existing_files_are_replaced_with_mode_0600(talosctl: Any, tmp_path: Path):
    """As talosctl does, an existing file is overwritten; unlike it, the mode is reset to 0600."""
    (tmp_path / "n.key").write_text("old\n")
    os.chmod(tmp_path / "n.key", 0o644)
    assert talosctl("gen", "key", "--name", "n")[0] == 0
    assert (tmp_path / "n.key").read_bytes().startswith(b"-----BEGIN ED25519 PRIVATE KEY-----")
    assert mode(tmp_path / "n.key") == 0o600


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["gen", "ca"], 2, "--organization"),
        (["gen", "ca", "--organization", ""], 2, "--organization"),
        (["gen", "ca", "--organization", "o", "--hours", "0"], 2, "--hours"),
        (["gen", "ca", "--organization", "o", "--hours", "ten"], 2, "--hours"),
        (["gen", "ca", "--organization", "o", "--hours", "99999999999"], 2, "--hours"),
        (["gen", "key"], 2, "--name"),
        (["gen", "csr", "--key", "missing.key", "--ip", "10.0.0.1"], 1, "missing.key"),
        (["gen", "csr", "--key", "k.key", "--ip", "not-an-ip"], 2, "--ip"),
        (["gen", "csr", "--key", "k.key"], 2, "--ip"),
        (["gen", "crt", "--ca", "nosuch", "--csr", "x.csr", "--name", "x"], 1, "nosuch.crt"),
        (["gen", "keypair", "--organization", "o", "--ip", "300.1.1.1"], 2, "--ip"),
    ],
)
def test_bad_input_is_named_with_its_exit_code(
    talosctl: Any, tmp_path: Path, argv: list[str], code: int, message: str
):
    (tmp_path / "k.key").write_text("")
    got, out, err = talosctl(*argv)
    assert got == code
    assert message in err
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.key"]  # nothing written


def test_bad_pem_inputs_fail_with_exit_1(talosctl: Any, tmp_path: Path):
    (tmp_path / "k.key").write_text("not a key\n")
    code, _, err = talosctl("gen", "csr", "--key", "k.key", "--ip", "10.0.0.1")
    assert code == 1 and "--key k.key" in err
    assert talosctl("gen", "ca", "--organization", "ca")[0] == 0
    assert talosctl("gen", "key", "--name", "n")[0] == 0
    assert talosctl("gen", "csr", "--key", "n.key", "--ip", "10.0.0.1")[0] == 0
    tampered = bytearray((tmp_path / "n.csr").read_bytes())
    body = tampered.index(b"\n") + 60  # a character inside the base64 body
    tampered[body] = ord("A") if tampered[body] != ord("A") else ord("B")
    (tmp_path / "bad.csr").write_bytes(bytes(tampered))
    code, _, err = talosctl("gen", "crt", "--ca", "ca", "--csr", "bad.csr", "--name", "x")
    assert code == 1 and "--csr bad.csr" in err
    assert not (tmp_path / "x.crt").exists()
    # a leaf is not a CA: it cannot sign
    assert talosctl("gen", "crt", "--ca", "ca", "--csr", "n.csr", "--name", "n")[0] == 0
    code, _, err = talosctl("gen", "crt", "--ca", "n", "--csr", "n.csr", "--name", "y")
    assert code == 1 and "--ca n.crt" in err and "not a CA" in err
    assert not (tmp_path / "y.crt").exists()
