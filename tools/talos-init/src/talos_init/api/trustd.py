"""trustd (docs/talos-facts.md#pki): certificate issuance for nodes on :50001, authenticated by
``machine.token`` in the gRPC metadata key ``token``.

Server side (control-plane nodes, which hold ``machine.ca``'s key): :class:`TrustdServer` signs a
worker's CSR with the machine CA. The token is in every worker's join config, so what it buys is
kept to what a worker needs to serve its API (:func:`sign_csr`):

- the subject is ``CN=<hostname>`` and nothing else; a CSR asking for a role-granting
  organization (``O=os:admin``, ``O=system:masters``, any ``os:``/``system:`` value) is refused;
- SANs are DNS hostnames and IP addresses only (anything else is refused). An IP is certified
  when it is loopback or the address the request came from; a name or address of the control
  plane itself is never certified. The names not certified are left out, and the worker says
  which (:func:`uncertified`);
- ServerAuth only: the certificate cannot authenticate a client, so it opens no API call on any
  node (the machine API accepts only client certificates whose extended key usage includes
  ClientAuth);
- 24 h validity (:data:`~talos_init.api.certs.WORKER_CERT_TTL`); the worker renews at half-life.

Its own TLS is server-only with a certificate from the same CA: as in Talos, a client does not
verify it (trust rests on the shared token alone), which is why the token is compared in
constant time and nothing but Certificate is served (v0.9's token-protected ReadFile/WriteFile
are not).

Client side (workers): :func:`worker_certificate` makes an Ed25519 key and a CSR with the node's
hostname and SANs and asks the first trustd endpoint that answers.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
from talos_init.api.certs import WORKER_CERT_TTL, node_server_cert

if TYPE_CHECKING:
    from cryptography import x509

    from libtalos import pki

# cryptography (libtalos.pki, x509) is imported inside the functions that sign: in PID 1 they
# run in a child (talos_init.api.issuer), so the server itself never loads it.

# CSR PEM, the request's peer address (None: unknown), the control plane's own names -> PEM
Signer = Callable[[bytes, str | None, Sequence[str]], Awaitable[bytes]]

TOKEN_KEY = "token"  # noqa: S105 - the name of a metadata key, not a secret
MAX_CSR_BYTES = 64 << 10
MAX_SANS = 64  # a node's addresses, hostname and certSANs: a few
ROLE_PREFIXES = ("os:", "system:")  # Talos API roles (v0.11+) and Kubernetes groups
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SHOWN = 80  # characters of a refused value quoted in an error


class CSRRefusedError(PKIError):
    """trustd will not sign this CSR (the message says which part and why)."""


def _shown(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def is_hostname(name: str) -> bool:
    """An RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, at
    most 253 characters, no trailing dot, no wildcard."""
    if not name or len(name) > 253:
        return False
    return all(_LABEL.fullmatch(label) for label in name.lower().split("."))


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
    return ip


def requested_names(
    addresses: Sequence[str], hostname: str, cert_sans: Sequence[str] = ()
) -> list[str]:
    """The names a worker asks trustd for, in order and without duplicates."""
    return list(dict.fromkeys(n for n in [*addresses, hostname, *cert_sans] if n))


def certified_names(crt_pem: bytes) -> set[str]:
    """The SANs of a certificate (DNS names lowercased, IPs in canonical form)."""
    from cryptography import x509

    from libtalos import pki

    cert = pki.load_certificate(crt_pem, "trustd certificate")
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {d.lower() for d in sans.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in sans.get_values_for_type(x509.IPAddress)
    }


def uncertified(requested: Iterable[str], crt_pem: bytes) -> list[str]:
    """The requested names that the issued certificate does not carry."""
    have = certified_names(crt_pem)
    out = []
    for name in requested:
        ip = _ip(name)
        if (str(ip) if ip is not None else name.lower()) not in have:
            out.append(name)
    return out


def _check_subject(csr: x509.CertificateSigningRequest) -> str:
    """The CSR's CN ("" when none); refuses role-granting organizations."""
    from cryptography.x509.oid import NameOID

    common = ""
    for attr in csr.subject:
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("latin-1")
        if attr.oid in (NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME):
            if value.strip().lower().startswith(ROLE_PREFIXES):
                raise CSRRefusedError(
                    f"the CSR asks for organization {_shown(value)}: trustd issues worker "
                    "certificates that grant no role (the subject is CN=<hostname> only)"
                )
        elif attr.oid == NameOID.COMMON_NAME:
            if not is_hostname(value):
                raise CSRRefusedError(f"the CSR's common name {_shown(value)} is not a hostname")
            common = value
    return common


def _check_key(csr: x509.CertificateSigningRequest) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    key = csr.public_key()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size >= 256:
        return
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return
    raise CSRRefusedError(
        "the CSR's key is not accepted (Ed25519, ECDSA P-256 or larger, or RSA of 2048 bits "
        "or more)"
    )


def _check_sans(
    csr: x509.CertificateSigningRequest, common: str, peer: str | None, reserved: Sequence[str]
) -> tuple[list[str], list[x509.GeneralName]]:
    """(DNS names, IP SANs) to certify. Refuses a SAN that is neither a hostname nor an IP."""
    from cryptography import x509

    try:
        requested = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        requested = []
    if len(requested) > MAX_SANS:
        raise CSRRefusedError(f"the CSR has {len(requested)} SANs; the limit is {MAX_SANS}")
    peer_ip = _ip(peer) if peer else None
    own_ips = {ip for ip in map(_ip, reserved) if ip is not None and not ip.is_loopback}
    own_dns = {r.lower() for r in reserved if _ip(r) is None}
    dns: list[str] = []
    ips: list[x509.GeneralName] = []
    for name in requested:
        if isinstance(name, x509.DNSName):
            if not is_hostname(name.value):
                raise CSRRefusedError(
                    f"the CSR's DNS SAN {_shown(name.value)} is not a hostname "
                    "(letters, digits, hyphens and dots; no wildcard)"
                )
            if name.value.lower() not in own_dns:
                dns.append(name.value)
        elif isinstance(name, x509.IPAddress):
            ip = name.value
            if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
                raise CSRRefusedError(f"the CSR's IP SAN {_shown(ip)} is a network, not an address")
            if ip.is_loopback or (ip == peer_ip and ip not in own_ips):
                ips.append(name)
        else:
            raise CSRRefusedError(
                f"the CSR asks for a {type(name).__name__} SAN: trustd certifies only DNS "
                "hostnames and IP addresses"
            )
    if common and common.lower() not in own_dns and common.lower() not in map(str.lower, dns):
        dns.insert(0, common)
    return list(dict.fromkeys(dns)), list(dict.fromkeys(ips))


def sign_csr(
    machine_ca: CertKey,
    csr_pem: bytes,
    *,
    peer: str | None,
    reserved: Sequence[str] = (),
    ttl: dt.timedelta = WORKER_CERT_TTL,
    clock: pki.Clock | None = None,
) -> bytes:
    """A worker's API certificate for ``csr_pem``'s key, signed by ``machine_ca`` (the policy is
    in the module docstring). ``peer``: the address the request came from (None: unknown, so
    only loopback IPs are certified); ``reserved``: the control plane's own names and addresses,
    never certified to a worker. Raises :class:`CSRRefusedError` for a CSR it will not sign."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from libtalos import pki

    ca = pki.LoadedCA.load(machine_ca, "machine CA")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise CSRRefusedError("the CSR is not valid PEM") from None
    if not csr.is_signature_valid:
        raise CSRRefusedError("the CSR's signature does not verify")
    _check_key(csr)
    common = _check_subject(csr)
    dns, ips = _check_sans(csr, common, peer, reserved)
    hostname = common if common and common in dns else (dns[0] if dns else "")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)] if hostname else [])
    now = clock.now() if clock is not None else dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
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
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    if names or ips:
        builder = builder.add_extension(x509.SubjectAlternativeName([*names, *ips]), critical=False)
    algorithm = None if isinstance(ca.key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(ca.key, algorithm)
    return cert.public_bytes(serialization.Encoding.PEM)


class SecurityService(security_grpc.SecurityServiceBase):
    def __init__(
        self,
        machine_ca: CertKey,
        token: str,
        signer: Signer | None = None,
        reserved: Sequence[str] = (),
    ) -> None:
        if signer is None:
            from libtalos import pki

            pki.LoadedCA.load(machine_ca, "machine CA")  # fail at start-up, not per call
        self.machine_ca = machine_ca
        self.reserved = list(reserved)
        self._token = token.encode()
        self._signer = signer

    async def _sign(self, csr: bytes, peer: str | None) -> bytes:
        if self._signer is not None:
            return await self._signer(csr, peer, self.reserved)
        return sign_csr(self.machine_ca, csr, peer=peer, reserved=self.reserved)

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
        addr = stream.peer.addr()
        peer = str(addr[0]) if addr else None
        try:
            crt = await self._sign(req.csr, peer)
        except TalosError as exc:
            raise GRPCError(GrpcStatus.INVALID_ARGUMENT, exc.message) from None
        await stream.send_message(security_pb2.CertificateResponse(ca=self.machine_ca.crt, crt=crt))

    async def ReadFile(self, stream: Stream[Any, Any]) -> None:  # noqa: N802 - proto name
        raise GRPCError(GrpcStatus.UNIMPLEMENTED, "ReadFile is not served")

    async def WriteFile(self, stream: Stream[Any, Any]) -> None:  # noqa: N802 - proto name
        raise GRPCError(GrpcStatus.UNIMPLEMENTED, "WriteFile is not served")


class TrustdServer:
    """trustd on a control plane. ``addresses``, ``hostname`` and ``cert_sans`` name this
    control plane: they are never certified to a worker. ``own``: its TLS certificate (default:
    issued here from ``machine_ca``); ``signer``: signs CSRs (default: :func:`sign_csr` in this
    process; PID 1 passes a child-process signer, so that it never loads cryptography)."""

    def __init__(
        self,
        machine_ca: CertKey,
        token: str,
        addresses: Sequence[str],
        hostname: str = "",
        *,
        cert_sans: Sequence[str] = (),
        own: CertKey | None = None,
        signer: Signer | None = None,
    ) -> None:
        if own is None:
            own = node_server_cert(machine_ca, [*addresses, "127.0.0.1"], hostname, cert_sans)
        self.ssl = tls.server_context(own.crt, own.key)
        reserved = requested_names(addresses, hostname, cert_sans)
        self._server = Server([SecurityService(machine_ca, token, signer, reserved)])
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
    """A new Ed25519 key (Talos's PEM label) and a CSR with subject ``CN=<hostname>`` and the
    node's SANs. Names trustd would refuse (neither an IP nor a hostname) are left out."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import NameOID

    from libtalos import pki

    key = ed25519.Ed25519PrivateKey.generate()
    names: list[x509.GeneralName] = []
    for name in requested_names(addresses, hostname, cert_sans):
        ip = _ip(name)
        if ip is not None:
            names.append(x509.IPAddress(ip))
        elif is_hostname(name):
            names.append(x509.DNSName(name))
    common = [x509.NameAttribute(NameOID.COMMON_NAME, hostname)] if is_hostname(hostname) else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(common))
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
    """The worker's API certificate from trustd: (cert and key, machine CA certificate).
    :func:`uncertified` tells which of the requested names trustd left out."""
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
