"""libtalos.pki: what Talos v0.9 produces (docs/talos-facts.md#pki, #tokens), judged by cryptography
and by the real openssl CLI."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from libtalos import pki
from libtalos.errors import PKIError
from libtalos.secrets import TOKEN_RE, CertKey, SecretsBundle, load_bundle

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> pki.FixedClock:
    return pki.FixedClock(T0)


@pytest.fixture
def rng() -> pki.DeterministicRandom:
    return pki.DeterministicRandom(b"unit")


@pytest.fixture(scope="session")
def bundle_v09() -> SecretsBundle:
    return pki.generate_secrets("", pki.FixedClock(T0), pki.DeterministicRandom(b"v0.9"))


@pytest.fixture(scope="session")
def bundle_v08() -> SecretsBundle:
    # Two RSA-4096 key generations: made once per session.
    return pki.generate_secrets("v0.8", pki.FixedClock(T0), pki.DeterministicRandom(b"v0.8"))


class OpenSSL:
    """The real openssl CLI, used as the independent judge of what we produce."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._n = 0

    def file(self, data: bytes) -> Path:
        self._n += 1
        path = self.workdir / f"f{self._n}.pem"
        path.write_bytes(data)
        return path

    def run(
        self, *args: str | Path, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["openssl", *map(str, args)], input=stdin, capture_output=True)

    def verify(
        self, ca: bytes, cert: bytes, at: dt.datetime = T0
    ) -> subprocess.CompletedProcess[bytes]:
        at_epoch = int((at + dt.timedelta(minutes=1)).timestamp())
        return self.run(
            "verify", "-attime", str(at_epoch), "-CAfile", self.file(ca), self.file(cert)
        )

    def text(self, cert: bytes) -> str:
        result = self.run("x509", "-noout", "-text", "-in", self.file(cert))
        assert result.returncode == 0, result.stderr
        return result.stdout.decode()


@pytest.fixture
def ossl(tmp_path: Path) -> OpenSSL:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed (apt package openssl)")
    return OpenSSL(tmp_path)


TEN_YEARS = dt.timedelta(hours=87600)


def cert_of(pair: CertKey) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair.crt)


def subject(cert: x509.Certificate) -> list[tuple[str, str]]:
    names = {NameOID.ORGANIZATION_NAME: "O", NameOID.COMMON_NAME: "CN"}
    return [(names[a.oid], str(a.value)) for a in cert.subject]


def eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


BOTH = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


# --------------------------------------------------------------------------- CAs


def assert_talos_ca(cert: x509.Certificate) -> None:
    assert cert.issuer == cert.subject
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.value.ca and bc.critical
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.digital_signature
    assert not ku.key_encipherment and not ku.crl_sign
    assert eku(cert) == BOTH
    assert 0 < cert.serial_number < 2**128
    assert cert.not_valid_before_utc == T0
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == TEN_YEARS


def test_bundle_v09_matches_talos(bundle_v09: SecretsBundle, ossl: OpenSSL) -> None:
    b = bundle_v09
    expected = {
        "talos": (b.talos_ca, [("O", "talos")], ed25519.Ed25519PublicKey, "ED25519"),
        "k8s": (b.kubernetes_ca, [("O", "kubernetes")], ec.EllipticCurvePublicKey, "SHA512"),
        "etcd": (b.etcd_ca, [("O", "etcd")], ec.EllipticCurvePublicKey, "SHA512"),
    }
    assert b.aggregator_ca is not None
    expected["aggregator"] = (
        b.aggregator_ca,
        [("O", ""), ("CN", "front-proxy")],
        ec.EllipticCurvePublicKey,
        "SHA512",
    )
    for name, (pair, subj, key_type, sig) in expected.items():
        cert = cert_of(pair)
        assert_talos_ca(cert)
        assert subject(cert) == subj, name
        assert isinstance(cert.public_key(), key_type), name
        if key_type is ec.EllipticCurvePublicKey:
            assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
            assert isinstance(cert.signature_hash_algorithm, hashes.SHA512)
            assert pair.key.startswith(b"-----BEGIN EC PRIVATE KEY-----")
        else:
            assert pair.key.startswith(b"-----BEGIN ED25519 PRIVATE KEY-----")
        pki.check_key_matches(pair.crt, pair.key)
        result = ossl.verify(pair.crt, pair.crt)
        assert result.returncode == 0, (name, result.stderr)
        text = ossl.text(pair.crt)
        assert ("ecdsa-with-SHA512" if sig == "SHA512" else "ED25519") in text
    sa = serialization.load_pem_private_key(b.service_account_key or b"", None)
    assert isinstance(sa, ec.EllipticCurvePrivateKey) and sa.curve.name == "secp256r1"
    assert (b.service_account_key or b"").startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert TOKEN_RE.match(b.trustd_token) and TOKEN_RE.match(b.bootstrap_token)
    assert b.trustd_token != b.bootstrap_token
    assert len(b.aescbc_encryption_secret) == 44
    assert len(base64.b64decode(b.aescbc_encryption_secret, validate=True)) == 32


def test_bundle_v08_uses_rsa_4096(bundle_v08: SecretsBundle, ossl: OpenSSL) -> None:
    b = bundle_v08
    assert b.aggregator_ca is None and b.service_account_key is None
    for pair in (b.kubernetes_ca, b.etcd_ca):
        cert = cert_of(pair)
        assert_talos_ca(cert)
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA512)
        assert pair.key.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
        assert "sha512WithRSAEncryption" in ossl.text(pair.crt)
        assert ossl.verify(pair.crt, pair.crt).returncode == 0
    assert isinstance(cert_of(b.talos_ca).public_key(), ed25519.Ed25519PublicKey)


@pytest.mark.parametrize("fixture", ["bundle_v09", "bundle_v08"])
def test_bundle_round_trips_through_the_strict_loader(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    bundle: SecretsBundle = request.getfixturevalue(fixture)
    assert load_bundle(bundle.to_yaml()) == bundle


def test_unsupported_contract_is_an_error() -> None:
    with pytest.raises(PKIError, match="unsupported Talos version 'v0.7'"):
        pki.generate_secrets("v0.7")
    assert pki.parse_contract("v0.9.3") == "v0.9"
    assert pki.parse_contract("v0.8.4") == "v0.8"


def test_ca_options_hash_and_algorithms(clock: pki.Clock, rng: pki.Random, ossl: OpenSSL) -> None:
    sha256 = pki.new_ca(organizations=["x"], hash_name="sha256", clock=clock, rng=rng)
    assert isinstance(cert_of(sha256).signature_hash_algorithm, hashes.SHA256)
    assert "ecdsa-with-SHA256" in ossl.text(sha256.crt)
    ed = pki.new_ca(algorithm="ed25519", common_name="n", clock=clock, rng=rng)
    assert cert_of(ed).signature_hash_algorithm is None
    assert subject(cert_of(ed)) == [("CN", "n")]
    assert ossl.verify(ed.crt, ed.crt).returncode == 0
    with pytest.raises(PKIError, match="validity must be positive"):
        pki.new_ca(organizations=["x"], ttl=dt.timedelta(0))


def test_same_clock_and_rng_give_same_validity_and_serials() -> None:
    def make(seed: bytes) -> x509.Certificate:
        clock = pki.FixedClock(T0)
        return cert_of(
            pki.new_ca(organizations=["o"], clock=clock, rng=pki.DeterministicRandom(seed))
        )

    a, b, c = make(b"s"), make(b"s"), make(b"other")
    assert (a.not_valid_before_utc, a.not_valid_after_utc) == (
        b.not_valid_before_utc,
        b.not_valid_after_utc,
    )
    assert a.serial_number == b.serial_number
    assert c.serial_number != a.serial_number  # negative control: the rng really drives serials
    assert a.public_key() != b.public_key()  # keys come from the library's own generator


# --------------------------------------------------------------------------- leaves


@pytest.mark.parametrize(
    ("kind", "usages"),
    [
        ("server", [ExtendedKeyUsageOID.SERVER_AUTH]),
        ("client", [ExtendedKeyUsageOID.CLIENT_AUTH]),
        ("peer", BOTH),
    ],
)
def test_issue_kinds(
    kind: pki.LeafKind,
    usages: list[x509.ObjectIdentifier],
    bundle_v09: SecretsBundle,
    clock: pki.Clock,
    rng: pki.Random,
    ossl: OpenSSL,
) -> None:
    leaf = pki.issue(
        bundle_v09.etcd_ca,
        kind=kind,
        common_name="talos-default-master-1",
        organizations=["o1", "o2"],
        dns_names=["master-1", "master-1.local"],
        ip_addresses=["10.5.0.2", "fd00::2"],
        ttl=dt.timedelta(hours=24),
        clock=clock,
        rng=rng,
    )
    cert = cert_of(leaf)
    assert eku(cert) == usages
    assert subject(cert) == [("O", "o1"), ("O", "o2"), ("CN", "talos-default-master-1")]
    assert cert.issuer == cert_of(bundle_v09.etcd_ca).subject
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["master-1", "master-1.local"]
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["10.5.0.2", "fd00::2"]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=24)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)  # follows the CA
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA512)  # follows the CA's hash
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    pki.check_key_matches(leaf.crt, leaf.key)
    result = ossl.verify(bundle_v09.etcd_ca.crt, leaf.crt)
    assert result.returncode == 0, result.stderr
    purpose = {"server": "sslserver", "client": "sslclient", "peer": "sslserver"}[kind]
    ok = ossl.run(
        "verify",
        "-attime",
        str(int(T0.timestamp()) + 60),
        "-purpose",
        purpose,
        "-CAfile",
        ossl.file(bundle_v09.etcd_ca.crt),
        ossl.file(leaf.crt),
    )
    assert ok.returncode == 0, ok.stderr
    wrong = {"server": "sslclient", "client": "sslserver", "peer": None}[kind]
    if wrong:  # negative control: the EKU really restricts the purpose
        bad = ossl.run(
            "verify",
            "-attime",
            str(int(T0.timestamp()) + 60),
            "-purpose",
            wrong,
            "-CAfile",
            ossl.file(bundle_v09.etcd_ca.crt),
            ossl.file(leaf.crt),
        )
        assert bad.returncode != 0


def test_issue_key_algorithm_override_and_ca_lifetime_cap(
    bundle_v09: SecretsBundle, clock: pki.Clock, ossl: OpenSSL
) -> None:
    leaf = pki.issue(bundle_v09.talos_ca, key_algorithm="ecdsa", ttl=TEN_YEARS * 2, clock=clock)
    cert = cert_of(leaf)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is None  # signed by the Ed25519 CA
    assert cert.not_valid_after_utc == cert_of(bundle_v09.talos_ca).not_valid_after_utc
    assert ossl.verify(bundle_v09.talos_ca.crt, leaf.crt).returncode == 0


def test_issue_rejects_bad_input(bundle_v09: SecretsBundle) -> None:
    with pytest.raises(PKIError, match="IP SAN 'not-an-ip' is not an IP address"):
        pki.issue(bundle_v09.etcd_ca, ip_addresses=["not-an-ip"])
    leaf = pki.issue(bundle_v09.etcd_ca)
    with pytest.raises(PKIError, match="is not a CA"):
        pki.issue(leaf)
    with pytest.raises(PKIError, match="private key is missing"):
        pki.issue(CertKey(bundle_v09.etcd_ca.crt))
    with pytest.raises(PKIError, match="do not match"):
        pki.issue(CertKey(bundle_v09.etcd_ca.crt, bundle_v09.kubernetes_ca.key))


def test_admin_client_cert_v09(bundle_v09: SecretsBundle, clock: pki.Clock, ossl: OpenSSL) -> None:
    admin = pki.admin_client_cert(bundle_v09.talos_ca, clock)
    cert = cert_of(admin)
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    assert admin.key.startswith(b"-----BEGIN ED25519 PRIVATE KEY-----")
    assert subject(cert) == [("O", "")]  # Organization [""], no CN
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == []
    assert eku(cert) == BOTH
    assert cert.not_valid_before_utc == T0
    assert cert.not_valid_after_utc - T0 == TEN_YEARS
    assert ossl.verify(bundle_v09.talos_ca.crt, admin.crt).returncode == 0
    pki.verify_chain(bundle_v09.talos_ca.crt, admin.crt, clock)
    with pytest.raises(PKIError, match="not signed by"):  # negative control
        pki.verify_chain(bundle_v09.kubernetes_ca.crt, admin.crt, clock)


def test_kubeconfig_admin_cert(bundle_v09: SecretsBundle, clock: pki.Clock, ossl: OpenSSL) -> None:
    pair = pki.kubeconfig_admin_cert(bundle_v09.kubernetes_ca, clock)
    cert = cert_of(pair)
    assert subject(cert) == [("O", "system:masters"), ("CN", "admin")]
    assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.not_valid_after_utc - T0 == dt.timedelta(days=365)
    result = ossl.run(
        "verify",
        "-attime",
        str(int(T0.timestamp()) + 60),
        "-purpose",
        "sslclient",
        "-CAfile",
        ossl.file(bundle_v09.kubernetes_ca.crt),
        ossl.file(pair.crt),
    )
    assert result.returncode == 0, result.stderr


def test_kubeconfig_admin_cert_follows_rsa_ca(bundle_v08: SecretsBundle, ossl: OpenSSL) -> None:
    pair = pki.kubeconfig_admin_cert(bundle_v08.kubernetes_ca, pki.FixedClock(T0))
    key = cert_of(pair).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert ossl.verify(bundle_v08.kubernetes_ca.crt, pair.crt).returncode == 0


# --------------------------------------------------------------------------- keys and PEM


def test_ed25519_key_label_and_both_labels_accepted(
    bundle_v09: SecretsBundle, ossl: OpenSSL
) -> None:
    key_pem = bundle_v09.talos_ca.key
    assert key_pem.startswith(b"-----BEGIN ED25519 PRIVATE KEY-----\n")
    assert key_pem.rstrip().endswith(b"-----END ED25519 PRIVATE KEY-----")
    standard = key_pem.replace(b"ED25519 PRIVATE KEY", b"PRIVATE KEY")
    # The body is plain PKCS#8: openssl reads it under the standard label.
    assert ossl.run("pkey", "-noout", "-in", ossl.file(standard)).returncode == 0
    a = pki.load_private_key(key_pem)
    b = pki.load_private_key(standard)
    assert isinstance(a, ed25519.Ed25519PrivateKey) and isinstance(b, ed25519.Ed25519PrivateKey)
    assert a.private_bytes_raw() == b.private_bytes_raw()
    pki.check_key_matches(bundle_v09.talos_ca.crt, standard)


def _body_lines(pem: bytes) -> list[bytes]:
    return [line for line in pem.splitlines() if line and not line.startswith(b"-----")]


def test_truncated_and_garbled_pem(bundle_v09: SecretsBundle) -> None:
    crt, key = bundle_v09.etcd_ca.crt, bundle_v09.etcd_ca.key
    with pytest.raises(PKIError, match="truncated PEM"):
        pki.load_certificate(crt[: len(crt) // 2], "ca.crt")
    lines = crt.splitlines()
    cut = b"\n".join([*lines[:2], lines[-1]]) + b"\n"  # BEGIN/END intact, body cut short
    with pytest.raises(PKIError, match="not a valid X.509 certificate"):
        pki.load_certificate(cut, "ca.crt")
    garbled = crt.replace(lines[1], b"!!" + lines[1][2:])
    with pytest.raises(PKIError, match="garbled PEM"):
        pki.load_certificate(garbled, "ca.crt")
    with pytest.raises(PKIError, match="no PEM block"):
        pki.load_certificate(b"hello", "ca.crt")
    with pytest.raises(PKIError, match="no CERTIFICATE block"):
        pki.load_certificate(key, "ca.crt")
    # Key errors never quote the key.
    with pytest.raises(PKIError) as info:
        pki.load_private_key(key[: len(key) - 40], "ca.key")
    assert "truncated PEM" in str(info.value)
    for line in _body_lines(key):
        assert line.decode() not in str(info.value)
    broken_key = key.replace(_body_lines(key)[1], b"A" * len(_body_lines(key)[1]))
    with pytest.raises(PKIError, match="not a valid private key") as info:
        pki.load_private_key(broken_key, "ca.key")
    for line in _body_lines(key):
        assert line.decode() not in str(info.value)


def test_mismatch_message_names_no_key_material(bundle_v09: SecretsBundle) -> None:
    with pytest.raises(PKIError, match="certificate and the private key do not match") as info:
        pki.check_key_matches(bundle_v09.etcd_ca.crt, bundle_v09.kubernetes_ca.key, "etcd CA")
    assert str(info.value).startswith("etcd CA: ")
    for line in _body_lines(bundle_v09.kubernetes_ca.key):
        assert line.decode() not in str(info.value)


# --------------------------------------------------------------------------- tokens, secrets


class ScriptedRandom:
    """Hands out a fixed byte stream, recording each request."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.requests: list[int] = []

    def token_bytes(self, n: int) -> bytes:
        self.requests.append(n)
        out, self.data = self.data[:n], self.data[n:]
        assert len(out) == n, "scripted stream exhausted"
        return out


def test_token_rejects_bytes_252_and_above() -> None:
    stream = bytes([255, 252, 0, 1, 2, 3]) + bytes([253, 35]) + bytes([36]) + bytes([10] * 16)
    rng = ScriptedRandom(stream)
    token = pki.generate_token(rng)
    # 255, 252 and 253 are dropped; 35 -> "z"; 36 -> "0" (36 % 36); 10 -> "a".
    assert token == "0123z0.aaaaaaaaaaaaaaaa"
    assert rng.requests == [6, 2, 1, 16]
    assert TOKEN_RE.match(token)
    # Negative control: 251 is the largest accepted byte and maps to the last letter.
    assert pki.generate_token(ScriptedRandom(bytes([251] * 22))) == "zzzzzz.zzzzzzzzzzzzzzzz"


def test_tokens_and_aescbc_follow_the_rng() -> None:
    a = pki.generate_token(pki.DeterministicRandom(b"t"))
    assert a == pki.generate_token(pki.DeterministicRandom(b"t"))
    assert a != pki.generate_token(pki.DeterministicRandom(b"u"))
    secret = pki.aescbc_secret(ScriptedRandom(bytes(range(32))))
    assert base64.b64decode(secret) == bytes(range(32))
    assert TOKEN_RE.match(pki.generate_token())  # the system CSPRNG


def test_secrets_bundle_follows_injected_sources() -> None:
    a = pki.generate_secrets("", pki.FixedClock(T0), pki.DeterministicRandom(b"x"))
    b = pki.generate_secrets("", pki.FixedClock(T0), pki.DeterministicRandom(b"x"))
    assert (a.trustd_token, a.bootstrap_token, a.aescbc_encryption_secret) == (
        b.trustd_token,
        b.bootstrap_token,
        b.aescbc_encryption_secret,
    )
    for pa, pb in ((a.talos_ca, b.talos_ca), (a.etcd_ca, b.etcd_ca)):
        ca, cb = cert_of(pa), cert_of(pb)
        assert ca.serial_number == cb.serial_number
        assert ca.not_valid_before_utc == cb.not_valid_before_utc == T0


# --------------------------------------------------------------------------- inspect, verify


def test_spki_fingerprint_matches_openssl(bundle_v09: SecretsBundle, ossl: OpenSSL) -> None:
    for pair in (bundle_v09.talos_ca, bundle_v09.etcd_ca):
        pub = ossl.run("x509", "-pubkey", "-noout", "-in", ossl.file(pair.crt))
        der = ossl.run("pkey", "-pubin", "-outform", "DER", stdin=pub.stdout)
        assert der.returncode == 0
        expected = base64.b64encode(hashlib.sha256(der.stdout).digest()).decode()
        assert pki.spki_fingerprint(pair.crt) == expected
        assert len(expected) == 44
    assert pki.spki_fingerprint(bundle_v09.talos_ca.crt) != pki.spki_fingerprint(
        bundle_v09.etcd_ca.crt
    )


def test_inspect_reports_fields(bundle_v09: SecretsBundle) -> None:
    leaf = pki.issue(
        bundle_v09.etcd_ca,
        kind="server",
        common_name="n1",
        dns_names=["n1"],
        ip_addresses=["10.5.0.2"],
        ttl=dt.timedelta(days=10),
        clock=pki.FixedClock(T0),
    )
    info = pki.inspect(leaf.crt, pki.FixedClock(T0 + dt.timedelta(days=3, hours=1)))
    data = info.to_yaml_data()
    assert data["subject"] == "CN=n1"
    assert data["issuer"] == "O=etcd"
    assert data["keyAlgorithm"] == "ECDSA P-256"
    assert data["signatureAlgorithm"] == "ECDSA-SHA512"
    assert data["notBefore"] == "2026-01-01T12:00:00Z"
    assert data["notAfter"] == "2026-01-11T12:00:00Z"
    assert data["daysLeft"] == 6
    assert data["dnsNames"] == ["n1"] and data["ipAddresses"] == ["10.5.0.2"]
    assert data["extKeyUsage"] == ["ServerAuth"]
    assert data["isCA"] is False
    assert data["fingerprint"] == pki.spki_fingerprint(leaf.crt)
    later = pki.FixedClock(T0 + dt.timedelta(days=3, hours=1))
    assert info.expires_within(dt.timedelta(days=30), later)
    assert not info.expires_within(dt.timedelta(days=5), later)
    expired = pki.inspect(leaf.crt, pki.FixedClock(T0 + dt.timedelta(days=12)))
    assert expired.days_left == -2
    ca = pki.inspect(bundle_v09.talos_ca.crt, pki.FixedClock(T0))
    assert ca.key_algorithm == "Ed25519" and ca.is_ca and ca.days_left == 3650
    assert ca.key_usage == ["DigitalSignature", "CertSign"]


def test_verify_chain_time_and_intermediates(bundle_v09: SecretsBundle) -> None:
    clock = pki.FixedClock(T0)
    leaf = pki.issue(bundle_v09.etcd_ca, ttl=dt.timedelta(hours=1), clock=clock)
    pki.verify_chain(bundle_v09.etcd_ca.crt, leaf.crt, clock)
    with pytest.raises(PKIError, match="expired at 2026-01-01T13:00:00Z"):
        pki.verify_chain(
            bundle_v09.etcd_ca.crt, leaf.crt, pki.FixedClock(T0 + dt.timedelta(hours=2))
        )
    with pytest.raises(PKIError, match="not valid before"):
        pki.verify_chain(
            bundle_v09.etcd_ca.crt, leaf.crt, pki.FixedClock(T0 - dt.timedelta(hours=1))
        )
    with pytest.raises(PKIError, match="not signed by CA"):
        pki.verify_chain(bundle_v09.kubernetes_ca.crt, leaf.crt, clock)
    # A self-signed look-alike with the same subject is not the CA.
    twin = pki.new_ca(organizations=["etcd"], clock=clock)
    with pytest.raises(PKIError, match="not signed by"):
        pki.verify_chain(twin.crt, leaf.crt, clock)
    # An intermediate CA issued by the root, carried after the leaf.
    root = pki.new_ca(organizations=["root"], clock=clock)
    inter_key = pki.new_private_key("ecdsa")
    root_cert = cert_of(root)
    root_key = pki.load_private_key(root.key)
    inter_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "inter")]))
        .issuer_name(root_cert.subject)
        .public_key(inter_key.public_key())
        .serial_number(7)
        .not_valid_before(T0)
        .not_valid_after(T0 + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    inter = CertKey(
        inter_cert.public_bytes(serialization.Encoding.PEM), pki.encode_private_key(inter_key)
    )
    inter_leaf = pki.issue(inter, clock=clock)
    pki.verify_chain(root.crt, inter_leaf.crt + inter.crt, clock)
    with pytest.raises(PKIError, match="not signed by"):  # without the intermediate: no chain
        pki.verify_chain(root.crt, inter_leaf.crt, clock)


def test_repr_hides_secrets(bundle_v09: SecretsBundle) -> None:
    text = repr(bundle_v09) + repr(bundle_v09.talos_ca) + repr(pki.DeterministicRandom(b"seed"))
    secrets_ = [
        bundle_v09.trustd_token,
        bundle_v09.bootstrap_token,
        bundle_v09.aescbc_encryption_secret,
        "seed",
    ]
    secrets_ += [line.decode() for line in _body_lines(bundle_v09.talos_ca.key)]
    secrets_ += [line.decode() for line in _body_lines(bundle_v09.service_account_key or b"")]
    for secret in secrets_:
        assert secret not in text
    assert "talos_ca=CertKey(crt=" in text  # control: the public parts are still shown
