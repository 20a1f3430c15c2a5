"""PKI primitives: CAs, leaf certificates, keys, tokens and the secrets bundle.

The rules they follow: docs/talos-facts.md#pki.

Pure functions over PEM bytes. Time and randomness come from injected sources (:class:`Clock`,
:class:`Random`) so that tests can pin validity windows, serial numbers and tokens; key pairs
come from the cryptography library's own generator (deterministic keys are not a goal).

Formats follow Talos v0.9 so that material moves between this project and Talos's tools:

- Ed25519 private keys are PKCS#8 inside a PEM block labelled ``ED25519 PRIVATE KEY``
  (``PRIVATE KEY`` is accepted on input too);
- ECDSA keys are SEC 1 ``EC PRIVATE KEY``, RSA keys PKCS#1 ``RSA PRIVATE KEY``;
- CAs are self-signed, 10 years, KeyUsage CertSign+DigitalSignature, ExtKeyUsage
  ServerAuth+ClientAuth, 128-bit random serials;
- the SPKI fingerprint is SHA-256 over the DER SubjectPublicKeyInfo, standard base64 (44 chars),
  computed by :mod:`libtalos.spki`.

Every error is a :class:`~libtalos.errors.PKIError` naming what was being read (``what``), never
the key material itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import secrets as _stdlib_secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from libtalos import spki
from libtalos.certcheck import KEY_LABELS, PemBlock, pem_blocks
from libtalos.errors import PKIError
from libtalos.secrets import CertKey, SecretsBundle

__all__ = [
    "ADMIN_CERT_TTL",
    "CA_TTL",
    "KEY_ALGORITHMS",
    "KUBECONFIG_CERT_TTL",
    "LEAF_KINDS",
    "RSA_BITS",
    "TOKEN_ALPHABET",
    "CertInfo",
    "CertKey",
    "Clock",
    "DeterministicRandom",
    "FixedClock",
    "LoadedCA",
    "PemBlock",
    "Random",
    "SystemClock",
    "SystemRandom",
    "admin_client_cert",
    "aescbc_secret",
    "check_key_matches",
    "encode_private_key",
    "generate_secrets",
    "generate_token",
    "inspect",
    "issue",
    "kubeconfig_admin_cert",
    "load_certificate",
    "load_certificates",
    "load_private_key",
    "new_ca",
    "new_private_key",
    "parse_contract",
    "pem_blocks",
    "service_account_key",
    "spki_fingerprint",
    "verify_chain",
]

KeyAlgorithm = Literal["ecdsa", "ed25519", "rsa"]
HashName = Literal["sha256", "sha512"]
LeafKind = Literal["server", "client", "peer"]
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

KEY_ALGORITHMS: tuple[KeyAlgorithm, ...] = ("ecdsa", "ed25519", "rsa")
LEAF_KINDS: tuple[LeafKind, ...] = ("server", "client", "peer")
CA_TTL = dt.timedelta(hours=87600)  # Talos: 87600 h = 10 years
ADMIN_CERT_TTL = dt.timedelta(hours=87600)  # v0.9 talosconfig admin cert
KUBECONFIG_CERT_TTL = dt.timedelta(hours=365 * 24)  # cluster.adminKubeconfig.certLifetime default
RSA_BITS = 4096
TOKEN_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105 - an alphabet
_TOKEN_LIMIT = 252  # largest multiple of 36 that fits in a byte: bytes >= 252 would bias % 36


# --------------------------------------------------------------------------- injected sources


class Clock(Protocol):
    """Where "now" comes from (UTC, timezone-aware)."""

    def now(self) -> dt.datetime: ...


class Random(Protocol):
    """Where random bytes come from (serial numbers, tokens, secrets)."""

    def token_bytes(self, n: int) -> bytes: ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class FixedClock:
    """A clock stopped at ``at`` (for reproducible validity windows)."""

    at: dt.datetime

    def now(self) -> dt.datetime:
        return self.at if self.at.tzinfo else self.at.replace(tzinfo=dt.UTC)


class SystemRandom:
    """The operating system's CSPRNG."""

    def token_bytes(self, n: int) -> bytes:
        return _stdlib_secrets.token_bytes(n)


@dataclass
class DeterministicRandom:
    """SHA-256 in counter mode over a seed: reproducible bytes for tests. Not for real secrets."""

    seed: bytes = field(repr=False)
    _counter: int = field(default=0, repr=False)

    def token_bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self.seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return out[:n]


def _now(clock: Clock | None) -> dt.datetime:
    now = (clock or SystemClock()).now()
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    return now.astimezone(dt.UTC).replace(microsecond=0)  # X.509 times have 1 s resolution


def _serial(rng: Random) -> int:
    """A positive 128-bit serial number (zero is not a valid serial; draw again)."""
    while True:
        serial = int.from_bytes(rng.token_bytes(16), "big")
        if serial:
            return serial


# --------------------------------------------------------------------------- PEM and keys

# PEM framing (PemBlock, pem_blocks, KEY_LABELS) lives in libtalos.certcheck, shared with the
# pure checks of a config's certificates.


def _pem(label: str, der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        b"-----BEGIN "
        + label.encode()
        + b"-----\n"
        + b"\n".join(lines)
        + (b"\n-----END " + label.encode() + b"-----\n")
    )


def new_private_key(algorithm: KeyAlgorithm, *, rsa_bits: int = RSA_BITS) -> PrivateKey:
    if algorithm == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise PKIError(
        f"unknown key algorithm {algorithm!r} (expected one of {', '.join(KEY_ALGORITHMS)})"
    )


def encode_private_key(key: PrivateKey) -> bytes:
    """PEM as Talos writes it: ED25519 PRIVATE KEY (PKCS#8), EC PRIVATE KEY, RSA PRIVATE KEY."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return _pem("ED25519 PRIVATE KEY", der)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes, what: str = "private key") -> PrivateKey:
    """The first private key in ``pem`` (Talos's ED25519 label and the standard ones)."""
    for block in pem_blocks(pem, what):
        if block.label == "ENCRYPTED PRIVATE KEY":
            raise PKIError(f"{what}: encrypted private keys are not supported")
        if block.label not in KEY_LABELS:
            continue
        try:
            key = serialization.load_der_private_key(block.der, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise PKIError(f"{what}: the {block.label} block is not a valid private key") from None
        if isinstance(
            key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
        ):
            return key
        raise PKIError(f"{what}: unsupported key type (expected ECDSA, Ed25519 or RSA)")
    raise PKIError(f"{what}: no PRIVATE KEY block found")


def load_certificate(pem: bytes, what: str = "certificate") -> x509.Certificate:
    """The first certificate in ``pem``."""
    return load_certificates(pem, what)[0]


def load_certificates(pem: bytes, what: str = "certificate") -> list[x509.Certificate]:
    """Every certificate in ``pem``, in order."""
    certs: list[x509.Certificate] = []
    for block in pem_blocks(pem, what):
        if block.label != "CERTIFICATE":
            continue
        try:
            certs.append(x509.load_der_x509_certificate(block.der))
        except ValueError:
            raise PKIError(
                f"{what}: the CERTIFICATE block is not a valid X.509 certificate (truncated?)"
            ) from None
    if not certs:
        raise PKIError(f"{what}: no CERTIFICATE block found")
    return certs


def service_account_key() -> bytes:
    """The Kubernetes service-account signing key: ECDSA P-256, PEM ``EC PRIVATE KEY``."""
    return encode_private_key(new_private_key("ecdsa"))


# --------------------------------------------------------------------------- certificates


def _name(organizations: Sequence[str], common_name: str) -> x509.Name:
    # Go's pkix.Name order: O before CN; an Organization of [""] is an empty O attribute.
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    if common_name:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _hash_for(key: PrivateKey, hash_name: HashName) -> hashes.SHA256 | hashes.SHA512 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None  # PureEd25519
    return hashes.SHA256() if hash_name == "sha256" else hashes.SHA512()


def _sign(builder: x509.CertificateBuilder, key: PrivateKey, hash_name: HashName) -> bytes:
    cert = builder.sign(key, _hash_for(key, hash_name))
    return cert.public_bytes(serialization.Encoding.PEM)


def new_ca(
    *,
    algorithm: KeyAlgorithm = "ecdsa",
    organizations: Sequence[str] = (),
    common_name: str = "",
    ttl: dt.timedelta = CA_TTL,
    hash_name: HashName = "sha512",
    clock: Clock | None = None,
    rng: Random | None = None,
    rsa_bits: int = RSA_BITS,
    ip_addresses: Sequence[str] = (),
) -> CertKey:
    """A self-signed CA (Talos's shape: CertSign+DigitalSignature, ServerAuth+ClientAuth), with
    ``ip_addresses`` as IP SANs when given (``talosctl gen keypair --ip``)."""
    if ttl <= dt.timedelta(0):
        raise PKIError("CA validity must be positive")
    key = new_private_key(algorithm, rsa_bits=rsa_bits)
    now = _now(clock)
    name = _name(organizations, common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial(rng or SystemRandom()))
        .not_valid_before(now)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=True, key_encipherment=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(ski, critical=False)
    )
    if ip_addresses:
        sans = [x509.IPAddress(ipaddress.ip_address(v)) for v in ip_addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return CertKey(_sign(builder, key, hash_name), encode_private_key(key))


def _key_usage(*, cert_sign: bool, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _algorithm_of(key: PrivateKey) -> KeyAlgorithm:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    return "ecdsa"


def _ca_hash(cert: x509.Certificate) -> HashName:
    algo = cert.signature_hash_algorithm
    return "sha256" if isinstance(algo, hashes.SHA256) else "sha512"


@dataclass(frozen=True)
class LoadedCA:
    """A CA certificate with its (checked) private key."""

    cert: x509.Certificate
    key: PrivateKey

    @classmethod
    def load(cls, ca: CertKey, what: str = "CA") -> LoadedCA:
        cert = load_certificate(ca.crt, f"{what} certificate")
        if not ca.key:
            raise PKIError(f"{what}: the private key is missing (a CA without its key cannot sign)")
        key = load_private_key(ca.key, f"{what} key")
        if not _same_public_key(cert, key):
            raise PKIError(f"{what}: the certificate and the private key do not match")
        constraints = _extension(cert, x509.BasicConstraints)
        if constraints is None or not constraints.ca:
            raise PKIError(f"{what}: the certificate is not a CA (BasicConstraints CA is not set)")
        return cls(cert, key)


def issue(
    ca: CertKey | LoadedCA,
    *,
    kind: LeafKind = "peer",
    common_name: str = "",
    organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    ttl: dt.timedelta = dt.timedelta(hours=24),
    key_algorithm: KeyAlgorithm | None = None,
    clock: Clock | None = None,
    rng: Random | None = None,
) -> CertKey:
    """A leaf certificate signed by ``ca``.

    ``kind`` picks the extended key usage: server (ServerAuth), client (ClientAuth), peer (both).
    The key type follows the CA unless ``key_algorithm`` is given; the signature hash follows the
    CA's own signature.
    """
    loaded = ca if isinstance(ca, LoadedCA) else LoadedCA.load(ca)
    if kind not in LEAF_KINDS:
        raise PKIError(
            f"unknown certificate kind {kind!r} (expected one of {', '.join(LEAF_KINDS)})"
        )
    if ttl <= dt.timedelta(0):
        raise PKIError("certificate validity must be positive")
    ips = []
    for text in ip_addresses:
        try:
            ips.append(ipaddress.ip_address(text))
        except ValueError:
            raise PKIError(f"IP SAN {text!r} is not an IP address") from None
    algorithm = key_algorithm or _algorithm_of(loaded.key)
    key = new_private_key(algorithm)
    now = _now(clock)
    not_after = min(now + ttl, loaded.cert.not_valid_after_utc)  # never outlive the CA
    usages = {
        "server": [ExtendedKeyUsageOID.SERVER_AUTH],
        "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
        "peer": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    }[kind]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(organizations, common_name))
        .issuer_name(loaded.cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial(rng or SystemRandom()))
        .not_valid_before(now)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(cert_sign=False, key_encipherment=algorithm == "rsa"), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    ca_ski = _extension(loaded.cert, x509.SubjectKeyIdentifier)
    if ca_ski is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ip) for ip in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return CertKey(_sign(builder, loaded.key, _ca_hash(loaded.cert)), encode_private_key(key))


def admin_client_cert(
    talos_ca: CertKey | LoadedCA, clock: Clock | None = None, rng: Random | None = None
) -> CertKey:
    """The talosconfig admin certificate (v0.9): from the Talos CA, IP SAN 127.0.0.1, no CN,
    Organization [""], 10 years, ServerAuth+ClientAuth; the key type follows the CA (Ed25519)."""
    return issue(
        talos_ca,
        kind="peer",
        organizations=[""],
        ip_addresses=["127.0.0.1"],
        ttl=ADMIN_CERT_TTL,
        clock=clock,
        rng=rng,
    )


def kubeconfig_admin_cert(
    kubernetes_ca: CertKey | LoadedCA,
    clock: Clock | None = None,
    rng: Random | None = None,
    *,
    common_name: str = "admin",
    organizations: Sequence[str] = ("system:masters",),
    ttl: dt.timedelta = KUBECONFIG_CERT_TTL,
) -> CertKey:
    """An admin client certificate for a kubeconfig: O=system:masters, from the Kubernetes CA;
    the key type follows the CA (ECDSA for v0.9 bundles, RSA for v0.8)."""
    return issue(
        kubernetes_ca,
        kind="client",
        common_name=common_name,
        organizations=organizations,
        ttl=ttl,
        clock=clock,
        rng=rng,
    )


# --------------------------------------------------------------------------- tokens, bundle


def generate_token(rng: Random | None = None, lengths: tuple[int, int] = (6, 16)) -> str:
    """A kubeadm-style token ``[a-z0-9]{6}.[a-z0-9]{16}``; bytes >= 252 are rejected (no bias)."""
    source = rng or SystemRandom()
    parts = []
    for length in lengths:
        chars: list[str] = []
        while len(chars) < length:
            for byte in source.token_bytes(length - len(chars)):
                if byte < _TOKEN_LIMIT:
                    chars.append(TOKEN_ALPHABET[byte % len(TOKEN_ALPHABET)])
        parts.append("".join(chars))
    return ".".join(parts)


def aescbc_secret(rng: Random | None = None) -> str:
    """``cluster.aescbcEncryptionSecret``: standard base64 of 32 random bytes (44 characters)."""
    return base64.b64encode((rng or SystemRandom()).token_bytes(32)).decode("ascii")


Contract = Literal["v0.8", "v0.9"]


def parse_contract(version: str) -> Contract:
    """The PKI contract of a Talos version: ``""`` (current, v0.9), ``v0.9[.x]`` or ``v0.8[.x]``."""
    if version in ("", "v0.9") or version.startswith("v0.9."):
        return "v0.9"
    if version == "v0.8" or version.startswith("v0.8."):
        return "v0.8"
    raise PKIError(f"unsupported Talos version {version!r} (supported: v0.8, v0.9)")


def generate_secrets(
    contract: str = "", clock: Clock | None = None, rng: Random | None = None
) -> SecretsBundle:
    """Every CA, key and token of a new cluster (docs/talos-facts.md#pki, #tokens).

    v0.9: Kubernetes/etcd/aggregator CAs ECDSA P-256 with ECDSA-SHA512, a service-account key.
    v0.8: Kubernetes/etcd CAs RSA-4096 (SHA512WithRSA), no aggregator CA, no service-account key.
    The Talos (OS) CA is Ed25519 in both.
    """
    which = parse_contract(contract)
    source = rng or SystemRandom()
    cluster_algo: KeyAlgorithm = "rsa" if which == "v0.8" else "ecdsa"

    def ca(orgs: Sequence[str], cn: str = "", algo: KeyAlgorithm = cluster_algo) -> CertKey:
        return new_ca(algorithm=algo, organizations=orgs, common_name=cn, clock=clock, rng=source)

    return SecretsBundle(
        talos_ca=ca(["talos"], algo="ed25519"),
        kubernetes_ca=ca(["kubernetes"]),
        etcd_ca=ca(["etcd"]),
        aggregator_ca=None if which == "v0.8" else ca([""], "front-proxy"),
        service_account_key=None if which == "v0.8" else service_account_key(),
        trustd_token=generate_token(source),
        bootstrap_token=generate_token(source),
        aescbc_encryption_secret=aescbc_secret(source),
    )


# --------------------------------------------------------------------------- inspection


def _extension(cert: x509.Certificate, kind: type[Any]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def spki_fingerprint(cert_pem: bytes, what: str = "certificate") -> str:
    """Talos's certificate fingerprint (:mod:`libtalos.spki`) of the first certificate, which
    must be a valid X.509 certificate."""
    der = load_certificate(cert_pem, what).public_bytes(serialization.Encoding.DER)
    return base64.b64encode(spki.digest(der, what)).decode("ascii")


def _key_description(public_key: Any) -> str:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"ECDSA {curve.get(public_key.curve.name, public_key.curve.name)}"
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    return type(public_key).__name__


_SIGNATURE_NAMES = {  # Go's x509.SignatureAlgorithm names
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ECDSA-SHA256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ECDSA-SHA384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ECDSA-SHA512",
    SignatureAlgorithmOID.RSA_WITH_SHA256: "SHA256-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "SHA512-RSA",
    SignatureAlgorithmOID.ED25519: "Ed25519",
}


@dataclass(frozen=True)
class CertInfo:
    """What ``inspect`` reports about one certificate."""

    subject: str
    common_name: str
    organizations: list[str]
    issuer: str
    serial: str
    is_ca: bool
    key_algorithm: str
    signature_algorithm: str
    not_before: dt.datetime
    not_after: dt.datetime
    days_left: int
    dns_names: list[str]
    ip_addresses: list[str]
    key_usage: list[str]
    ext_key_usage: list[str]
    fingerprint: str

    def to_yaml_data(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "commonName": self.common_name,
            "organizations": self.organizations,
            "issuer": self.issuer,
            "serial": self.serial,
            "isCA": self.is_ca,
            "keyAlgorithm": self.key_algorithm,
            "signatureAlgorithm": self.signature_algorithm,
            "notBefore": _iso(self.not_before),
            "notAfter": _iso(self.not_after),
            "daysLeft": self.days_left,
            "dnsNames": self.dns_names,
            "ipAddresses": self.ip_addresses,
            "keyUsage": self.key_usage,
            "extKeyUsage": self.ext_key_usage,
            "fingerprint": self.fingerprint,
        }

    def expires_within(self, window: dt.timedelta, clock: Clock | None = None) -> bool:
        return self.not_after <= _now(clock) + window


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_KEY_USAGE_NAMES = [
    ("digital_signature", "DigitalSignature"),
    ("content_commitment", "ContentCommitment"),
    ("key_encipherment", "KeyEncipherment"),
    ("data_encipherment", "DataEncipherment"),
    ("key_agreement", "KeyAgreement"),
    ("key_cert_sign", "CertSign"),
    ("crl_sign", "CRLSign"),
]
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "ServerAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "ClientAuth",
}


def inspect(cert_pem: bytes, clock: Clock | None = None, what: str = "certificate") -> CertInfo:
    """Subject, SANs, key algorithm, validity and days left of the first certificate."""
    cert = load_certificate(cert_pem, what)
    now = _now(clock)
    constraints = _extension(cert, x509.BasicConstraints)
    sans = _extension(cert, x509.SubjectAlternativeName)
    usage = _extension(cert, x509.KeyUsage)
    eku = _extension(cert, x509.ExtendedKeyUsage)
    left = cert.not_valid_after_utc - now
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        common_name=next(iter(_attrs(cert.subject, NameOID.COMMON_NAME)), ""),
        organizations=_attrs(cert.subject, NameOID.ORGANIZATION_NAME),
        issuer=cert.issuer.rfc4514_string(),
        serial=f"{cert.serial_number:x}",
        is_ca=bool(constraints is not None and constraints.ca),
        key_algorithm=_key_description(cert.public_key()),
        signature_algorithm=_SIGNATURE_NAMES.get(
            cert.signature_algorithm_oid,
            cert.signature_algorithm_oid.dotted_string,
        ),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        days_left=left // dt.timedelta(days=1),  # floor: negative once expired
        dns_names=[str(n) for n in sans.get_values_for_type(x509.DNSName)] if sans else [],
        ip_addresses=[str(n) for n in sans.get_values_for_type(x509.IPAddress)] if sans else [],
        key_usage=_key_usages(usage),
        ext_key_usage=[_EKU_NAMES.get(o, o.dotted_string) for o in eku] if eku else [],
        fingerprint=spki_fingerprint(cert_pem, what),
    )


def _attrs(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(oid)]


def _key_usages(usage: x509.KeyUsage | None) -> list[str]:
    if usage is None:
        return []
    return [label for attr, label in _KEY_USAGE_NAMES if getattr(usage, attr)]


# --------------------------------------------------------------------------- verification


def _public_der(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _same_public_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    return _public_der(cert.public_key()) == _public_der(key.public_key())


def check_key_matches(cert_pem: bytes, key_pem: bytes, what: str = "certificate") -> None:
    """Raise :class:`PKIError` unless ``key_pem`` is the private key of ``cert_pem``."""
    cert = load_certificate(cert_pem, f"{what} certificate")
    key = load_private_key(key_pem, f"{what} key")
    if not _same_public_key(cert, key):
        raise PKIError(f"{what}: the certificate and the private key do not match")


def verify_chain(
    ca_pem: bytes,
    cert_pem: bytes,
    clock: Clock | None = None,
    *,
    ca_what: str = "CA",
    cert_what: str = "certificate",
) -> None:
    """Check that ``cert_pem``'s first certificate chains to a CA in ``ca_pem``.

    Further certificates in ``cert_pem`` are taken as intermediates (leaf first). Each link's
    signature, issuer name and CA flag are checked, and every certificate must be valid at the
    clock's time.
    """
    roots = load_certificates(ca_pem, ca_what)
    chain = load_certificates(cert_pem, cert_what)
    now = _now(clock)
    for i, cert in enumerate(chain):
        label = cert_what if i == 0 else f"{cert_what} (intermediate {i})"
        _check_time(cert, now, label)
    current = chain[0]
    pool = chain[1:]
    for _depth in range(len(pool) + 1):
        for root in roots:
            if _issued_by(current, root):
                _check_time(root, now, ca_what)
                return
        parent = next((c for c in pool if _issued_by(current, c)), None)
        if parent is None:
            break
        pool.remove(parent)
        current = parent
    raise PKIError(f"{cert_what}: not signed by {ca_what} (wrong CA?)")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    constraints = _extension(issuer, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _check_time(cert: x509.Certificate, now: dt.datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise PKIError(f"{what}: not valid before {_iso(cert.not_valid_before_utc)}")
    if now > cert.not_valid_after_utc:
        raise PKIError(f"{what}: expired at {_iso(cert.not_valid_after_utc)}")
