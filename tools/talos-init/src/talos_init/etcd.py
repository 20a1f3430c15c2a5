"""etcd on a control-plane node: certificates on disk, the supervised service, its HTTP API.

Certificates and the command line come from :mod:`libtalos.k8s.etcd`; this module decides where
they go on the node and talks to the running etcd through its gRPC gateway (JSON over HTTPS on
the client port, with the node's ``talos`` client certificate) with :mod:`libtalos.etcdgw`,
whose :class:`EtcdError` and :data:`UNHEALTHY` are this module's too. Nothing here uses
``subprocess``: etcd runs under the supervisor, and HTTP calls run in a worker thread, each on
a fresh connection.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from libtalos import etcdgw
from libtalos.etcdgw import UNHEALTHY, EtcdError
from libtalos.fsutil import atomic_write
from libtalos.k8s import etcd as k8s_etcd  # loads cryptography only when issuing certificates
from libtalos.secrets import CertKey
from talos_init.services import HealthCheck, ServiceSpec

__all__ = [
    "CLIENT_PORT",
    "ETCDCTL",
    "HTTP_TIMEOUT",
    "SERVICE_ID",
    "UNHEALTHY",
    "EtcdError",
    "EtcdLayout",
    "etcd_argv",
    "etcd_ca",
    "member_add",
    "member_list",
    "member_remove",
    "move_leader",
    "spec_for",
    "status",
    "write_certs",
]

SERVICE_ID = "etcd"
CLIENT_PORT = k8s_etcd.CLIENT_PORT
ETCDCTL = "/usr/bin/etcdctl"
HTTP_TIMEOUT = 5.0
T = TypeVar("T")


@dataclass(frozen=True)
class EtcdLayout:
    """Where this node keeps etcd's files."""

    pki_dir: Path  # ca.crt, server.*, peer.*, client.*
    data_dir: Path  # EPHEMERAL/lib/etcd

    def has_data(self) -> bool:
        """A member directory exists: etcd was started here before (bootstrapped or joined)."""
        return (self.data_dir / "member").is_dir()


def etcd_ca(cfg: Any) -> CertKey:
    """``cluster.etcd.ca`` of a typed v1alpha1 config, decoded."""
    ca = cfg.cluster.etcd.ca if cfg.cluster.etcd is not None else None
    if ca is None or not ca.crt or not ca.key:
        raise EtcdError("cluster.etcd.ca: missing (a control-plane config carries the etcd CA)")
    try:
        return CertKey(base64.b64decode(ca.crt), base64.b64decode(ca.key))
    except ValueError:
        raise EtcdError("cluster.etcd.ca: not valid base64") from None


def write_certs(layout: EtcdLayout, cfg: Any, hostname: str, ips: list[str]) -> None:
    certs = k8s_etcd.issue_etcd_certs(etcd_ca(cfg), hostname=hostname, ips=ips)
    layout.pki_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, (data, mode) in certs.files().items():
        atomic_write(layout.pki_dir / name, data, mode=mode)


def etcd_argv(
    layout: EtcdLayout,
    cfg: Any,
    hostname: str,
    advertise_ip: str,
    state: k8s_etcd.ClusterState = "new",
    initial_cluster: dict[str, list[str]] | None = None,
) -> list[str]:
    """etcd's command line (libtalos.k8s.etcd); the data directory is made."""
    if not Path(k8s_etcd.ETCD_BINARY).exists():
        raise EtcdError(f"{k8s_etcd.ETCD_BINARY}: not installed (Debian package etcd-server)")
    extra = dict(cfg.cluster.etcd.extra_args) if cfg.cluster.etcd is not None else {}
    argv = k8s_etcd.etcd_command(
        k8s_etcd.EtcdArgs(
            name=hostname,
            advertise_ip=advertise_ip,
            state=state,
            initial_cluster=initial_cluster or {},
            data_dir=str(layout.data_dir),
            pki_dir=str(layout.pki_dir),
            extra_args=extra,
        )
    )
    layout.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return list(argv)


def spec_for(layout: EtcdLayout, argv: list[str]) -> ServiceSpec:
    """The supervised etcd service for ``argv``, with etcdctl's health check when installed."""
    health = None
    etcdctl = shutil.which("etcdctl") or ETCDCTL
    if Path(etcdctl).exists():
        pki = layout.pki_dir
        health = HealthCheck(
            kind="command",
            command=(
                etcdctl,
                f"--endpoints=https://127.0.0.1:{CLIENT_PORT}",
                f"--cacert={pki / 'ca.crt'}",
                f"--cert={pki / 'client.crt'}",
                f"--key={pki / 'client.key'}",
                "--command-timeout=3s",
                "endpoint",
                "health",
            ),
            initial_delay=0.5,
            period=5.0,
            timeout=5.0,
        )
    return ServiceSpec(
        id=SERVICE_ID,
        argv=tuple(argv),
        restart="always",
        restart_delay=1.0,
        stop_grace=10.0,
        health=health,
        source="built-in",
    )


def _client(layout: EtcdLayout, host: str) -> etcdgw.Client:
    """A gateway client for etcd at ``host`` with this node's ``talos`` client certificate
    (read now: a joining node writes its certificates just before it asks)."""
    pki = layout.pki_dir
    context = etcdgw.client_context(
        str(pki / "ca.crt"), str(pki / "client.crt"), str(pki / "client.key")
    )
    endpoint = etcdgw.Endpoint("https", host, CLIENT_PORT)
    return etcdgw.Client([endpoint], context=context, timeout=HTTP_TIMEOUT)


def _ask(layout: EtcdLayout, host: str, call: Callable[[etcdgw.Client], T]) -> T:
    """One call on a fresh connection to etcd at ``host`` (run in a worker thread)."""
    client = _client(layout, host)
    try:
        return call(client)
    finally:
        client.close()


async def member_list(layout: EtcdLayout, host: str = "127.0.0.1") -> list[dict[str, Any]]:
    return await asyncio.to_thread(_ask, layout, host, etcdgw.Client.member_list)


async def member_add(layout: EtcdLayout, host: str, peer_url: str) -> dict[str, list[str]]:
    """Add a member with ``peer_url`` through etcd at ``host``; returns name -> peer URLs of
    every member (the new one has no name yet: it is returned under the empty name)."""
    members = await asyncio.to_thread(_ask, layout, host, lambda c: c.member_add([peer_url]))
    return {str(m.get("name", "")): list(m.get("peerURLs", [])) for m in members}


async def member_remove(layout: EtcdLayout, member_id: int, host: str = "127.0.0.1") -> None:
    await asyncio.to_thread(_ask, layout, host, lambda c: c.member_remove(member_id))


async def status(layout: EtcdLayout, host: str = "127.0.0.1") -> dict[str, Any]:
    """The status of the member at ``host``: ``leader`` is the leader's ID, ``header.member_id``
    the member's own (decimal strings)."""
    answer = await asyncio.to_thread(_ask, layout, host, lambda c: c.call("maintenance/status", {}))
    return answer if isinstance(answer, dict) else {}


async def move_leader(layout: EtcdLayout, target_id: int, host: str = "127.0.0.1") -> None:
    """Hand the leadership to member ``target_id`` (asked of the leader, at ``host``)."""
    body = {"targetID": str(target_id)}
    await asyncio.to_thread(
        _ask, layout, host, lambda c: c.call("maintenance/transfer-leadership", body)
    )
