"""The node's links: which get DHCP, ``ip=`` of the kernel command line, static addresses, routes
and MTU from ``machine.network.interfaces``, and the resolver file.

Applied in metal mode, and in container mode only with ``--manage-network`` (the launcher says
the node has a network namespace of its own: a node must never change its host's interfaces).
As Talos's networkd does, every ``en*``/``eth*`` link that the config and ``ip=`` leave alone and
that has carrier gets DHCP, from one supervised child (:mod:`talos_init.dhcp`); the choice of
links, ``ip=`` and the resolver file use ioctls and files only, so that PID 1 loads pyroute2 (in
a worker thread, :func:`apply`) only for static settings. The shared VIP is talos-vip's job.
What Talos does: docs/talos-facts.md#network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from libtalos.errors import TalosError
from libtalos.fsutil import atomic_write
from talos_init.addresses import ipv4_by_link
from talos_init.services import ServiceSpec

if TYPE_CHECKING:
    from libtalos.config.v1alpha1 import Device

DHCP_PREFIXES = ("en", "eth")  # the links Talos's networkd configures unasked (bond* are left)
DEFAULT_RESOLVERS = ("1.1.1.1", "8.8.8.8")  # networkd's when neither config nor DHCP name one
MAX_RESOLVERS = 3  # the most libc reads
CARRIER_WAIT = 3.0  # seconds a link brought up gets to report carrier
LEASE_WAIT = 15.0  # seconds the first leases are waited for (the maintenance banner shows them)
DHCP_SERVICE = "dhcp"
RESOLV_CONF = "resolved/resolv.conf"  # under /system, as Talos (/etc/resolv.conf links there)
IP_FORM = (
    "<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>"
)
IGNORE_PARAM = "talos.network.interface.ignore"


# -- ip= of the kernel command line -------------------------------------------------------------


@dataclass(frozen=True)
class KernelIP:
    """``ip=`` as Talos reads it: a static address on ``device`` (the first link but loopback
    when empty), or DHCP there (``ip=dhcp``, or ``autoconf`` ``dhcp`` without an address)."""

    device: str = ""
    cidr: str = ""
    gateway: str = ""
    hostname: str = ""
    nameservers: tuple[str, ...] = ()
    dhcp: bool = False


def parse_kernel_ip(value: str) -> KernelIP | None:
    """``ip=VALUE`` (the kernel's nfsroot syntax, :data:`IP_FORM`); None for ``off``/``none``.

    Raises TalosError naming ``ip=`` and every problem of a bad form.
    """
    if value in ("", "off", "none"):
        return None
    if value in ("dhcp", "on", "any"):
        return KernelIP(dhcp=True)
    fields = value.split(":")
    where = f"ip={value}"
    if len(fields) < 4 or len(fields) > 10:
        raise TalosError(f"{where}: expected {IP_FORM} (at least the first four fields)")
    fields += [""] * (10 - len(fields))
    client, _server, gateway, netmask, hostname, device, autoconf, dns0, dns1, _ntp = fields
    if not client and autoconf in ("dhcp", "on", "any"):
        return KernelIP(device=device, hostname=hostname, dhcp=True)
    problems = []
    if not _is_ipv4(client):
        problems.append(f"<client-ip> {client!r} is not an IPv4 address")
    if gateway and not _is_ipv4(gateway):
        problems.append(f"<gw-ip> {gateway!r} is not an IPv4 address")
    prefix = 0
    try:
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
    except ValueError:
        problems.append(f"<netmask> {netmask!r} is not a netmask")
    dns = tuple(d for d in (dns0, dns1) if d)
    problems += [f"<dns-ip> {d!r} is not an IPv4 address" for d in dns if not _is_ipv4(d)]
    if problems:
        raise TalosError(f"{where}: {'; '.join(problems)}")
    return KernelIP(device, f"{client}/{prefix}", gateway, hostname, dns)


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def kernel_ip_device(kip: KernelIP, links: Sequence[str]) -> Device:
    """The static settings of ``ip=`` as a ``machine.network.interfaces`` entry."""
    from libtalos.config.v1alpha1 import Device, Route

    name = kip.device or next((n for n in links if n != "lo"), "")
    routes = [Route(network="0.0.0.0/0", gateway=kip.gateway)] if kip.gateway else []
    return Device(interface=name, cidr=kip.cidr, routes=routes)


# -- which links get what -----------------------------------------------------------------------


@dataclass
class Plan:
    """What :func:`plan` decided: static settings to apply, DHCP links (with their route
    metric), the resolvers named by ``ip=``, and one message per decision."""

    static: list[Device] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # for :func:`apply`'s messages
    dhcp: dict[str, int] = field(default_factory=dict)
    nameservers: tuple[str, ...] = ()
    messages: list[str] = field(default_factory=list)


def plan(
    interfaces: Sequence[Device], cmdline: Mapping[str, str], *, carrier_wait: float = CARRIER_WAIT
) -> Plan:
    """Decide the links' settings: the config's, then ``ip=``, then DHCP on every other
    ``en*``/``eth*`` link with carrier (brought up to see it). Blocking (waits for carrier)."""
    out = Plan()
    links = [name for _, name in socket.if_nameindex()]
    taken = {itf.interface for itf in interfaces}
    out.static = list(interfaces)
    for itf in interfaces:
        if itf.dhcp and not itf.ignore:
            metric = itf.dhcp_options.route_metric if itf.dhcp_options is not None else 0
            out.dhcp[itf.interface] = metric
    kip = None
    if "ip" in cmdline:
        try:
            kip = parse_kernel_ip(cmdline["ip"])
        except TalosError as exc:
            out.messages.append(exc.message)
    if kip is not None and not kip.dhcp:
        device = kernel_ip_device(kip, links)
        if device.interface not in taken:
            out.static.append(device)
            out.labels += [f"machine.network.interfaces[{i}]" for i in range(len(interfaces))]
            out.labels.append("ip=")
            taken.add(device.interface)
            out.nameservers = kip.nameservers
    ignored = set(cmdline.get(IGNORE_PARAM, "").replace(",", " ").split())
    candidates = [
        n for n in links if n.startswith(DHCP_PREFIXES) and n not in taken and n not in ignored
    ]
    if kip is not None and kip.dhcp and kip.device and kip.device not in candidates:
        candidates.append(kip.device)  # ip=::::name:device:dhcp names a link of any name
    for name, up in wait_carrier(candidates, carrier_wait).items():
        if up:
            out.dhcp[name] = 0
        else:
            out.messages.append(f"no carrier for link {name}: no DHCP there")
    return out


# -- link flags (ioctls: nothing to load into PID 1) --------------------------------------------

IFF_UP, IFF_RUNNING = 0x1, 0x40
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914


def _flags(sock: socket.socket, name: str) -> int:
    import fcntl
    import struct

    req = struct.pack("16sH14x", name.encode(), 0)
    return int(struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1])


def wait_carrier(names: Iterable[str], bound: float) -> dict[str, bool]:
    """Bring each link up, then wait up to ``bound`` seconds until each reports carrier
    (IFF_RUNNING); returns which did. A link that cannot be brought up has none."""
    import fcntl
    import struct

    state: dict[str, bool] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in names:
            try:
                flags = _flags(sock, name)
                if not flags & IFF_UP:
                    req = struct.pack("16sH14x", name.encode(), flags | IFF_UP)
                    fcntl.ioctl(sock, SIOCSIFFLAGS, req)
                state[name] = False
            except OSError:
                continue
        deadline = time.monotonic() + bound
        while True:
            for name in [n for n, up in state.items() if not up]:
                with contextlib.suppress(OSError):
                    state[name] = bool(_flags(sock, name) & IFF_RUNNING)
            if all(state.values()) or time.monotonic() >= deadline:
                return state
            time.sleep(0.05)


# -- DHCP and the resolvers ---------------------------------------------------------------------


def dhcp_service(
    links: Mapping[str, int], lease_dir: Path, resolv_conf: Path | None
) -> ServiceSpec:
    """The DHCP child (:mod:`talos_init.dhcp`) for ``links``; it rewrites ``resolv_conf`` with the
    leases' name servers unless that is None (the config or ``ip=`` named them)."""
    argv = [sys.executable, "-m", "talos_init.dhcp", "--lease-dir", str(lease_dir)]
    if resolv_conf is not None:
        argv += ["--resolv-conf", str(resolv_conf)]
    argv += [f"{name}:{metric}" if metric else name for name, metric in sorted(links.items())]
    return ServiceSpec(id=DHCP_SERVICE, argv=tuple(argv), restart="always", stop_grace=5.0)


def resolv_conf_text(nameservers: Sequence[str], search: Sequence[str] = ()) -> str:
    """resolv.conf naming the first :data:`MAX_RESOLVERS` of ``nameservers`` (else Talos's
    defaults)."""
    chosen = list(dict.fromkeys(nameservers))[:MAX_RESOLVERS] or list(DEFAULT_RESOLVERS)
    lines = [f"nameserver {ns}" for ns in chosen]
    if search:
        lines.append(f"search {' '.join(search)}")
    return "\n".join(lines) + "\n"


def write_resolv_conf(path: Path, nameservers: Sequence[str], search: Sequence[str] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, resolv_conf_text(nameservers, search), mode=0o644)


def wait_for_leases(
    links: Iterable[str], bound: float, *, clock: Callable[[], float] = time.monotonic
) -> dict[str, list[str]]:
    """Wait up to ``bound`` seconds until every link has an IPv4 address; returns the addresses
    of those that have one. Blocking: call it from a worker thread."""
    wanted = set(links)
    deadline = clock() + bound
    while True:
        found = {k: v for k, v in ipv4_by_link().items() if k in wanted}
        if set(found) == wanted or clock() >= deadline:
            return found
        time.sleep(0.1)


# -- static settings (netlink) ------------------------------------------------------------------


def apply(interfaces: Sequence[Device], labels: Sequence[str] = ()) -> list[str]:
    """Apply every interface's static settings (a zero ``mtu`` or ``metric``, an empty ``cidr``
    or ``gateway`` is unset); returns one message per change or problem, each starting with the
    interface's label (``machine.network.interfaces[i]`` unless ``labels`` names it).

    Blocking (netlink round trips): call it from a worker thread.
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    messages: list[str] = []
    with IPRoute() as ipr:
        for i, itf in enumerate(interfaces):
            where = labels[i] if i < len(labels) else f"machine.network.interfaces[{i}]"
            name = itf.interface
            if itf.ignore:
                messages.append(f"{where}: {name} ignored")
                continue
            found = ipr.link_lookup(ifname=name)
            if not found:
                messages.append(f"{where}: link {name} not found")
                continue
            index = found[0]
            try:
                if itf.mtu:
                    ipr.link("set", index=index, mtu=itf.mtu)
                ipr.link("set", index=index, state="up")
                for cidr in [itf.cidr] if itf.cidr else []:
                    address = ipaddress.ip_interface(cidr)
                    try:
                        ipr.addr(
                            "add",
                            index=index,
                            address=str(address.ip),
                            prefixlen=address.network.prefixlen,
                        )
                    except NetlinkError as exc:
                        if exc.code != 17:  # EEXIST: already there
                            raise
                    messages.append(f"{where}: {name} has {cidr}")
                for route in itf.routes:
                    spec: dict[str, object] = {"dst": route.network, "oif": index}
                    if route.gateway:
                        spec["gateway"] = route.gateway
                    if route.metric:
                        spec["priority"] = route.metric
                    ipr.route("replace", **spec)
                    via = f" via {route.gateway}" if route.gateway else ""
                    messages.append(f"{where}: route {route.network}{via} on {name}")
            except NetlinkError as exc:
                messages.append(f"{where}: {name}: netlink error {exc.code}")
    return messages
