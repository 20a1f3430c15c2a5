"""The installer's form without the screen: what the node reported, what the user typed, the
checks made as they type, the GenerateConfiguration request and the talosconfig file.

Nothing here imports Textual; :mod:`talos_apply.interactive.screens` draws it.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libtalos.config.validate import endpoint_problem, is_dns_name

# MachineConfig.MachineType of machine.proto, as v0.9's installer names them
MACHINE_TYPES = (("init", 1), ("controlplane", 2), ("join", 3))
IFACE_MODES = ("unchanged", "dhcp", "static")
DEFAULT_CLUSTER = "talos-default"
DEFAULT_PORT = 6443
TALOSCONFIG = "talosconfig"
NEW_SUFFIX = ".new"


@dataclass(frozen=True)
class DiskInfo:
    name: str  # /dev/sda
    size: int  # bytes
    model: str


@dataclass(frozen=True)
class IfaceInfo:
    name: str
    mac: str
    up: bool
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class NodeFacts:
    """What the node reported (Disks, Interfaces) and the address it was dialled at."""

    address: str
    disks: tuple[DiskInfo, ...]
    interfaces: tuple[IfaceInfo, ...]


@dataclass
class IfaceForm:
    name: str
    mode: str = "unchanged"  # one of IFACE_MODES
    cidr: str = ""
    gateway: str = ""


@dataclass
class FormValues:
    install_disk: str = ""
    cluster_name: str = DEFAULT_CLUSTER
    endpoint: str = ""
    machine_type: str = "init"
    hostname: str = ""
    nameservers: str = ""  # comma- or space-separated IP addresses
    interfaces: list[IfaceForm] = field(default_factory=list)


def human_size(size: int) -> str:
    """Bytes in SI units, as Talos's installer shows a disk (go-humanize's Bytes)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover - the loop always returns


def url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def initial(facts: NodeFacts) -> FormValues:
    """The form's first values: the first disk, the node as its own endpoint."""
    return FormValues(
        install_disk=facts.disks[0].name if facts.disks else "",
        endpoint=f"https://{url_host(facts.address)}:{DEFAULT_PORT}",
        interfaces=[IfaceForm(i.name) for i in facts.interfaces],
    )


def split_servers(text: str) -> list[str]:
    return [s for s in text.replace(",", " ").split() if s]


# --------------------------------------------------------------------------- field checks
# Each returns the message shown next to the field, or None when the value is fine.


def disk_problem(value: str, facts: NodeFacts) -> str | None:
    if not value:
        return "pick the disk to install to"
    if value not in [d.name for d in facts.disks]:
        return f"the node has no disk {value}"
    return None


def cluster_name_problem(value: str) -> str | None:
    if not value.strip():
        return "the cluster name must not be empty"
    if not value.isprintable() or any(c.isspace() for c in value):
        return "no spaces or control characters"
    return None


def endpoint_field_problem(value: str) -> str | None:
    return endpoint_problem(value)


def hostname_problem(value: str) -> str | None:
    if value and not is_dns_name(value):
        return "not a valid host name"
    return None


def nameservers_problem(value: str) -> str | None:
    for s in split_servers(value):
        try:
            ipaddress.ip_address(s)
        except ValueError:
            return f"{s} is not an IP address"
    return None


def cidr_problem(value: str, mode: str) -> str | None:
    if mode != "static":
        return None
    if not value:
        return "static needs an address (CIDR)"
    if "/" not in value:
        return "no prefix length (e.g. /24)"
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        return "not a valid CIDR address"
    return None


def gateway_problem(value: str, mode: str, cidr: str) -> str | None:
    if mode != "static" or not value:
        return None
    try:
        gw = ipaddress.ip_address(value)
    except ValueError:
        return "the gateway is not an IP address"
    try:
        net = ipaddress.ip_interface(cidr).network
    except ValueError:
        return None  # the CIDR's own message says what is wrong
    if gw.version != net.version:
        return "gateway: another IP version"
    return None


def problems(values: FormValues, facts: NodeFacts) -> dict[str, str]:
    """Every field's problem, keyed by the field's id (the widget ids of the form)."""
    found: dict[str, str | None] = {
        "install-disk": disk_problem(values.install_disk, facts),
        "cluster-name": cluster_name_problem(values.cluster_name),
        "endpoint": endpoint_field_problem(values.endpoint),
        "hostname": hostname_problem(values.hostname),
        "nameservers": nameservers_problem(values.nameservers),
    }
    for i, iface in enumerate(values.interfaces):
        found[f"cidr-{i}"] = cidr_problem(iface.cidr, iface.mode)
        found[f"gateway-{i}"] = gateway_problem(iface.gateway, iface.mode, iface.cidr)
    return {k: v for k, v in found.items() if v is not None}


# --------------------------------------------------------------------------- the request


def machine_type_value(name: str) -> int:
    return dict(MACHINE_TYPES)[name]


def generate_request(values: FormValues, *, install_image: str = "", now: Any = None) -> Any:
    """The GenerateConfigurationRequest of the form (v0.9.3's fields)."""
    from libtalos.api import machine_pb2 as m

    devices = []
    for iface in values.interfaces:
        if iface.mode == "dhcp":
            devices.append(m.NetworkDeviceConfig(interface=iface.name, dhcp=True))
        elif iface.mode == "static":
            routes = (
                [m.RouteConfig(network=_default_net(iface.cidr), gateway=iface.gateway)]
                if iface.gateway
                else []
            )
            devices.append(
                m.NetworkDeviceConfig(interface=iface.name, cidr=iface.cidr, routes=routes)
            )
    req = m.GenerateConfigurationRequest(
        config_version="v1alpha1",
        cluster_config=m.ClusterConfig(
            name=values.cluster_name,
            control_plane=m.ControlPlaneConfig(endpoint=values.endpoint),
            cluster_network=m.ClusterNetworkConfig(dns_domain="cluster.local"),
        ),
        machine_config=m.MachineConfig(
            type=machine_type_value(values.machine_type),  # type: ignore[arg-type]
            install_config=m.InstallConfig(
                install_disk=values.install_disk, install_image=install_image
            ),
            network_config=m.NetworkConfig(hostname=values.hostname, interfaces=devices),
        ),
    )
    if now is not None:
        req.override_time.FromDatetime(now)  # the client's clock, as v0.9's installer sends
    return req


def _default_net(cidr: str) -> str:
    return "::/0" if ipaddress.ip_interface(cidr).version == 6 else "0.0.0.0/0"


def with_nameservers(config_text: str, servers: list[str]) -> str:
    """The generated config with ``machine.network.nameservers`` set (v0.9.3's request has no
    field for them, so the installer adds them to the config it applies)."""
    if not servers:
        return config_text
    from libtalos import config as cfgmod
    from libtalos.config.v1alpha1 import NetworkConfig

    cfg = cfgmod.load(config_text, "generated config").config
    if cfg.machine.network is None:
        cfg.machine.network = NetworkConfig()
    cfg.machine.network.nameservers = list(servers)
    return cfgmod.encode(cfg, comments=False)


def review_text(config_text: str) -> str:
    """The config as the review screen shows it: YAML with every secret masked and the
    certificates shortened."""
    from libtalos import config as cfgmod
    from libtalos import yamlio

    cfg = cfgmod.load(config_text, "generated config").config
    return yamlio.dump(_short_certs(cfgmod.redacted(cfg)))


def _short_certs(data: Any) -> Any:
    """Certificates (public, but long) shortened to a note, so that the review fits."""
    if isinstance(data, dict):
        return {
            k: (
                f"<certificate, {len(v)} base64 characters>"
                if k == "crt" and isinstance(v, str) and len(v) > 40
                else _short_certs(v)
            )
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_short_certs(v) for v in data]
    return data


# --------------------------------------------------------------------------- the talosconfig


def free_new_path(path: Path) -> Path:
    """Where a kept ``path`` sends the new talosconfig: ``path.new``, else ``path.new.2``, ..."""
    candidate = path.with_name(path.name + NEW_SUFFIX)
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}{NEW_SUFFIX}.{n}")
        n += 1
    return candidate


def write_talosconfig(path: Path, data: bytes) -> Path:
    """``data`` written to ``path`` atomically, mode 0600 (the file holds the admin key). The
    caller has decided to replace an existing file (see :func:`free_new_path`)."""
    from libtalos.fsutil import SECRET_MODE, atomic_write

    written = atomic_write(path, data, mode=SECRET_MODE, force=True)
    os.chmod(written, SECRET_MODE)  # whatever the umask
    return written
