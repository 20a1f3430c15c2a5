"""libtalos.spki, the stdlib-only DER walker, against cryptography's SPKI encoding."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from libtalos import pki, spki
from libtalos.errors import PKIError

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def reference(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
def certs() -> dict[str, bytes]:
    clock = pki.FixedClock(T0)
    ecdsa = pki.new_ca(organizations=["e"], clock=clock)
    ed = pki.new_ca(algorithm="ed25519", organizations=["talos"], clock=clock)
    rsa2048 = pki.new_ca(algorithm="rsa", organizations=["r"], clock=clock, rsa_bits=2048)
    return {
        "ecdsa": ecdsa.crt,
        "ed25519": ed.crt,
        "rsa": rsa2048.crt,
        "leaf": pki.issue(ed, dns_names=["a" * 300], ip_addresses=["127.0.0.1"], clock=clock).crt,
    }


def test_walker_equals_cryptography(certs: dict[str, bytes]) -> None:
    seen = set()
    for name, pem in certs.items():
        fp = spki.fingerprint(pem)
        assert fp == reference(pem) == pki.spki_fingerprint(pem), name
        assert len(fp) == 44
        der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
        assert spki.digest(der) == base64.b64decode(fp), name  # the raw --cert-fingerprint pin
        seen.add(fp)
    assert len(seen) == len(certs)  # negative control: different keys, different fingerprints


def test_accepted_input_shapes(certs: dict[str, bytes]) -> None:
    pem = certs["ecdsa"]
    b64 = base64.b64encode(pem)
    expected = reference(pem)
    assert spki.fingerprint(b64) == expected
    assert spki.fingerprint(b64 + b"\n") == expected
    assert (
        spki.fingerprint(b"crt: " + b64 + b"\nkey: " + base64.b64encode(b"x") + b"\n") == expected
    )
    assert spki.fingerprint(b"junk before\n" + pem + certs["rsa"]) == expected  # first block


def test_walker_rejects_broken_der(certs: dict[str, bytes]) -> None:
    der = x509.load_pem_x509_certificate(certs["ecdsa"]).public_bytes(serialization.Encoding.DER)
    assert spki.spki_der(der)  # control: the intact certificate walks
    for cut in (1, 5, len(der) // 2, len(der) - 1):
        with pytest.raises(PKIError, match="truncated certificate|not a certificate"):
            spki.spki_der(der[:cut])
    with pytest.raises(PKIError, match="trailing bytes"):
        spki.spki_der(der + b"\x00")
    with pytest.raises(PKIError, match="not a SEQUENCE"):
        spki.spki_der(b"\x04\x03abc")


def test_pem_errors(certs: dict[str, bytes]) -> None:
    pem = certs["ecdsa"]
    with pytest.raises(PKIError, match="x.pem: truncated PEM"):
        spki.fingerprint(pem[: len(pem) // 2], "x.pem")
    lines = pem.splitlines()
    with pytest.raises(PKIError, match="garbled PEM"):
        spki.fingerprint(pem.replace(lines[1], b"*" + lines[1][1:]), "x.pem")
    with pytest.raises(PKIError, match="neither a PEM certificate nor base64"):
        spki.fingerprint(b"hello world", "x.pem")
    with pytest.raises(PKIError, match="does not hold a PEM certificate"):
        spki.fingerprint(base64.b64encode(b"plain"), "x.pem")
    key = pki.new_ca(organizations=["k"]).key
    with pytest.raises(PKIError, match="no CERTIFICATE block"):
        spki.fingerprint(key, "x.pem")
