"""Talos's SPKI fingerprint of a certificate, with the standard library only.

The fingerprint is SHA-256 over the DER bytes of the certificate's subjectPublicKeyInfo exactly
as they appear in the certificate (Go's ``RawSubjectPublicKeyInfo``), in standard base64 with
padding (44 characters). It is what a node in maintenance mode prints, what ``talos-pki
fingerprint`` answers and what ``--cert-fingerprint`` pins, so every one of them uses this
module: a minimal DER walker (Certificate -> tbsCertificate -> its seventh field) that imports
only ``base64``, ``binascii``, ``hashlib`` and ``re``. Neither ``cryptography`` (PID 1 never
loads it) nor a YAML parser is needed, and ``talos-pki fingerprint`` starts fast.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from libtalos.errors import PKIError

_SEQUENCE = 0x30
_CONTEXT_0 = 0xA0  # [0] EXPLICIT version
_CRT_LINE = re.compile(rb"(?m)^crt:[ \t]*([A-Za-z0-9+/=]+)[ \t]*\r?$")  # Talos's {crt, key} YAML
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def _tlv(der: bytes, pos: int, end: int, what: str) -> tuple[int, int, int]:
    """The (tag, start of contents, end of contents) of the element at ``pos``."""
    if pos + 2 > end:
        raise PKIError(f"{what}: truncated certificate (DER element header cut off)")
    tag = der[pos]
    if tag & 0x1F == 0x1F:
        raise PKIError(f"{what}: not a certificate (unexpected multi-byte DER tag)")
    first = der[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise PKIError(f"{what}: not a certificate (unsupported DER length form)")
        if pos + count > end:
            raise PKIError(f"{what}: truncated certificate (DER length cut off)")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise PKIError(f"{what}: truncated certificate (DER element longer than its container)")
    return tag, pos, pos + length


def spki_der(der: bytes, what: str = "certificate") -> bytes:
    """The DER bytes of the certificate's subjectPublicKeyInfo."""
    tag, start, end = _tlv(der, 0, len(der), what)
    if tag != _SEQUENCE:
        raise PKIError(f"{what}: not a certificate (outer DER element is not a SEQUENCE)")
    if end != len(der):
        raise PKIError(f"{what}: not a certificate (trailing bytes after the DER structure)")
    tag, pos, tbs_end = _tlv(der, start, end, what)
    if tag != _SEQUENCE:
        raise PKIError(f"{what}: not a certificate (tbsCertificate is not a SEQUENCE)")
    # tbsCertificate: [version], serialNumber, signature, issuer, validity, subject, spki, ...
    tag, _, after = _tlv(der, pos, tbs_end, what)
    if tag == _CONTEXT_0:
        pos = after
    for _field in ("serialNumber", "signature", "issuer", "validity", "subject"):
        _, _, pos = _tlv(der, pos, tbs_end, what)
    tag, _, spki_end = _tlv(der, pos, tbs_end, what)
    if tag != _SEQUENCE:
        raise PKIError(f"{what}: not a certificate (subjectPublicKeyInfo is not a SEQUENCE)")
    return der[pos:spki_end]


def certificate_der(data: bytes, what: str = "certificate") -> bytes:
    """The DER of the first certificate in: PEM text, base64 of PEM, or Talos's ``{crt, key}``
    YAML (its top-level ``crt:`` line, read without a YAML parser to keep start-up fast)."""
    crt_line = _CRT_LINE.search(data) if b"-----BEGIN" not in data else None
    if crt_line is not None:
        data = crt_line.group(1)
    if b"-----BEGIN" not in data:
        try:
            decoded = base64.b64decode(b"".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise PKIError(f"{what}: neither a PEM certificate nor base64 of one") from None
        if b"-----BEGIN" not in decoded:
            raise PKIError(f"{what}: base64 input does not hold a PEM certificate")
        data = decoded
    match = _PEM.search(data)
    if match is None:
        if b"-----BEGIN CERTIFICATE-----" in data:
            raise PKIError(f"{what}: truncated PEM: the CERTIFICATE block has no END line")
        raise PKIError(f"{what}: no CERTIFICATE block found")
    try:
        return base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise PKIError(f"{what}: garbled PEM: the CERTIFICATE block is not valid base64") from None


def digest(cert_der: bytes, what: str = "certificate") -> bytes:
    """SHA-256 over a DER certificate's subjectPublicKeyInfo: the fingerprint, raw (32 bytes)."""
    return hashlib.sha256(spki_der(cert_der, what)).digest()


def fingerprint(data: bytes, what: str = "certificate") -> str:
    """Talos's SPKI fingerprint (SHA-256, standard base64 with padding) of a PEM certificate."""
    return base64.b64encode(digest(certificate_der(data, what), what)).decode("ascii")
