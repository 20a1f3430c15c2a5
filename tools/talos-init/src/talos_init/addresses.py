"""The node's own addresses: listed with one ioctl, kept until the node stops.

Read with SIOCGIFCONF (IPv4) and /proc/net/if_inet6 (IPv6) rather than netlink: pyroute2 would
add about 10 MiB to PID 1 for one listing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path


def _ifconf() -> list[tuple[str, str]]:
    """``(link, IPv4 address)`` of every address up, from one SIOCGIFCONF."""
    import array
    import fcntl
    import struct

    siocgifconf = 0x8912
    entry = 40  # sizeof(struct ifreq) on 64-bit Linux
    found: list[tuple[str, str]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        buf = array.array("B", b"\0" * entry * 128)
        addr, _ = buf.buffer_info()
        req = struct.pack("iL", len(buf), addr)
        size = struct.unpack("iL", fcntl.ioctl(sock.fileno(), siocgifconf, req))[0]
        raw = buf.tobytes()[:size]
        for off in range(0, size, entry):
            name = raw[off : off + 16].split(b"\0", 1)[0].decode("ascii", "replace")
            found.append((name, socket.inet_ntoa(raw[off + 20 : off + 24])))
    return found


def ipv4_by_link() -> dict[str, list[str]]:
    """The IPv4 addresses of each link that has one (a link's aliases share its name)."""
    out: dict[str, list[str]] = {}
    for name, ip in _ifconf():
        out.setdefault(name.split(":", 1)[0], []).append(ip)
    return out


def node_addresses() -> list[str]:
    """The node's own addresses (its network namespace), loopback and link-local left out."""
    found = [ip for _, ip in _ifconf()]
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hexaddr = line.split()[0]
        found.append(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    out = []
    for text in found:
        ip = ipaddress.ip_address(text)
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
            out.append(str(ip))
    return list(dict.fromkeys(out))


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Addresses:
    """:func:`node_addresses`, listed once (in a worker thread) and kept until :meth:`clear`
    (the node stops or reboots); a failed listing is logged and counts as no address."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._listed: list[str] | None = None

    async def get(self) -> list[str]:
        if self._listed is None:
            try:
                self._listed = await asyncio.to_thread(node_addresses)
            except OSError as exc:
                self._log(f"machine API: cannot list addresses: {exc.strerror}")
                self._listed = []
        return self._listed

    @property
    def listed(self) -> list[str]:
        """What :meth:`get` has listed so far (nothing before its first call)."""
        return self._listed or []

    def advertise_ip(self) -> str:
        """The address etcd advertises: the first IPv4 one, else the first, else loopback."""
        addresses = self.listed
        v4 = [a for a in addresses if ipaddress.ip_address(a).version == 4]
        return (v4 or addresses or ["127.0.0.1"])[0]

    def clear(self) -> None:
        self._listed = None
