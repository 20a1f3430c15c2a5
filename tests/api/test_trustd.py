"""trustd: what ``machine.token`` buys. A worker gets a server certificate for its own names
(CN=<hostname>, its hostname and the IPs trustd can vouch for, ServerAuth only, 24 h), which a
control plane reaches it with; the certificate opens no API call, and a CSR asking for a role or
for SANs of another shape is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import empty_pb2
from grpclib.exceptions import StreamTerminatedError
from memory_node import MemoryNode

from libtalos import pki
from libtalos.api import security_pb2, tls
from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
from libtalos.api._gen.security.security_grpc import SecurityServiceStub
from libtalos.api.channel import ClosingChannel
from libtalos.errors import NetworkError
from libtalos.secrets import CertKey
from talos_apply.cli import main
from talos_init.api import ApiServer
from talos_init.api.certs import WORKER_CERT_TTL, needs_renewal, node_server_cert
from talos_init.api.issuer import _serve
from talos_init.api.trustd import (
    TOKEN_KEY,
    CSRRefusedError,
    TrustdServer,
    sign_csr,
    uncertified,
    worker_certificate,
)

from .conftest import ServerThread

TOKEN = "abcdef.0123456789abcdef"
NOW = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.fixture
def trustd(servers, cluster):
    s = ServerThread(lambda: TrustdServer(cluster.bundle.talos_ca, TOKEN, ["127.0.0.1"], "cp"))
    servers.append(s)
    return s


def _csr(
    *,
    subject: list[x509.NameAttribute] | None = None,
    sans: list[x509.GeneralName] | None = None,
    key: object | None = None,
) -> bytes:
    key = key or ed25519.Ed25519PrivateKey.generate()
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject or []))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def _ips(cert: x509.Certificate) -> set[str]:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}


def _dns(cert: x509.Certificate) -> set[str]:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(sans.get_values_for_type(x509.DNSName))


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


# -- the worker's path: trustd over the network, then serving ---------------------------------


def test_worker_certificate_is_a_server_certificate_for_its_names(trustd, cluster):
    cert, ca = asyncio.run(
        worker_certificate([trustd.endpoint], TOKEN, ["127.0.0.1"], "worker-1", ["w1.example"])
    )
    assert ca == cluster.bundle.talos_ca.crt
    leaf = pki.load_certificate(cert.crt)
    leaf.verify_directly_issued_by(pki.load_certificate(ca))
    assert leaf.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "worker-1")])
    assert _ips(leaf) == {"127.0.0.1"}
    assert _dns(leaf) == {"worker-1", "w1.example"}
    assert _eku(leaf) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == WORKER_CERT_TTL
    assert dt.timedelta(hours=24) == WORKER_CERT_TTL


def test_control_plane_reaches_the_worker_through_its_certificate(
    trustd, cluster, configured, servers, talosconfig_for, capsys
):
    """The way the cluster uses a worker's certificate: talosctl's endpoint is a control plane,
    which forwards to the worker over mutual TLS and verifies the worker's server certificate."""
    cert, ca = asyncio.run(worker_certificate([trustd.endpoint], TOKEN, ["127.0.0.1"], "w1"))
    worker = ServerThread(
        lambda: ApiServer.configured(
            MemoryNode("w1", config_text=cluster.configs["join"]), cert, ca
        )
    )
    servers.append(worker)
    cp, _node = configured("init", "cp")
    tc = talosconfig_for([cp.endpoint], [worker.endpoint])
    assert main(["--talosconfig", str(tc), "services"]) == 0
    out = capsys.readouterr().out
    assert worker.endpoint in out


def test_a_worker_answers_for_itself_as_its_own_endpoint(
    trustd, cluster, configured, servers, talosconfig_for, capsys
):
    """``-e WORKER -n WORKER``: the worker runs the call itself (tagged with the target as
    given) instead of dialling itself, which its server-only certificate could not do; a call
    it must forward to another node still fails, for that node only."""
    cert, ca = asyncio.run(worker_certificate([trustd.endpoint], TOKEN, ["127.0.0.1"], "w1"))
    worker = ServerThread(
        lambda: ApiServer.configured(
            MemoryNode("w1", config_text=cluster.configs["join"]), cert, ca
        )
    )
    servers.append(worker)
    other, _node = configured("init", "cp")
    tc = talosconfig_for([worker.endpoint], [worker.endpoint])
    for command in (["version"], ["services"]):
        assert main(["--talosconfig", str(tc), *command]) == 0, command
        out = capsys.readouterr().out
        assert worker.endpoint in out, (command, out)
    assert main(["--talosconfig", str(tc), "logs", "apid"]) == 0  # streamed, one node: no tag
    assert "apid: started" in capsys.readouterr().out
    assert not worker.server.forwarder._channels  # nothing was dialled
    # negative control: to another node the worker must forward, and cannot
    tc = talosconfig_for([worker.endpoint], [worker.endpoint, other.endpoint])
    assert main(["--talosconfig", str(tc), "version"]) != 0
    captured = capsys.readouterr()
    assert worker.endpoint in captured.out, captured
    assert other.endpoint in captured.err + captured.out, captured


def test_wrong_token_refused(trustd):
    with pytest.raises(NetworkError, match="PERMISSION_DENIED"):
        asyncio.run(worker_certificate([trustd.endpoint], "wrong.token", ["127.0.0.1"], "w"))


def test_ips_trustd_cannot_vouch_for_are_left_out_and_reported(trustd):
    """Over loopback the request comes from 127.0.0.1: another address in the CSR is not
    certified, and the worker's request (the issuer child's ``worker`` op) names it."""
    reply = _serve(
        {
            "op": "worker",
            "endpoints": [trustd.endpoint],
            "token": TOKEN,
            "addresses": ["10.9.9.9", "127.0.0.1"],
            "hostname": "w1",
            "sans": ["cp"],
        }
    )
    leaf = pki.load_certificate(reply["crt"].encode())
    assert _ips(leaf) == {"127.0.0.1"}
    assert _dns(leaf) == {"w1"}  # "cp" is the control plane's own hostname
    assert reply["uncertified"] == ["10.9.9.9", "cp"]


async def _raw_certificate(endpoint: str, csr: bytes) -> security_pb2.CertificateResponse:
    host, port = endpoint.rsplit(":", 1)
    channel = ClosingChannel(host, int(port), ssl=tls.insecure_client_context())
    try:
        return await SecurityServiceStub(channel).Certificate(
            security_pb2.CertificateRequest(csr=csr), metadata=[(TOKEN_KEY, TOKEN)], timeout=30
        )
    finally:
        channel.close()


@pytest.mark.parametrize("org", ["os:admin", "os:reader", "system:masters", " OS:Admin"])
def test_token_holder_asking_for_a_role_is_refused(trustd, org):
    from grpclib import GRPCError

    csr = _csr(
        subject=[
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, "w1"),
        ],
        sans=[x509.DNSName("w1")],
    )
    with pytest.raises(GRPCError) as err:
        asyncio.run(_raw_certificate(trustd.endpoint, csr))
    assert err.value.status.name == "INVALID_ARGUMENT"
    assert repr(org) in (err.value.message or "")
    assert "grant no role" in (err.value.message or "")


# -- what a trustd certificate opens on a node's API ------------------------------------------


async def _kubeconfig(endpoint: str, ca: bytes, client: CertKey) -> bytes:
    host, port = endpoint.rsplit(":", 1)
    channel = ClosingChannel(host, int(port), ssl=tls.client_context(ca, client.crt, client.key))
    try:
        replies = await MachineServiceStub(channel).Kubeconfig(empty_pb2.Empty(), timeout=30)
        return b"".join(r.bytes for r in replies)
    finally:
        channel.close()


def test_trustd_certificate_cannot_call_kubeconfig(trustd, cluster, configured, admin):
    cert, ca = asyncio.run(worker_certificate([trustd.endpoint], TOKEN, ["127.0.0.1"], "w1"))
    cp, _node = configured("init", "cp")
    # the control plane's API refuses the trustd certificate as a client: the connection ends
    with pytest.raises((StreamTerminatedError, ssl.SSLError, ConnectionError)):
        asyncio.run(_kubeconfig(cp.endpoint, ca, cert))
    # negative control: the admin certificate of the talosconfig gets the kubeconfig
    archive = asyncio.run(_kubeconfig(cp.endpoint, ca, admin))
    assert b"client-certificate-data" in gzip.decompress(archive)


def _server_verdict(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """Run one TLS handshake in memory; what the server said of the client's certificate."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as exc:
                if side is s:
                    return str(exc.verify_message)
                raise
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if s.version() is not None and c.version() is not None:
            try:
                s.read(1)  # TLS 1.3: the server checks the client's certificate here
            except ssl.SSLWantReadError:
                return "accepted"
            except ssl.SSLCertVerificationError as exc:
                return str(exc.verify_message)
    return "no verdict"


def test_why_the_api_refuses_it_no_client_auth(trustd, cluster, admin):
    """The machine API's mutual TLS (the same context as ApiServer.configured) accepts a client
    certificate from the machine CA only when its extended key usage includes ClientAuth."""
    cert, ca = asyncio.run(worker_certificate([trustd.endpoint], TOKEN, ["127.0.0.1"], "w1"))
    own = node_server_cert(cluster.bundle.talos_ca, ["127.0.0.1"], "cp")
    server = tls.server_context(own.crt, own.key, client_ca=ca)
    assert _server_verdict(server, tls.client_context(ca, cert.crt, cert.key)) == (
        "unsuitable certificate purpose"
    )
    assert _server_verdict(server, tls.client_context(ca, admin.crt, admin.key)) == "accepted"


# -- the signing policy, without a network ----------------------------------------------------


def _sign(
    csr: bytes, peer: str | None = "10.5.0.3", reserved=("10.5.0.2", "cp")
) -> x509.Certificate:
    crt = sign_csr(pki_ca(), csr, peer=peer, reserved=list(reserved), clock=pki.FixedClock(NOW))
    return pki.load_certificate(crt)


_CA: list[CertKey] = []


def pki_ca() -> CertKey:
    if not _CA:
        _CA.append(pki.new_ca(algorithm="ed25519", organizations=["talos"]))
    return _CA[0]


def test_issued_shape_server_auth_only_short_validity():
    leaf = _sign(
        _csr(subject=[x509.NameAttribute(NameOID.COMMON_NAME, "w1")], sans=[x509.DNSName("w1")])
    )
    assert _eku(leaf) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.not_valid_before_utc == NOW
    assert leaf.not_valid_after_utc == NOW + dt.timedelta(hours=24)
    # renewed before it expires: due at half-life, not before
    crt = leaf.public_bytes(serialization.Encoding.PEM)
    assert not needs_renewal(crt, NOW + dt.timedelta(hours=11, minutes=59))
    assert needs_renewal(crt, NOW + dt.timedelta(hours=12))


def test_other_subject_attributes_are_stripped_to_the_hostname():
    leaf = _sign(
        _csr(
            subject=[
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acme"),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                x509.NameAttribute(NameOID.COMMON_NAME, "w1"),
            ],
            sans=[x509.DNSName("w1")],
        )
    )
    assert leaf.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "w1")])
    assert not leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)


def test_a_csr_without_cn_gets_its_first_hostname():
    leaf = _sign(_csr(sans=[x509.IPAddress(ipaddress.ip_address("10.5.0.3")), x509.DNSName("w1")]))
    assert leaf.subject.rfc4514_string() == "CN=w1"


@pytest.mark.parametrize(
    ("san", "message"),
    [
        (x509.DNSName("*.example.com"), "'*.example.com' is not a hostname"),
        (x509.DNSName("bad_name"), "'bad_name' is not a hostname"),
        (x509.DNSName("-lead.example"), "is not a hostname"),
        (x509.DNSName("a" * 64), "is not a hostname"),
        (x509.UniformResourceIdentifier("spiffe://cluster/admin"), "UniformResourceIdentifier SAN"),
        (x509.RFC822Name("admin@example.com"), "RFC822Name SAN"),
        (x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])), "Director"),
    ],
)
def test_sans_of_another_shape_are_refused(san, message):
    csr = _csr(
        subject=[x509.NameAttribute(NameOID.COMMON_NAME, "w1")], sans=[x509.DNSName("w1"), san]
    )
    with pytest.raises(CSRRefusedError, match=message.replace("*", r"\*")):
        _sign(csr)


def test_common_name_that_is_not_a_hostname_is_refused():
    with pytest.raises(CSRRefusedError, match="common name 'admin user' is not a hostname"):
        _sign(_csr(subject=[x509.NameAttribute(NameOID.COMMON_NAME, "admin user")]))


def test_role_in_organizational_unit_is_refused_too():
    csr = _csr(subject=[x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "os:admin")])
    with pytest.raises(CSRRefusedError, match="'os:admin'"):
        _sign(csr)


def test_weak_key_is_refused():
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key is the point
    with pytest.raises(CSRRefusedError, match="key is not accepted"):
        _sign(_csr(sans=[x509.DNSName("w1")], key=weak))


def test_too_many_sans_refused():
    sans = [x509.DNSName(f"n{i}.example") for i in range(65)]
    with pytest.raises(CSRRefusedError, match="65 SANs; the limit is 64"):
        _sign(_csr(sans=sans))


def _ip(text: str) -> x509.IPAddress:
    return x509.IPAddress(ipaddress.ip_address(text))


@pytest.mark.parametrize(
    ("peer", "certified"),
    [
        ("10.5.0.3", {"10.5.0.3", "127.0.0.1", "::1"}),  # the request's source address
        ("::ffff:10.5.0.3", {"10.5.0.3", "127.0.0.1", "::1"}),  # seen by a dual-stack listener
        ("10.5.0.7", {"127.0.0.1", "::1"}),  # another host's address
        (None, {"127.0.0.1", "::1"}),  # source unknown: loopback only
        ("10.5.0.2", {"127.0.0.1", "::1"}),  # the control plane's own address: never
    ],
)
def test_ips_are_certified_only_when_trustd_can_vouch_for_them(peer, certified):
    csr = _csr(
        sans=[
            _ip("10.5.0.3"),
            _ip("10.5.0.9"),
            _ip("10.5.0.2"),
            _ip("127.0.0.1"),
            _ip("::1"),
            x509.DNSName("w1"),
        ]
    )
    assert _ips(_sign(csr, peer=peer)) == certified


def test_control_plane_names_are_never_certified_to_a_worker():
    csr = _csr(
        subject=[x509.NameAttribute(NameOID.COMMON_NAME, "CP")],
        sans=[x509.DNSName("cp"), x509.DNSName("w1"), x509.DNSName("api.example")],
    )
    leaf = _sign(csr, reserved=["cp", "api.example", "10.5.0.2"])
    assert _dns(leaf) == {"w1"}
    assert leaf.subject.rfc4514_string() == "CN=w1"
    crt = leaf.public_bytes(serialization.Encoding.PEM)
    assert uncertified(["w1", "cp", "api.example"], crt) == ["cp", "api.example"]


def test_issuer_sign_op_applies_the_peer_address():
    """PID 1 signs in a child: the peer address and reserved names must reach it."""
    ca = pki_ca()
    csr = _csr(sans=[_ip("10.5.0.3"), _ip("10.5.0.9"), x509.DNSName("w1"), x509.DNSName("cp")])
    request = {
        "op": "sign",
        "ca_crt": ca.crt.decode(),
        "ca_key": ca.key.decode(),
        "csr": csr.decode(),
        "peer": "10.5.0.3",
        "reserved": ["cp"],
    }
    leaf = pki.load_certificate(_serve(request)["crt"].encode())
    assert _ips(leaf) == {"10.5.0.3"}
    assert _dns(leaf) == {"w1"}
    refused = _csr(subject=[x509.NameAttribute(NameOID.ORGANIZATION_NAME, "os:admin")])
    with pytest.raises(CSRRefusedError):
        _serve({**request, "csr": refused.decode()})
