"""Applying the decision: add or remove the VIP on an interface over netlink (pyroute2).

The address is a host address (/32 or /128), global scope, permanent (no lifetime). IPv6 VIPs
skip duplicate address detection: the election already guarantees a single holder, and DAD would
leave the address tentative (unusable) for a second after every takeover.
"""

from __future__ import annotations

import errno
import ipaddress
from typing import Any

from libtalos.errors import TalosError, UsageError
from talos_vip.arp import IPAddress, parse_mac

IFA_F_NODAD = 0x02
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0


class InterfaceError(TalosError):
    """The interface named for the VIP does not exist or cannot carry it."""


class AddressError(TalosError):
    """The kernel refused to add or remove the VIP."""


def parse_vip(text: str, *, what: str = "--vip") -> IPAddress:
    """A VIP literal: one IPv4 or IPv6 host address (no prefix, not multicast/unspecified).

    A bad ``--vip`` flag is a usage error (exit 2); a bad value read from a file is reported by
    the caller as bad input data (exit 1).
    """
    error = UsageError if what.startswith("--") else TalosError
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise error(
            f"{what}: {text!r} is not an IPv4 or IPv6 address",
            hint="give a single address such as 172.16.199.55 or fd00::55 (no prefix length)",
        ) from None
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        raise error(f"{what}: {ip} cannot be a shared IP (multicast, unspecified or loopback)")
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_link_local:
        raise error(f"{what}: {ip} is link-local; a shared IP must be a global address")
    return ip


class Applier:
    """Holds the netlink socket for one interface and one VIP."""

    def __init__(self, ifname: str, ip: IPAddress, *, ipr: Any = None) -> None:
        from pyroute2 import IPRoute

        self.ip = ip
        self.ifname = ifname
        self.family = 4 if isinstance(ip, ipaddress.IPv4Address) else 6
        self.prefixlen = 32 if self.family == 4 else 128
        self._own = ipr is None
        self.ipr = IPRoute() if ipr is None else ipr
        found = self.ipr.link_lookup(ifname=ifname)
        if not found:
            self.close()
            raise InterfaceError(
                f"--interface: no interface named {ifname!r}",
                hint="name an existing link (see `ip link`)",
            )
        self.index: int = found[0]
        link = self.ipr.get_links(self.index)[0]
        mac = link.get_attr("IFLA_ADDRESS")
        if not mac or len(parse_mac(mac)) != 6 or mac == "00:00:00:00:00:00":
            self.close()
            raise InterfaceError(f"--interface: {ifname!r} has no Ethernet address")
        self.mac = parse_mac(mac)

    def close(self) -> None:
        if self._own:
            self.ipr.close()

    def present(self) -> bool:
        """Whether the VIP is on the interface now."""
        family = 2 if self.family == 4 else 10
        for msg in self.ipr.get_addr(family=family, index=self.index):
            if msg.get_attr("IFA_ADDRESS") == str(self.ip):
                return True
        return False

    def add(self) -> bool:
        """Add the VIP; returns False if it was already there."""
        from pyroute2 import NetlinkError

        flags = IFA_F_PERMANENT | (IFA_F_NODAD if self.family == 6 else 0)
        try:
            self.ipr.addr(
                "add",
                index=self.index,
                address=str(self.ip),
                prefixlen=self.prefixlen,
                scope=RT_SCOPE_UNIVERSE,
                flags=flags,
            )
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                return False
            raise AddressError(
                f"cannot add {self.ip}/{self.prefixlen} to {self.ifname}: "
                f"{errno.errorcode.get(exc.code, exc.code)}"
            ) from None
        return True

    def remove(self) -> bool:
        """Remove the VIP; returns False if it was not there."""
        from pyroute2 import NetlinkError

        try:
            self.ipr.addr("del", index=self.index, address=str(self.ip), prefixlen=self.prefixlen)
        except NetlinkError as exc:
            if exc.code in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
                return False
            raise AddressError(
                f"cannot remove {self.ip}/{self.prefixlen} from {self.ifname}: "
                f"{errno.errorcode.get(exc.code, exc.code)}"
            ) from None
        return True
