"""libtalos.certcheck: pure-Python reading of certificates and keys, checked against cryptography.

The public key certcheck derives from a private key must equal the one cryptography reports,
for every supported type and encoding; malformed or unsupported material gets a message that
says what is wrong and never quotes the material.
"""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import sys
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from libtalos import certcheck, pki
from libtalos.errors import PKIError

PEM = serialization.Encoding.PEM
PKCS8 = serialization.PrivateFormat.PKCS8
TRADITIONAL = serialization.PrivateFormat.TraditionalOpenSSL
NONE = serialization.NoEncryption()
CURVES = [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()]


def _expected_public(
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey,
):
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return ("ed25519", raw)
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.public_key().public_numbers()
        return ("rsa", n.n, n.e)
    numbers = key.public_key().public_numbers()
    name = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
    return ("ecdsa", name, numbers.x, numbers.y)


def _keys() -> list[object]:
    keys: list[object] = [ed25519.Ed25519PrivateKey.generate() for _ in range(8)]
    keys += [ec.generate_private_key(curve) for curve in CURVES for _ in range(8)]
    keys += [ec.derive_private_key(d, curve) for curve in CURVES for d in (1, 2, 3)]
    keys += [rsa.generate_private_key(65537, 2048), rsa.generate_private_key(3, 2048)]
    return keys


@pytest.mark.parametrize("fmt", [PKCS8, TRADITIONAL], ids=["pkcs8", "traditional"])
def test_derived_public_keys_equal_cryptography(fmt: serialization.PrivateFormat) -> None:
    checked = 0
    for key in _keys():
        if isinstance(key, ed25519.Ed25519PrivateKey) and fmt is TRADITIONAL:
            continue  # Ed25519 has only PKCS#8
        pem = key.private_bytes(PEM, fmt, NONE)  # type: ignore[attr-defined]
        assert certcheck.read_private_key(pem).public == _expected_public(key)  # type: ignore[arg-type]
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa", "rsa"])
def test_pki_ca_passes_and_its_facts_agree(algorithm: pki.KeyAlgorithm) -> None:
    ca = pki.new_ca(algorithm=algorithm, rsa_bits=2048)
    assert certcheck.pair_problems(ca.crt, ca.key, ca=True, crt_name="ca.crt") == []
    cert = certcheck.read_certificate(ca.crt)
    assert cert.is_ca
    assert cert.public == certcheck.read_private_key(ca.key).public
    # Talos's label for Ed25519 keys, as pki writes it, is read too
    assert (b"ED25519 PRIVATE KEY" in ca.key) == (algorithm == "ed25519")


def test_leaf_is_not_a_ca_and_another_key_does_not_match() -> None:
    ca = pki.new_ca(algorithm="ecdsa")
    leaf = pki.issue(ca, kind="server")
    assert certcheck.read_certificate(leaf.crt).is_ca is False
    assert certcheck.pair_problems(leaf.crt, leaf.key, ca=True, crt_name="x.crt") == [
        ("crt", "not a CA certificate (BasicConstraints CA is not set)")
    ]
    assert certcheck.pair_problems(leaf.crt, leaf.key, ca=False, crt_name="x.crt") == []
    other = pki.new_ca(algorithm="ecdsa")
    assert certcheck.pair_problems(ca.crt, other.key, ca=True, crt_name="x.crt") == [
        ("key", "does not match x.crt (the public keys differ)")
    ]
    ed = pki.new_ca(algorithm="ed25519")  # another type: no match either
    assert certcheck.pair_problems(ca.crt, ed.key, ca=True, crt_name="x.crt") == [
        ("key", "does not match x.crt (the public keys differ)")
    ]


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).decode().replace("\n", "")
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()


def _self_signed(key: object, *, is_ca: bool | None = True) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "t")])
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if is_ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), True)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(PEM)  # type: ignore[arg-type]


def test_certificate_without_basic_constraints_is_not_a_ca() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    assert certcheck.read_certificate(_self_signed(key, is_ca=None)).is_ca is False
    assert certcheck.read_certificate(_self_signed(key, is_ca=True)).is_ca is True


CERT_CASES = [
    pytest.param(b"", "not a PEM certificate", id="empty"),
    pytest.param(b"hello", "not a PEM certificate", id="no-pem"),
    pytest.param(
        _pem("CERTIFICATE", b"garbage"),
        "not a PEM certificate (the CERTIFICATE block is not a valid X.509 certificate)",
        id="garbage-der",
    ),
    pytest.param(
        b"-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n",
        "not a PEM certificate (garbled PEM: the CERTIFICATE block is not valid base64)",
        id="garbled-base64",
    ),
    pytest.param(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n",
        "not a PEM certificate (truncated PEM: a BEGIN line has no matching END line)",
        id="truncated",
    ),
    pytest.param(
        _pem("PRIVATE KEY", b"x"),
        "not a PEM certificate (found PRIVATE KEY instead of CERTIFICATE)",
        id="wrong-label",
    ),
]


@pytest.mark.parametrize(("pem", "message"), CERT_CASES)
def test_bad_certificates(pem: bytes, message: str) -> None:
    with pytest.raises(PKIError) as info:
        certcheck.read_certificate(pem)
    assert info.value.message == message


def test_truncated_der_of_a_real_certificate_is_refused() -> None:
    der = x509.load_pem_x509_certificate(pki.new_ca().crt).public_bytes(serialization.Encoding.DER)
    for cut in (1, 10, len(der) // 2, len(der) - 1):
        with pytest.raises(PKIError, match="not a valid X.509 certificate"):
            certcheck.read_certificate(_pem("CERTIFICATE", der[:cut]))
    assert certcheck.read_certificate(_pem("CERTIFICATE", der)).is_ca  # negative control


def _tamper_ec_embedded_public(pem: bytes) -> bytes:
    """An EC PRIVATE KEY whose stored public key is another key's."""
    key = serialization.load_pem_private_key(pem, None)
    other = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, TRADITIONAL, NONE)
    mine = key.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    theirs = other.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert mine in der
    return _pem("EC PRIVATE KEY", der.replace(mine, theirs))


def _dsa_key() -> bytes:
    with warnings.catch_warnings():  # DSA is deprecated in cryptography: that is the point
        warnings.simplefilter("ignore")
        return dsa.generate_private_key(2048).private_bytes(PEM, PKCS8, NONE)


EC_KEY = ec.generate_private_key(ec.SECP256R1()).private_bytes(PEM, TRADITIONAL, NONE)
RSA_KEY = rsa.generate_private_key(65537, 2048)


def _rsa_with_wrong_modulus() -> bytes:
    numbers = RSA_KEY.private_numbers()
    n = numbers.public_numbers.n
    # PKCS#1 RSAPrivateKey by hand: version, n+2 (not p*q), e, d, p, q, dp, dq, qinv
    ints = [0, n + 2, 65537, numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1]
    ints.append(numbers.iqmp)

    def der_int(v: int) -> bytes:
        raw = v.to_bytes(v.bit_length() // 8 + 1, "big")
        return b"\x02" + _der_len(len(raw)) + raw

    body = b"".join(der_int(v) for v in ints)
    return _pem("RSA PRIVATE KEY", b"\x30" + _der_len(len(body)) + body)


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


KEY_CASES = [
    pytest.param(b"", "not a PEM private key", id="empty"),
    pytest.param(
        _pem("PRIVATE KEY", b"garbage"),
        "not a PEM private key (the PRIVATE KEY block is not a valid private key)",
        id="garbage-der",
    ),
    pytest.param(
        _pem("CERTIFICATE", b"x"),
        "not a PEM private key (found CERTIFICATE instead of PRIVATE KEY)",
        id="wrong-label",
    ),
    pytest.param(
        _pem("ENCRYPTED PRIVATE KEY", b"x"),
        "encrypted private keys are not supported",
        id="encrypted",
    ),
    pytest.param(
        _tamper_ec_embedded_public(EC_KEY),
        "not a PEM private key (the EC PRIVATE KEY block is not a valid private key)",
        id="ec-stored-public-key-of-another-key",
    ),
    pytest.param(
        _rsa_with_wrong_modulus(),
        "not a PEM private key (the RSA PRIVATE KEY block is not a valid private key)",
        id="rsa-inconsistent",
    ),
    pytest.param(
        _dsa_key(),
        "unsupported key type: DSA (expected Ed25519, ECDSA P-256, P-384 or P-521, or RSA)",
        id="dsa",
    ),
    pytest.param(
        ec.generate_private_key(ec.SECP256K1()).private_bytes(PEM, PKCS8, NONE),
        "unsupported key type: ECDSA on an unsupported curve "
        "(expected Ed25519, ECDSA P-256, P-384 or P-521, or RSA)",
        id="secp256k1",
    ),
]


@pytest.mark.parametrize(("pem", "message"), KEY_CASES)
def test_bad_keys(pem: bytes, message: str) -> None:
    assert certcheck.key_problem(pem) == message


def test_key_problem_negative_control_and_allowed_types() -> None:
    assert certcheck.key_problem(EC_KEY) is None
    assert certcheck.key_problem(EC_KEY, allowed=("ecdsa", "rsa")) is None
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(PEM, PKCS8, NONE)
    assert certcheck.key_problem(ed, allowed=("ecdsa", "rsa")) == (
        "unsupported key type: Ed25519 (expected ECDSA or RSA)"
    )


def test_unsupported_certificate_key_type() -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    crt = _self_signed(key)
    assert certcheck.pair_problems(crt, None, ca=True, crt_name="x.crt") == [
        (
            "crt",
            "unsupported key type: ECDSA on an unsupported curve "
            "(expected Ed25519, ECDSA P-256, P-384 or P-521, or RSA)",
        )
    ]


def test_no_material_in_messages_or_repr() -> None:
    ca = pki.new_ca(algorithm="ecdsa")
    other = pki.new_ca(algorithm="ecdsa")
    body = b"".join(other.key.splitlines()[1:-1])
    problems = certcheck.pair_problems(ca.crt, other.key, ca=True, crt_name="x.crt")
    for _, message in problems:
        assert body[:16].decode() not in message
    facts = certcheck.read_private_key(other.key)
    assert "public" not in repr(facts) and "ecdsa P-256" in repr(facts)
    block = certcheck.pem_blocks(other.key, "k")[0]
    assert repr(block) == f"PemBlock(label='EC PRIVATE KEY', der=<{len(block.der)} bytes>)"


def test_importing_the_checks_does_not_load_cryptography() -> None:
    code = (
        "import sys; import libtalos.certcheck, libtalos.config, libtalos.secrets; "
        "print(any(m.startswith('cryptography') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
