"""TLS contexts for the machine API, built with Python's ``ssl`` (OpenSSL 3: Ed25519 works).

Three shapes (docs/talos-facts.md#pki, #maintenance-api):

- :func:`server_context` — the node's side: server-only TLS in maintenance mode, mutual TLS
  (``client_ca`` given: a client certificate from that CA is required) once configured;
- :func:`client_context` — the client's side of mutual TLS: the server must chain to the CA and
  name the endpoint; the client presents its certificate;
- :func:`insecure_client_context` — ``--insecure``: no chain check (maintenance mode's
  certificate is self-signed); the key pin, if any, is checked with :func:`check_pin` on the
  handshake's peer certificate (its :mod:`libtalos.spki` digest) before anything else is sent.

Keys never touch the disk: PEM goes to ``ssl`` through an anonymous memory file (``memfd``).
Talos's ``ED25519 PRIVATE KEY`` label wraps standard PKCS#8, so it is relabelled ``PRIVATE KEY``
as text. Building a context does not load ``cryptography`` (PID 1 builds its servers' contexts
and keeps its memory small): only when OpenSSL refuses the material is ``cryptography`` asked
for the precise reason (bad PEM, a key that does not match) or for a form OpenSSL cannot read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import ssl
import tempfile
from collections.abc import Iterator

from libtalos import spki
from libtalos.errors import PKIError, UsageError

ALPN = ["h2"]
_TALOS_ED25519 = (b"-----BEGIN ED25519 PRIVATE KEY-----", b"-----END ED25519 PRIVATE KEY-----")
_PKCS8 = (b"-----BEGIN PRIVATE KEY-----", b"-----END PRIVATE KEY-----")


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path the ``ssl`` module can read ``data`` from, gone when the block ends."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("talos-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(prefix="talos-tls-") as fh:  # 0600 by construction
        fh.write(data)
        fh.flush()
        yield fh.name


def relabel_key_pem(key_pem: bytes) -> bytes:
    """``key_pem`` with Talos's Ed25519 label replaced by PKCS#8's (the DER is the same)."""
    return key_pem.replace(_TALOS_ED25519[0], _PKCS8[0]).replace(_TALOS_ED25519[1], _PKCS8[1])


def _standard_key_pem(key_pem: bytes, what: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    from libtalos import pki

    key = pki.load_private_key(key_pem, what)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_chain(ctx: ssl.SSLContext, crt_pem: bytes, key_pem: bytes, what: str) -> None:
    """Load a certificate and its key into ``ctx`` (replacing what it had, for new handshakes)."""
    with _memory_file(crt_pem + b"\n" + relabel_key_pem(key_pem)) as path:
        try:
            ctx.load_cert_chain(path)  # OpenSSL also checks that the key matches
            return
        except ssl.SSLError:
            pass
    from libtalos import pki  # the precise reason, or a key form only cryptography reads

    pki.load_certificate(crt_pem, f"{what} certificate")
    pki.check_key_matches(crt_pem, key_pem, what)
    with _memory_file(crt_pem + b"\n" + _standard_key_pem(key_pem, f"{what} key")) as path:
        try:
            ctx.load_cert_chain(path)
        except ssl.SSLError:
            raise PKIError(f"{what}: TLS cannot use this certificate and key") from None


def _load_ca(ctx: ssl.SSLContext, ca_pem: bytes, what: str) -> None:
    try:
        ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
        return
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        pass
    from cryptography.hazmat.primitives import serialization

    from libtalos import pki

    certs = pki.load_certificates(ca_pem, what)
    der = b"".join(c.public_bytes(serialization.Encoding.DER) for c in certs)
    try:
        ctx.load_verify_locations(cadata=der)
    except ssl.SSLError:
        raise PKIError(f"{what}: TLS cannot use this CA certificate") from None


def _base(purpose: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN)
    return ctx


def server_context(
    crt_pem: bytes, key_pem: bytes, client_ca: bytes | None = None
) -> ssl.SSLContext:
    """The node's TLS: server-only, or mutual when ``client_ca`` is given."""
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    load_chain(ctx, crt_pem, key_pem, "server")
    if client_ca is not None:
        _load_ca(ctx, client_ca, "client CA")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca_pem: bytes, crt_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """The client's side of mutual TLS (talosconfig ``ca``, ``crt``, ``key``)."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    _load_ca(ctx, ca_pem, "talosconfig ca")
    load_chain(ctx, crt_pem, key_pem, "client")
    return ctx


def insecure_client_context() -> ssl.SSLContext:
    """``--insecure``: encrypted, but the server's certificate chain is not checked."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def parse_pin(text: str, what: str = "--cert-fingerprint") -> bytes:
    """A Talos SPKI fingerprint (standard base64 of a SHA-256, 44 characters) as 32 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(
            f"{what}: not base64 (expected the 44-character SPKI fingerprint)"
        ) from None
    if len(raw) != hashlib.sha256().digest_size:
        raise UsageError(f"{what}: expected a SHA-256 fingerprint (32 bytes), got {len(raw)} bytes")
    return raw


def check_pin(cert_der: bytes | None, pins: list[bytes]) -> None:
    """Raise :class:`PKIError` unless the peer's leaf certificate matches one of ``pins``."""
    if cert_der is None:
        raise PKIError("the server presented no certificate")
    got = spki.digest(cert_der, "the server's certificate")
    if got not in pins:
        raise PKIError(
            "the server's certificate fingerprint "
            f"{base64.b64encode(got).decode()} does not match --cert-fingerprint; "
            "nothing was sent"
        )
