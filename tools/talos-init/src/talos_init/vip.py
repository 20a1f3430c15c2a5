"""talos-vip as a service of a control-plane node whose config has a shared IP.

Talos runs its VIP controller on control planes once etcd is up (docs/talos-facts.md#virtual-ip);
here that is the ``talos-vip`` daemon under the supervisor, started after the node's etcd answers,
elected through that etcd with the node's own etcd client certificate, and stopped before etcd (it
depends on it, and the supervisor stops in reverse dependency order) — so a clean shutdown
releases the address and resigns before the member goes away.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from talos_init.etcd import SERVICE_ID as ETCD_SERVICE
from talos_init.etcd import EtcdLayout
from talos_init.services import ServiceSpec

SERVICE_ID = "vip"


def find_vip(cfg: Any) -> tuple[str, str] | None:
    """``(interface, ip)`` of the first interface with ``vip.ip``, or None."""
    network = cfg.machine.network
    for device in network.interfaces if network is not None else []:
        if not device.ignore and device.vip is not None and device.vip.ip:
            return device.interface, device.vip.ip
    return None


def talos_vip() -> Path:
    """The talos-vip console script installed beside this interpreter."""
    return Path(sys.executable).parent / "talos-vip"


def service_spec(cfg: Any, layout: EtcdLayout, hostname: str) -> ServiceSpec | None:
    """The vip service for ``cfg``; None when the config has no shared IP."""
    found = find_vip(cfg)
    if found is None:
        return None
    interface, ip = found
    pki = layout.pki_dir
    argv = (
        str(talos_vip()),
        "run",
        "--interface",
        interface,
        "--vip",
        ip,
        "--node-name",
        hostname,
        "--etcd-endpoints",
        "https://127.0.0.1:2379",
        "--etcd-ca",
        str(pki / "ca.crt"),
        "--etcd-cert",
        str(pki / "client.crt"),
        "--etcd-key",
        str(pki / "client.key"),
    )
    return ServiceSpec(
        id=SERVICE_ID,
        argv=argv,
        depends_services=(ETCD_SERVICE,),
        restart="always",
        restart_delay=1.0,
        stop_grace=5.0,
        source="built-in",
    )
