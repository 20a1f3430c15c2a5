"""trustd (TALOS-FACTS §3): certificate issuance for nodes on :50001, authenticated by
``machine.token`` in the gRPC metadata key ``token``.

Server side (control-plane nodes, which hold ``machine.ca``'s key): :class:`TrustdServer` signs a
CSR with the machine CA, keeping the CSR's subject and SANs, ServerAuth+ClientAuth, 24 h. Its own
TLS is server-only with a certificate from the same CA: as in Talos, a client does not verify it
(trust rests on the shared token alone), which is why the token is compared in constant time and
nothing but Certificate is served (v0.9's token-protected ReadFile/WriteFile are not).

Client side (workers): :func:`worker_certificate` makes an Ed25519 key and a CSR with the node's
SANs and asks the first trustd endpoint that answers.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from grpclib import GRPCError
from grpclib.const import Status as GrpcStatus
from grpclib.server import Server, Stream

from libtalos.api import TRUSTD_PORT, security_pb2, tls
from libtalos.api._gen.security import security_grpc
from libtalos.api.channel import ClosingChannel
from libtalos.api.wire import split_target
from libtalos.errors import NetworkError, PKIError, TalosError
from libtalos.secrets import CertKey
from talos_init.api.certs import NODE_CERT_TTL, node_server_cert

if TYPE_CHECKING:
    from libtalos import pki

# cryptography (libtalos.pki, x509) is imported inside the functions that sign: in PID 1 they
# run in a child (talos_init.api.issuer), so the server itself never loads it.
Signer = Callable[[bytes], Awaitable[bytes]]  # CSR PEM -> certificate PEM

TOKEN_KEY = "token"  # noqa: S105 - the name of a metadata key, not a secret
MAX_CSR_BYTES = 64 << 10


def sign_csr(
    machine_ca: CertKey,
    csr_pem: bytes,
    *,
    ttl: dt.timedelta = NODE_CERT_TTL,
    clock: pki.Clock | None = None,
) -> bytes:
    """A certificate for ``csr_pem``'s key, subject and SANs, signed by ``machine_ca``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from libtalos import pki

    ca = pki.LoadedCA.load(machine_ca, "machine CA")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise PKIError("the CSR is not valid PEM") from None
    if not csr.is_signature_valid:
        raise PKIError("the CSR's signature does not verify")
    now = clock.now() if clock is not None else dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.cert.subject)
        .public_key(csr.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") | 1)
        .not_valid_before(now)
        .not_valid_after(min(now + ttl, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = None
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    algorithm = None if isinstance(ca.key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(ca.key, algorithm)
    return cert.public_bytes(serialization.Encoding.PEM)


class SecurityService(security_grpc.SecurityServiceBase):
    def __init__(self, machine_ca: CertKey, token: str, signer: Signer | None = None) -> None:
        if signer is None:
            from libtalos import pki

            pki.LoadedCA.load(machine_ca, "machine CA")  # fail at start-up, not per call
        self.machine_ca = machine_ca
        self._token = token.encode()
        self._signer = signer

    async def _sign(self, csr: bytes) -> bytes:
        if self._signer is not None:
            return await self._signer(csr)
        return sign_csr(self.machine_ca, csr)

    def _authorize(self, stream: Stream[Any, Any]) -> None:
        given = stream.metadata.get(TOKEN_KEY, "") if stream.metadata is not None else ""
        if not hmac.compare_digest(str(given).encode(), self._token):
            raise GRPCError(GrpcStatus.PERMISSION_DENIED, "invalid token")

    async def Certificate(self, stream: Stream[Any, Any]) -> None:  # noqa: N802 - proto name
        self._authorize(stream)
        req = await stream.recv_message()
        assert req is not None  # noqa: S101 - grpclib delivers the unary request
        if len(req.csr) > MAX_CSR_BYTES:
            raise GRPCError(GrpcStatus.INVALID_ARGUMENT, "the CSR is too large")
        try:
            crt = await self._sign(req.csr)
        except TalosError as exc:
            raise GRPCError(GrpcStatus.INVALID_ARGUMENT, exc.message) from None
        await stream.send_message(security_pb2.CertificateResponse(ca=self.machine_ca.crt, crt=crt))

    async def ReadFile(self, stream: Stream[Any, Any]) -> None:  # noqa: N802 - proto name
        raise GRPCError(GrpcStatus.UNIMPLEMENTED, "ReadFile is not served")

    async def WriteFile(self, stream: Stream[Any, Any]) -> None:  # noqa: N802 - proto name
        raise GRPCError(GrpcStatus.UNIMPLEMENTED, "WriteFile is not served")


class TrustdServer:
    """trustd on a control plane. ``own``: its TLS certificate (default: issued here from
    ``machine_ca``); ``signer``: signs CSRs (default: :func:`sign_csr` in this process; PID 1
    passes a child-process signer, so that it never loads cryptography)."""

    def __init__(
        self,
        machine_ca: CertKey,
        token: str,
        addresses: Sequence[str],
        hostname: str = "",
        *,
        own: CertKey | None = None,
        signer: Signer | None = None,
    ) -> None:
        if own is None:
            own = node_server_cert(machine_ca, [*addresses, "127.0.0.1"], hostname)
        self.ssl = tls.server_context(own.crt, own.key)
        self._server = Server([SecurityService(machine_ca, token, signer)])
        self.port: int | None = None

    def renew(self, own: CertKey) -> None:
        """A new TLS certificate for new connections; the listener stays."""
        tls.load_chain(self.ssl, own.crt, own.key, "trustd")

    async def start(self, host: str | None = None, port: int = TRUSTD_PORT) -> int:
        await self._server.start(host, port, ssl=self.ssl, reuse_address=True)
        inner: Any = self._server._server  # grpclib keeps the asyncio server here
        self.port = int(inner.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()


def make_csr(
    addresses: Sequence[str], hostname: str, cert_sans: Sequence[str] = ()
) -> tuple[bytes, bytes]:
    """A new Ed25519 key (Talos's PEM label) and a CSR with the node's SANs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from libtalos import pki

    key = ed25519.Ed25519PrivateKey.generate()
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys([*addresses, hostname, *cert_sans]):
        if not name:
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, None)
    return pki.encode_private_key(key), csr.public_bytes(serialization.Encoding.PEM)


async def worker_certificate(
    endpoints: Sequence[str],
    token: str,
    addresses: Sequence[str],
    hostname: str,
    cert_sans: Sequence[str] = (),
    *,
    timeout: float = 30.0,
) -> tuple[CertKey, bytes]:
    """The worker's API certificate from trustd: (cert and key, machine CA certificate)."""
    from libtalos import pki
    from libtalos.api._gen.security.security_grpc import SecurityServiceStub

    key, csr = make_csr(addresses, hostname, cert_sans)
    reasons: list[str] = []
    for endpoint in endpoints:
        host, port = split_target(endpoint, TRUSTD_PORT)
        channel = ClosingChannel(host, port, ssl=tls.insecure_client_context())
        try:
            reply = await SecurityServiceStub(channel).Certificate(
                security_pb2.CertificateRequest(csr=csr),
                metadata=[(TOKEN_KEY, token)],
                timeout=timeout,
            )
        except GRPCError as exc:
            reasons.append(f"{endpoint}: {exc.status.name}: {exc.message or ''}")
            continue
        except (TimeoutError, OSError) as exc:
            reasons.append(f"{endpoint}: {type(exc).__name__}")
            continue
        finally:
            channel.close()
        pki.check_key_matches(reply.crt, key, "trustd certificate")
        return CertKey(reply.crt, key), reply.ca
    raise NetworkError("trustd: no endpoint issued a certificate: " + "; ".join(reasons))
