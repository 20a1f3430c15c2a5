"""Settings shared by ``run`` and ``status``: flags, optionally seeded from a machine config."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from libtalos.errors import TalosError, UsageError
from libtalos.fsutil import read_input
from talos_vip.apply import parse_vip
from talos_vip.arp import IPAddress
from talos_vip.config import vips_from_config
from talos_vip.etcd import Endpoint, parse_endpoints

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
DEFAULT_TLS_ENDPOINT = "https://127.0.0.1:2379"


@dataclass(frozen=True)
class Common:
    interface: str | None
    vip: IPAddress
    endpoints: list[Endpoint]
    node_name: str
    etcd_ca: str | None
    etcd_cert: str | None
    etcd_key: str | None


def resolve(
    *,
    config: str | None,
    interface: str | None,
    vip: str | None,
    etcd_endpoints: str | None,
    etcd_ca: str | None,
    etcd_cert: str | None,
    etcd_key: str | None,
    node_name: str | None,
    need_interface: bool,
) -> Common:
    """Flags win over the machine config; the config fills in what flags leave out."""
    hostname: str | None = None
    ip: IPAddress | None = parse_vip(vip) if vip is not None else None
    if config is not None:
        text, source = read_input(config)
        found = vips_from_config(text, source)
        if interface is not None:
            found = [v for v in found if v.interface == interface] or found
        if ip is not None:
            found = [v for v in found if v.ip == ip] or found
        if not found and ip is None:
            raise TalosError(
                f"{source}: no machine.network.interfaces[].vip.ip in this config",
                hint="add a vip to an interface, or pass --interface and --vip",
            )
        if len(found) > 1 and (ip is None or interface is None):
            names = ", ".join(f"{v.interface}={v.ip}" for v in found)
            raise UsageError(
                f"{source}: the config has several VIPs ({names}); choose one with --interface"
            )
        if found:
            interface = interface or found[0].interface
            ip = ip or found[0].ip
            hostname = found[0].hostname
    if ip is None:
        raise UsageError("--vip is required (or --config with machine.network.interfaces[].vip)")
    if need_interface and not interface:
        raise UsageError("--interface is required (or --config naming the VIP's interface)")
    if config is not None and not any((etcd_endpoints, etcd_ca, etcd_cert, etcd_key)):
        # On a Talos node: the local etcd member, with the client certificate the node keeps
        # for its own tools (written by talos-init from the config's etcd CA).
        from libtalos.k8s.etcd import PKI_DIR

        etcd_endpoints = DEFAULT_TLS_ENDPOINT
        etcd_ca, etcd_cert, etcd_key = (
            f"{PKI_DIR}/ca.crt",
            f"{PKI_DIR}/client.crt",
            f"{PKI_DIR}/client.key",
        )
    if (etcd_cert is None) != (etcd_key is None):
        raise UsageError("--etcd-cert and --etcd-key go together: give both or neither")
    default = DEFAULT_TLS_ENDPOINT if etcd_cert else DEFAULT_ENDPOINT
    endpoints = parse_endpoints(etcd_endpoints or default)
    name = node_name or hostname or socket.gethostname()
    if not name or "/" in name:
        raise UsageError(f"--node-name: {name!r} is not a usable node name")
    return Common(interface, ip, endpoints, name, etcd_ca, etcd_cert, etcd_key)
