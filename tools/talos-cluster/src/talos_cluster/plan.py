"""What a cluster is made of, decided before anything is created (pure).

A cluster NAME on CIDR (default 10.5.0.0/24) is:

- a bridge holding the gateway address (.1). In the ``shared`` layout (the default) it sits in
  the network namespace where create runs, named after the cluster (:func:`bridge_name`), so
  the nodes answer that shell, as Talos's docker and qemu clusters do. In the ``isolated``
  layout it is ``talos0`` inside a private network namespace named NAME, reached with
  ``ip netns exec NAME``;
- per node, a network namespace ``NAME-master-N`` / ``NAME-worker-N`` whose ``eth0`` is one end
  of a veth pair; the other end sits beside the bridge, enslaved to it (``<prefix>_m1``,
  ``<prefix>_w1`` … in the shared layout, ``m1``, ``w1`` … in the isolated one). Addresses go
  from .2 up: control planes first, then workers;
- per node, ``<cluster dir>/<node>/{state,ephemeral}`` and its console log.

Interface names are at most 15 characters (IFNAMSIZ - 1): a cluster name that is longer gets a
bridge name of its first 6 characters, ``-`` and 8 hex digits of its SHA-256, and a veth prefix
of its first 4 characters and 6 hex digits. Cluster names never contain ``_``, so a veth end of
one cluster never has the name of another cluster's bridge.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from libtalos.errors import UsageError

Role = Literal["controlplane", "worker"]
Layout = Literal["shared", "isolated"]

BRIDGE = "talos0"  # the isolated layout's bridge, alone in the cluster's namespace
IFNAME_MAX = 15  # Linux: IFNAMSIZ (16) with its NUL
VETH_PREFIX_MAX = IFNAME_MAX - len("_w999")
DEFAULT_NAME = "talos-default"
DEFAULT_CIDR = "10.5.0.0/24"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 40  # node namespaces add "-worker-NNN"; keeps names readable and paths short
MAX_NODES = 999
MIN_CPUS = 0.01  # the smallest CFS quota (1 ms) per 100 ms period
MAX_CPUS = 1024.0
MAX_MEMORY_MIB = 1 << 30  # 1 PiB
MAX_DURATION = 30 * 24 * 3600.0  # 30 days
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


@dataclass(frozen=True)
class NodePlan:
    name: str  # hostname and network namespace name
    role: Role
    index: int  # 1-based within its role
    ip: str
    prefixlen: int
    gateway: str
    veth: str  # the bridge side, beside the bridge
    cpus: float
    memory_mib: int

    @property
    def machine_type(self) -> str:
        return "controlplane" if self.role == "controlplane" else "worker"


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    cidr: str
    gateway: str
    prefixlen: int
    nodes: tuple[NodePlan, ...]
    layout: Layout = "shared"

    @property
    def isolated(self) -> bool:
        return self.layout == "isolated"

    @property
    def netns(self) -> str:
        """The cluster's own network namespace (isolated layout), else ``""``."""
        return self.name if self.isolated else ""

    @property
    def bridge(self) -> str:
        return BRIDGE if self.isolated else bridge_name(self.name)

    @property
    def controlplanes(self) -> list[NodePlan]:
        return [n for n in self.nodes if n.role == "controlplane"]

    @property
    def endpoint(self) -> str:
        return f"https://{self.controlplanes[0].ip}:6443"


def check_name(name: str) -> str:
    if not _NAME.match(name) or len(name) > MAX_NAME:
        raise UsageError(
            f"--name: {name!r} is not a valid cluster name (lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {MAX_NAME} characters)"
        )
    return name


def _digest(name: str, digits: int) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:digits]


def bridge_name(name: str) -> str:
    """The shared layout's bridge: the cluster's name when it fits in an interface name."""
    if len(name) <= IFNAME_MAX:
        return name
    return f"{name[:6]}-{_digest(name, 8)}"


def veth_prefix(name: str) -> str:
    if len(name) <= VETH_PREFIX_MAX:
        return name
    return f"{name[:4]}{_digest(name, 6)}"


def veth_name(name: str, role: Role, index: int, layout: Layout) -> str:
    """The bridge side of a node's veth pair."""
    local = f"{'m' if role == 'controlplane' else 'w'}{index}"
    return local if layout == "isolated" else f"{veth_prefix(name)}_{local}"


def marker(name: str) -> str:
    """The alias create gives the links it makes beside the user's (``ip -d link`` shows it);
    destroy removes a link by name only when it carries this alias."""
    return f"talos-cluster:{name}"


def find_clash(
    net: ipaddress.IPv4Network,
    addresses: Iterable[tuple[str, str]],
    routes: Iterable[tuple[str, str]],
) -> str | None:
    """What ``net`` overlaps: ``addresses`` are (interface, address/prefix), ``routes``
    (destination/prefix, description); default routes (/0) overlap nothing."""
    for ifname, addr in addresses:
        iface = ipaddress.ip_interface(addr)
        if isinstance(iface, ipaddress.IPv4Interface) and iface.network.overlaps(net):
            return f"address {addr} on {ifname}"
    for dst, what in routes:
        route = ipaddress.ip_network(dst, strict=False)
        if route.prefixlen and isinstance(route, ipaddress.IPv4Network) and route.overlaps(net):
            return f"route {dst} {what}".rstrip()
    return None


def cluster_dir(state_dir: Path, name: str) -> Path:
    return state_dir / name


def check_cidr(cidr: str) -> ipaddress.IPv4Network:
    """An IPv4 network whose addresses an interface can hold (not loopback, multicast ...)."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise UsageError(f"--cidr: {cidr!r} is not a network in CIDR notation") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise UsageError(f"--cidr: {net}: only IPv4 cluster networks are supported")
    for unusable, what in (
        (net.is_loopback, "loopback"),
        (net.is_multicast, "multicast"),
        (net.is_reserved, "reserved (240.0.0.0/4)"),
        (net.overlaps(_THIS_NETWORK), "'this network' (0.0.0.0/8)"),
    ):
        if unusable:
            raise UsageError(f"--cidr: {net}: {what} addresses cannot be given to nodes")
    return net


def check_cpus(value: float, option: str) -> float:
    """A CPU limit cgroups can enforce: finite, from :data:`MIN_CPUS` to :data:`MAX_CPUS`."""
    if math.isnan(value) or math.isinf(value):
        raise UsageError(f"{option}: {value}: not a finite number of CPUs")
    if value <= 0:
        raise UsageError(f"{option}: {value:g}: must be greater than zero")
    if not MIN_CPUS <= value <= MAX_CPUS:
        raise UsageError(f"{option}: {value:g}: must be from {MIN_CPUS:g} to {MAX_CPUS:g} CPUs")
    return value


def check_memory(value: int, option: str) -> int:
    if value <= 0:
        raise UsageError(f"{option}: {value}: must be greater than zero (MiB)")
    if value > MAX_MEMORY_MIB:
        raise UsageError(f"{option}: {value}: at most {MAX_MEMORY_MIB} MiB")
    return value


def make_plan(
    *,
    name: str,
    cidr: str,
    masters: int,
    workers: int,
    cpus: float,
    memory_mib: int,
    cpus_workers: float,
    memory_workers_mib: int,
    layout: Layout = "shared",
) -> ClusterPlan:
    check_name(name)
    net = check_cidr(cidr)
    if masters < 1:
        raise UsageError(f"--masters: {masters}: a cluster needs at least one control-plane node")
    if workers < 0:
        raise UsageError(f"--workers: {workers}: must not be negative")
    check_cpus(cpus, "--cpus")
    check_cpus(cpus_workers, "--cpus-workers")
    check_memory(memory_mib, "--memory")
    check_memory(memory_workers_mib, "--memory-workers")
    count = masters + workers
    if count > MAX_NODES:
        raise UsageError(f"--masters/--workers: {count} nodes, at most {MAX_NODES}")
    usable = net.num_addresses - 3  # the network address, the gateway (.1), the broadcast
    if count > usable:
        raise UsageError(
            f"--cidr: {net} has room for {max(usable, 0)} nodes, {count} were asked for"
        )
    gateway = str(net.network_address + 1)
    nodes: list[NodePlan] = []
    for i in range(count):
        master = i < masters
        index = i + 1 if master else i - masters + 1
        role: Role = "controlplane" if master else "worker"
        nodes.append(
            NodePlan(
                name=f"{name}-{'master' if master else 'worker'}-{index}",
                role=role,
                index=index,
                ip=str(net.network_address + 2 + i),
                prefixlen=net.prefixlen,
                gateway=gateway,
                veth=veth_name(name, role, index, layout),
                cpus=cpus if master else cpus_workers,
                memory_mib=memory_mib if master else memory_workers_mib,
            )
        )
    return ClusterPlan(
        name=name,
        cidr=str(net),
        gateway=gateway,
        prefixlen=net.prefixlen,
        nodes=tuple(nodes),
        layout=layout,
    )


def parse_duration(text: str, option: str) -> float:
    """Seconds from a Go duration (``20m``, ``1h30m``, ``90s``) or a plain number of seconds."""
    from libtalos.k8s.kubeconfig import go_duration

    try:
        value = float(text)
    except ValueError:
        try:
            value = go_duration(text).total_seconds()
        except (ValueError, OverflowError):
            value = math.nan
    if math.isnan(value) or math.isinf(value):
        raise UsageError(f"{option}: {text!r} is not a duration (e.g. 90s, 20m)")
    if value <= 0:
        raise UsageError(f"{option}: {text!r}: must be greater than zero")
    if value > MAX_DURATION:
        raise UsageError(f"{option}: {text!r}: at most {MAX_DURATION / 86400:g} days")
    return value
