"""The PEM files of ``talosctl gen ca|key|csr|crt|keypair`` (docs/talos-facts.md#talosctl-gen-pki).

Pure functions over PEM bytes, in the shapes Talos v0.9's talosctl writes them:

- a self-signed CA (``gen ca``, ``gen keypair``): Ed25519 unless RSA-4096 is asked for, subject
  O=<organization>, CA flag, KeyUsage CertSign+DigitalSignature, ExtKeyUsage
  ServerAuth+ClientAuth, optional IP SANs, 128-bit random serial;
- a key (``gen key``): Ed25519, PKCS#8 in an ``ED25519 PRIVATE KEY`` block;
- a CSR (``gen csr``): subject an empty O, the IP SANs asked for, signed by its key;
- a certificate from a CSR (``gen crt``): the CSR's subject and SANs, KeyUsage
  DigitalSignature, ExtKeyUsage ServerAuth+ClientAuth, no BasicConstraints, signed by the CA.

Where talosctl is stricter than needed (its ``gen csr`` and ``gen crt`` read PKCS#8 keys only,
so an RSA or ECDSA CA cannot sign) any key :func:`libtalos.pki.load_private_key` reads is
accepted; a CSR whose signature does not verify is refused (talosctl signs it anyway).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from libtalos import pki, spki
from libtalos.errors import PKIError

_SERVER_CLIENT = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _serial() -> int:
    while True:  # positive and below 2^128, as Talos draws them (zero is no valid serial)
        serial = secrets.randbits(128)
        if serial:
            return serial


def _hash_for(key: pki.PrivateKey) -> hashes.SHA512 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA512()


def _organization(organization: str) -> x509.Name:
    # Go's pkix.Name{Organization: []string{org}}: one O attribute, empty when org is "".
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])


def _ips(values: Sequence[str]) -> list[x509.GeneralName]:
    return [x509.IPAddress(ipaddress.ip_address(v)) for v in values]


def self_signed_ca(
    organization: str,
    *,
    not_before: dt.datetime,
    ttl: dt.timedelta,
    use_rsa: bool = False,
    ip_addresses: Sequence[str] = (),
) -> pki.CertKey:
    """A self-signed CA as talosctl's ``gen ca`` (and ``gen keypair``, with IPs) makes it:
    libtalos's CA with one O attribute (empty when ``organization`` is) and no CN."""
    return pki.new_ca(
        algorithm="rsa" if use_rsa else "ed25519",
        organizations=[organization],
        ttl=ttl,
        clock=pki.FixedClock(not_before),
        ip_addresses=ip_addresses,
    )


def new_key() -> bytes:
    """An Ed25519 private key, PEM (``ED25519 PRIVATE KEY``, PKCS#8)."""
    return pki.encode_private_key(ed25519.Ed25519PrivateKey.generate())


def spki_sha256(cert_pem: bytes) -> str:
    """``sha256:<hex>`` of the certificate's DER SubjectPublicKeyInfo: the ``ORG.sha256`` file
    of ``gen ca`` (the kubeadm-style form, not the base64 ``--cert-fingerprint``)."""
    return "sha256:" + spki.digest(spki.certificate_der(cert_pem)).hex()


def new_csr(key_pem: bytes, ip_addresses: Sequence[str], *, what: str) -> bytes:
    """A CSR for ``key_pem`` (subject an empty O, IP SANs), PEM ``CERTIFICATE REQUEST``."""
    key = pki.load_private_key(key_pem, what)
    builder = x509.CertificateSigningRequestBuilder().subject_name(_organization(""))
    if ip_addresses:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_ips(ip_addresses)), critical=False
        )
    return builder.sign(key, _hash_for(key)).public_bytes(serialization.Encoding.PEM)


def load_csr(pem: bytes, what: str) -> x509.CertificateSigningRequest:
    """The first ``CERTIFICATE REQUEST`` block of ``pem``, its signature checked."""
    for block in pki.pem_blocks(pem, what):
        if block.label not in ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"):
            continue
        try:
            csr = x509.load_der_x509_csr(block.der)
        except ValueError:
            raise PKIError(f"{what}: the CERTIFICATE REQUEST block is not a valid CSR") from None
        if not csr.is_signature_valid:
            raise PKIError(f"{what}: the CSR's signature does not verify")
        return csr
    raise PKIError(f"{what}: no CERTIFICATE REQUEST block found")


def sign_csr(
    ca: pki.LoadedCA,
    csr: x509.CertificateSigningRequest,
    *,
    not_before: dt.datetime,
    ttl: dt.timedelta,
) -> bytes:
    """The certificate ``ca`` issues for ``csr`` (talosctl's ``gen crt``), PEM.

    Its validity ends ``ttl`` from ``not_before`` but never after the CA's own.
    """
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = None
    not_after = min(not_before + ttl, ca.cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.cert.subject)
        .public_key(csr.public_key())
        .serial_number(_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(_SERVER_CLIENT, critical=False)
    )
    try:
        ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ca_ski = None
    if ca_ski is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    cert = builder.sign(ca.key, _hash_for(ca.key))
    return cert.public_bytes(serialization.Encoding.PEM)
