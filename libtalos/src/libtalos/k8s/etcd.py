"""etcd on a control-plane node: its certificates and its command line.

What Talos makes: docs/talos-facts.md#pki, #control-plane.

Certificates come from the etcd CA (``cluster.etcd.ca``) and live 10 years, as Talos's:

- server: CN = hostname, SANs = the node's IPs and DNS names plus localhost/127.0.0.1/::1 (local
  clients dial the loopback), ExtKeyUsage ServerAuth+ClientAuth;
- peer: CN = hostname, SANs = the node's IPs and DNS names, ServerAuth+ClientAuth (a member is
  both the server and the client of its peers);
- client: CN ``talos`` (the node's own tools: member add/remove, health), ClientAuth.

The command line is etcd 3.4's (Debian's ``etcd-server``): mutual TLS on both ports
(``client-cert-auth`` and ``peer-client-cert-auth``), ``initial-cluster-state=new`` with only this
member for the bootstrap node, ``existing`` with the full member list for a joining node.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from libtalos.errors import Problem, TalosError, ValidationError
from libtalos.secrets import CertKey

if TYPE_CHECKING:  # pki loads cryptography: imported where certificates are issued
    from libtalos import pki

ETCD_CERT_TTL = dt.timedelta(hours=87600)  # internal/pkg/etcd/certs.go: 10 years
CLIENT_PORT = 2379
PEER_PORT = 2380
DATA_DIR = "/var/lib/etcd"
PKI_DIR = "/system/secrets/etcd"  # where the node keeps ca.crt, server.*, peer.*, client.*
ETCD_BINARY = "/usr/bin/etcd"
CLIENT_COMMON_NAME = "talos"

ClusterState = Literal["new", "existing"]

# Flags this module owns: an ``extraArgs`` entry may not replace them (TLS and membership would
# silently break). Everything else in ``cluster.etcd.extraArgs`` is passed through.
DENIED_EXTRA_ARGS = frozenset(
    {
        "name",
        "data-dir",
        "initial-cluster-state",
        "initial-cluster",
        "cert-file",
        "key-file",
        "trusted-ca-file",
        "peer-cert-file",
        "peer-key-file",
        "peer-trusted-ca-file",
        "client-cert-auth",
        "peer-client-cert-auth",
        "auto-tls",
        "peer-auto-tls",
    }
)


@dataclass(frozen=True)
class EtcdCerts:
    """What a control-plane node needs to run etcd and talk to it (PEM bytes)."""

    ca: bytes  # the etcd CA certificate (no key)
    server: CertKey
    peer: CertKey
    client: CertKey

    def files(self) -> dict[str, tuple[bytes, int]]:
        """File name (relative to the etcd PKI directory) -> (content, mode); keys are 0600."""
        out: dict[str, tuple[bytes, int]] = {"ca.crt": (self.ca, 0o644)}
        for name, pair in (("server", self.server), ("peer", self.peer), ("client", self.client)):
            out[f"{name}.crt"] = (pair.crt, 0o644)
            out[f"{name}.key"] = (pair.key, 0o600)
        return out


def _check_ips(ips: Sequence[str]) -> list[str]:
    out = []
    for ip in ips:
        try:
            out.append(str(ipaddress.ip_address(ip)))
        except ValueError:
            raise TalosError(f"etcd: {ip!r} is not an IP address") from None
    return out


def issue_etcd_certs(
    etcd_ca: CertKey,
    *,
    hostname: str,
    ips: Sequence[str],
    dns_names: Sequence[str] = (),
    clock: pki.Clock | None = None,
    rng: pki.Random | None = None,
) -> EtcdCerts:
    """Issue the server, peer and client certificates of one node from ``etcd_ca``."""
    if not hostname:
        raise TalosError("etcd: the node has no hostname (the certificates' CN)")
    from libtalos import pki

    loaded = pki.LoadedCA.load(etcd_ca, "cluster.etcd.ca")
    node_ips = _check_ips(ips)
    names = [hostname, *[d for d in dns_names if d != hostname]]

    def leaf(kind: pki.LeafKind, cn: str, dns: Sequence[str], addrs: Sequence[str]) -> CertKey:
        return pki.issue(
            loaded,
            kind=kind,
            common_name=cn,
            dns_names=dns,
            ip_addresses=addrs,
            ttl=ETCD_CERT_TTL,
            clock=clock,
            rng=rng,
        )

    loopback = [ip for ip in ("127.0.0.1", "::1") if ip not in node_ips]
    return EtcdCerts(
        ca=etcd_ca.crt,
        server=leaf("peer", hostname, [*names, "localhost"], [*node_ips, *loopback]),
        peer=leaf("peer", hostname, names, node_ips),
        client=leaf("client", CLIENT_COMMON_NAME, [], []),
    )


def peer_url(ip: str, port: int = PEER_PORT) -> str:
    addr = ipaddress.ip_address(ip)
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    return f"https://{host}:{port}"


def client_url(ip: str, port: int = CLIENT_PORT) -> str:
    return peer_url(ip, port)


@dataclass(frozen=True)
class EtcdArgs:
    """Input of :func:`etcd_command`.

    ``initial_cluster`` maps member names to peer URLs. For ``state="new"`` leave it empty (the
    bootstrap node starts a one-member cluster of itself); for ``"existing"`` it is the member
    list returned by MemberAdd, which must include this node.
    """

    name: str
    advertise_ip: str
    state: ClusterState = "new"
    initial_cluster: Mapping[str, Sequence[str]] = field(default_factory=dict)
    data_dir: str = DATA_DIR
    pki_dir: str = PKI_DIR
    listen_ip: str | None = None  # None: all addresses of the advertise IP's family
    extra_args: Mapping[str, str] = field(default_factory=dict)
    binary: str = ETCD_BINARY
    client_port: int = CLIENT_PORT
    peer_port: int = PEER_PORT


def etcd_command(args: EtcdArgs) -> list[str]:
    """The etcd 3.4 argv (``binary --flag=value ...``), flags sorted after the binary."""
    if not args.name:
        raise TalosError("etcd: the member name is empty")
    advertise = _check_ips([args.advertise_ip])[0]
    family6 = ipaddress.ip_address(advertise).version == 6
    listen = args.listen_ip or ("::" if family6 else "0.0.0.0")  # noqa: S104 - a node's etcd listens on its own addresses
    if args.state not in ("new", "existing"):
        raise TalosError(f"etcd: initial cluster state {args.state!r} is not 'new' or 'existing'")
    own_peer = peer_url(advertise, args.peer_port)
    if args.state == "new":
        if args.initial_cluster and dict(args.initial_cluster) != {args.name: [own_peer]}:
            raise TalosError("etcd: a new cluster starts with this member only")
        members: Mapping[str, Sequence[str]] = {args.name: [own_peer]}
    else:
        members = args.initial_cluster
        if args.name not in members:
            raise TalosError(
                f"etcd: joining an existing cluster needs this member ({args.name}) in the "
                "initial cluster (the member list MemberAdd returned)"
            )
    denied = sorted(set(args.extra_args) & DENIED_EXTRA_ARGS)
    if denied:
        message = f"{', '.join(denied)}: set by Talos, cannot be overridden"
        raise ValidationError([Problem(message, path="cluster.etcd.extraArgs")])
    pki_dir = args.pki_dir.rstrip("/")
    flags: dict[str, str] = {
        "name": args.name,
        "data-dir": args.data_dir,
        "auto-tls": "false",
        "peer-auto-tls": "false",
        "listen-peer-urls": peer_url(listen, args.peer_port),
        "listen-client-urls": client_url(listen, args.client_port),
        "initial-advertise-peer-urls": own_peer,
        "advertise-client-urls": client_url(advertise, args.client_port),
        "initial-cluster-state": args.state,
        "initial-cluster": ",".join(
            f"{name}={url}" for name in sorted(members) for url in members[name]
        ),
        "client-cert-auth": "true",
        "cert-file": f"{pki_dir}/server.crt",
        "key-file": f"{pki_dir}/server.key",
        "trusted-ca-file": f"{pki_dir}/ca.crt",
        "peer-client-cert-auth": "true",
        "peer-cert-file": f"{pki_dir}/peer.crt",
        "peer-key-file": f"{pki_dir}/peer.key",
        "peer-trusted-ca-file": f"{pki_dir}/ca.crt",
    }
    flags.update(args.extra_args)
    return [args.binary, *(f"--{k}={flags[k]}" for k in sorted(flags))]
