"""Announcing the VIP: gratuitous ARP (IPv4) and unsolicited neighbour advertisements (IPv6).

Frames are built here byte by byte and sent on an AF_PACKET socket bound to the interface, so
the announcement leaves even before the kernel has a route or neighbour entry for anything.
The frame builders are pure functions (tested without a kernel); :class:`Announcer` owns the
socket; :class:`Schedule` decides when to announce (a burst in the first second after taking
the address, then a periodic refresh so neighbours relearn the MAC after a partition heals).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass, field

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST_MAC = b"\xff" * 6
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"  # multicast MAC of ff02::1
ALL_NODES = ipaddress.IPv6Address("ff02::1")

ARP_REQUEST = 1
ARP_REPLY = 2
ICMPV6_NEIGHBOR_ADVERT = 136
NA_FLAG_OVERRIDE = 0x20000000
ND_OPT_TARGET_LLADDR = 2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_mac(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` to 6 bytes."""
    raw = bytes.fromhex(text.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return raw


def format_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def garp_frame(mac: bytes, ip: ipaddress.IPv4Address, *, reply: bool) -> bytes:
    """One gratuitous ARP frame for ``ip`` at ``mac``, broadcast.

    Both forms carry the VIP as sender and target protocol address. The request form leaves the
    target hardware address as broadcast (as ``arping -U`` does); the reply form repeats the
    sender's MAC there (as ``arping -A`` does). Some neighbours only update their cache from one
    of the two forms, which is why both are sent.
    """
    eth = BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP)
    target_hw = mac if reply else BROADCAST_MAC
    arp = struct.pack(
        "!HHBBH6s4s6s4s",
        1,  # hardware type: Ethernet
        0x0800,  # protocol type: IPv4
        6,
        4,
        ARP_REPLY if reply else ARP_REQUEST,
        mac,
        ip.packed,
        target_hw,
        ip.packed,
    )
    return eth + arp


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def unsolicited_na_frame(mac: bytes, ip: ipaddress.IPv6Address) -> bytes:
    """An unsolicited neighbour advertisement for ``ip`` to all nodes (ff02::1).

    Override flag set (so caches replace the old MAC), solicited flag clear, hop limit 255 (a
    receiver drops ND messages with any other value), and the target link-layer address option.
    """
    option = struct.pack("!BB6s", ND_OPT_TARGET_LLADDR, 1, mac)
    body = struct.pack("!I16s", NA_FLAG_OVERRIDE, ip.packed) + option
    icmp_no_sum = struct.pack("!BBH", ICMPV6_NEIGHBOR_ADVERT, 0, 0) + body
    length = len(icmp_no_sum)
    pseudo = ip.packed + ALL_NODES.packed + struct.pack("!I3xB", length, 58)
    csum = _checksum(pseudo + icmp_no_sum)
    icmp = struct.pack("!BBH", ICMPV6_NEIGHBOR_ADVERT, 0, csum) + body
    ipv6 = struct.pack(
        "!IHBB16s16s",
        6 << 28,  # version 6, traffic class 0, flow label 0
        length,
        58,  # next header: ICMPv6
        255,  # hop limit
        ip.packed,
        ALL_NODES.packed,
    )
    eth = ALL_NODES_MAC + mac + struct.pack("!H", ETH_P_IPV6)
    return eth + ipv6 + icmp


def announcement_frames(mac: bytes, ip: IPAddress) -> list[tuple[int, bytes]]:
    """The frames of one announcement, each with its ethertype."""
    if isinstance(ip, ipaddress.IPv4Address):
        return [
            (ETH_P_ARP, garp_frame(mac, ip, reply=False)),
            (ETH_P_ARP, garp_frame(mac, ip, reply=True)),
        ]
    return [(ETH_P_IPV6, unsolicited_na_frame(mac, ip))]


class Announcer:
    """Sends announcements for one address on one interface."""

    def __init__(self, ifname: str, mac: bytes, ip: IPAddress) -> None:
        self.ifname = ifname
        self.mac = mac
        self.ip = ip
        self.sent = 0  # frames sent since start

    def announce(self) -> int:
        """Send one announcement (2 ARP frames or 1 NA); returns the number of frames sent."""
        frames = announcement_frames(self.mac, self.ip)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            for ethertype, frame in frames:
                sock.sendto(frame, (self.ifname, ethertype))
        self.sent += len(frames)
        return len(frames)


@dataclass
class Schedule:
    """When to announce: ``burst`` offsets (seconds after taking the address), then every
    ``refresh`` seconds (0 turns the refresh off). Times are monotonic."""

    burst: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    refresh: float = 10.0
    _start: float | None = field(default=None, init=False)
    _done: int = field(default=0, init=False)
    _last: float = field(default=0.0, init=False)

    def start(self, now: float) -> None:
        self._start = now
        self._done = 0
        self._last = now

    def stop(self) -> None:
        self._start = None

    def due(self, now: float) -> bool:
        """Whether an announcement is due at ``now`` (and record it as sent)."""
        if self._start is None:
            return False
        if self._done < len(self.burst):
            if now >= self._start + self.burst[self._done]:
                self._done += 1
                self._last = now
                return True
            return False
        if self.refresh > 0 and now >= self._last + self.refresh:
            self._last = now
            return True
        return False

    def next_due(self) -> float | None:
        """Monotonic time of the next announcement, or None when idle."""
        if self._start is None:
            return None
        if self._done < len(self.burst):
            return self._start + self.burst[self._done]
        if self.refresh > 0:
            return self._last + self.refresh
        return None
