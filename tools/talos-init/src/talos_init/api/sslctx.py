"""TLS contexts for the node's servers, built without the ``cryptography`` package.

PID 1 keeps its memory small (bench/init_bench.py: idle RSS under 40 MiB), and ``cryptography``
alone costs it about 15 MiB. The shapes are those of :mod:`libtalos.api.tls` (TLS 1.2+, ALPN
h2, mutual TLS when a client CA is given); the differences are how PEM reaches ``ssl``:

- Talos's ``ED25519 PRIVATE KEY`` label wraps standard PKCS#8, so it is relabelled
  ``PRIVATE KEY`` as text; ``EC``/``RSA PRIVATE KEY`` and ``PRIVATE KEY`` are read by OpenSSL
  as they are;
- CA certificates go to ``load_verify_locations`` as PEM text.

When OpenSSL refuses the material, :mod:`libtalos.api.tls` (which loads ``cryptography``) is
asked for the precise message (bad PEM, a key that does not match): only the error path pays.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator

ALPN = ["h2"]
_TALOS_ED25519 = (b"-----BEGIN ED25519 PRIVATE KEY-----", b"-----END ED25519 PRIVATE KEY-----")
_PKCS8 = (b"-----BEGIN PRIVATE KEY-----", b"-----END PRIVATE KEY-----")


def standard_key_pem(key_pem: bytes) -> bytes:
    """``key_pem`` with Talos's Ed25519 label replaced by PKCS#8's (the DER is the same)."""
    return key_pem.replace(_TALOS_ED25519[0], _PKCS8[0]).replace(_TALOS_ED25519[1], _PKCS8[1])


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path ``ssl`` can read ``data`` from (an anonymous memory file: keys never hit a disk)."""
    fd = os.memfd_create("talos-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def load_chain(ctx: ssl.SSLContext, crt_pem: bytes, key_pem: bytes, what: str) -> None:
    """Load a certificate and its key into ``ctx`` (replacing what it had for new handshakes)."""
    with _memory_file(crt_pem + b"\n" + standard_key_pem(key_pem)) as path:
        try:
            ctx.load_cert_chain(path)
            return
        except ssl.SSLError:
            pass
    from libtalos.api import tls  # the precise reason; raises PKIError

    tls.load_chain(ctx, crt_pem, key_pem, what)  # a form only cryptography reads: loaded


def _load_ca(ctx: ssl.SSLContext, ca_pem: bytes, what: str) -> None:
    try:
        ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
        return
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        pass
    from libtalos.api import tls

    tls._load_ca(ctx, ca_pem, what)  # the same check, for its precise message


def _base(purpose: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN)
    return ctx


def server_context(
    crt_pem: bytes, key_pem: bytes, client_ca: bytes | None = None
) -> ssl.SSLContext:
    """Server-only TLS, or mutual TLS when ``client_ca`` is given."""
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    load_chain(ctx, crt_pem, key_pem, "server")
    if client_ca is not None:
        _load_ca(ctx, client_ca, "client CA")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca_pem: bytes, crt_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """The client side of mutual TLS (the node dialling another node when it proxies)."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    _load_ca(ctx, ca_pem, "machine CA")
    load_chain(ctx, crt_pem, key_pem, "client")
    return ctx


def insecure_client_context() -> ssl.SSLContext:
    """Encrypted, chain not checked (trustd's clients: trust rests on the token)."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
