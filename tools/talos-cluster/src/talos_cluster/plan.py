"""What a cluster is made of, decided before anything is created (pure).

A cluster NAME on CIDR (default 10.5.0.0/24) is:

- one private network namespace named NAME holding a bridge ``talos0`` with the gateway
  address (.1); nothing of the cluster touches the host's own network namespace;
- per node, a network namespace ``NAME-master-N`` / ``NAME-worker-N`` whose ``eth0`` is one end
  of a veth pair; the other end (``mN`` / ``wN``) sits in the cluster namespace, enslaved to the
  bridge. Addresses go from .2 up: control planes first, then workers;
- per node, ``<cluster dir>/<node>/{state,ephemeral}`` and its console log.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from libtalos.errors import UsageError

Role = Literal["controlplane", "worker"]

BRIDGE = "talos0"
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
    veth: str  # the bridge side, inside the cluster namespace
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

    @property
    def netns(self) -> str:
        return self.name

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
                veth=f"{'m' if master else 'w'}{index}",
                cpus=cpus if master else cpus_workers,
                memory_mib=memory_mib if master else memory_workers_mib,
            )
        )
    return ClusterPlan(
        name=name, cidr=str(net), gateway=gateway, prefixlen=net.prefixlen, nodes=tuple(nodes)
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
