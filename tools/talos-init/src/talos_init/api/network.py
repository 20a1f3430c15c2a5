# ruff: noqa: N802 - handler names are the proto's method names (the generated base class)
"""``network.NetworkService``: the node's links and routes (docs/talos-facts.md#system-views).

Both are read from the kernel with rtnetlink dumps over one netlink socket each (a few hundred
lines of struct decoding instead of loading pyroute2 into PID 1), in a worker thread, in the
network namespace of the node. Shapes as Talos v0.9.3 sends them:

- ``Interfaces``: every link with its index, MTU, name, hardware address (empty when all zero,
  e.g. loopback), Go's ``net.Flags`` bits in ``flags`` (up 1, broadcast 2, loopback 4,
  point-to-point 8, multicast 16) and its addresses as CIDR, IPv4 before IPv6;
- ``Routes``: every route of every table whose output link exists, destination and source as
  CIDR (``0.0.0.0/0`` when absent), the gateway as CIDR with a /32 mask (``0.0.0.0/32`` when
  absent, also for IPv6, as Talos prints it), metric, scope, family, protocol and flags.

Maintenance mode serves ``Interfaces`` (the interactive installer uses it) and answers
``Routes`` UNIMPLEMENTED, as v0.9.3's maintenance service does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from grpclib import GRPCError
from grpclib.const import Status as GrpcStatus
from grpclib.server import Stream

from libtalos.api._gen.network import network_grpc, network_pb2
from talos_init.api.node import ApiBackend
from talos_init.api.service import maintenance_mapping

MAINTENANCE_METHODS = ("Interfaces",)
DUMP_TIMEOUT = 10.0  # seconds for one datagram of a dump

NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU = 1, 3, 4
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_SRC, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY = 1, 2, 4, 5, 6
_HDR = struct.Struct("=IHHII")  # nlmsghdr
_ATTR = struct.Struct("=HH")  # rtattr
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg
# Linux IFF_* bit -> Go's net.Flags bit (what v0.9.3 puts in Interface.flags)
_GO_FLAGS = ((0x1, 1), (0x2, 2), (0x8, 4), (0x10, 8), (0x1000, 16))


class NetlinkError(OSError):
    """The kernel refused a dump."""


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        out.setdefault(kind & 0x3FFF, data[offset + _ATTR.size : offset + length])
        offset += (length + 3) & ~3
    return out


def _dump(kind: int, payload: bytes) -> Iterator[tuple[int, bytes]]:
    """``(message type, message body)`` of one rtnetlink dump request."""
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
    ) as s:
        s.settimeout(DUMP_TIMEOUT)  # the kernel answers at once; never hang a worker thread
        s.bind((0, 0))
        seq = 1
        s.send(
            _HDR.pack(_HDR.size + len(payload), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + payload
        )
        while True:
            data = s.recv(1 << 16)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, mtype, _flags, mseq, _pid = _HDR.unpack_from(data, offset)
                if length < _HDR.size:
                    return
                body = data[offset + _HDR.size : offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    continue
                yield mtype, body


@dataclass
class Link:
    index: int
    name: str
    mtu: int
    hardware: str
    flags: int  # Go's net.Flags bits
    addresses: list[str] = field(default_factory=list)


def _ip(family: int, raw: bytes) -> str:
    return str(ipaddress.ip_address(raw)) if family in (socket.AF_INET, socket.AF_INET6) else ""


def links() -> list[Link]:
    """Every link of this network namespace with its addresses (blocking: use a thread)."""
    found: dict[int, Link] = {}
    for mtype, body in _dump(RTM_GETLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
        if mtype != RTM_NEWLINK:
            continue
        _family, _type, index, iff, _change = _IFINFO.unpack_from(body)
        attrs = _attrs(body, _IFINFO.size)
        mac = attrs.get(IFLA_ADDRESS, b"")
        mtu = attrs.get(IFLA_MTU, b"\0\0\0\0")
        found[index] = Link(
            index=index,
            name=attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode("utf-8", "replace"),
            mtu=struct.unpack("=I", mtu[:4])[0],
            hardware=":".join(f"{b:02x}" for b in mac) if any(mac) else "",
            flags=sum(go for linux, go in _GO_FLAGS if iff & linux),
        )
    for family in (socket.AF_INET, socket.AF_INET6):
        for mtype, body in _dump(RTM_GETADDR, _IFADDR.pack(family, 0, 0, 0, 0)):
            if mtype != RTM_NEWADDR:
                continue
            fam, prefix, _flags, _scope, index = _IFADDR.unpack_from(body)
            attrs = _attrs(body, _IFADDR.size)
            raw = attrs.get(IFA_LOCAL) if fam == socket.AF_INET else None
            raw = raw or attrs.get(IFA_ADDRESS)
            if raw and index in found:
                found[index].addresses.append(f"{_ip(fam, raw)}/{prefix}")
    return [found[i] for i in sorted(found)]


def _cidr(family: int, raw: bytes | None, prefix: int) -> str:
    if raw:
        return f"{_ip(family, raw)}/{prefix}"
    zero = ipaddress.IPv6Address(0) if family == socket.AF_INET6 else ipaddress.IPv4Address(0)
    return f"{zero}/{prefix}"


@dataclass(frozen=True)
class Route:
    interface: str
    destination: str
    gateway: str
    metric: int
    scope: int
    source: str
    family: int
    protocol: int
    flags: int


def routes() -> list[Route]:
    """Every route of every table whose output link exists (blocking: use a thread)."""
    names = {link.index: link.name for link in links()}
    out: list[Route] = []
    request = _RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)
    for mtype, body in _dump(RTM_GETROUTE, request):
        if mtype != RTM_NEWROUTE:
            continue
        family, dst_len, src_len, _tos, _table, protocol, scope, _type, flags = _RTMSG.unpack_from(
            body
        )
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        attrs = _attrs(body, _RTMSG.size)
        oif = attrs.get(RTA_OIF)
        name = names.get(struct.unpack("=I", oif[:4])[0]) if oif else None
        if name is None:
            continue  # Talos skips a route whose link it cannot look up
        priority = attrs.get(RTA_PRIORITY)
        out.append(
            Route(
                interface=name,
                destination=_cidr(family, attrs.get(RTA_DST), dst_len),
                gateway=_cidr(family, attrs.get(RTA_GATEWAY), 32),
                metric=struct.unpack("=I", priority[:4])[0] if priority else 0,
                scope=scope,
                source=_cidr(family, attrs.get(RTA_SRC), src_len),
                family=family,
                protocol=protocol,
                flags=flags,
            )
        )
    return out


async def _read(what: str, func: Any) -> Any:
    try:
        return await asyncio.to_thread(func)
    except OSError as exc:
        raise GRPCError(GrpcStatus.UNAVAILABLE, f"{what}: {exc.strerror or exc}") from None


class NetworkService(network_grpc.NetworkServiceBase):
    def __init__(self, node: ApiBackend, *, maintenance: bool) -> None:
        self.node = node
        self.maintenance = maintenance

    def __mapping__(self) -> dict[str, Any]:
        mapping = super().__mapping__()
        if self.maintenance:
            return maintenance_mapping(mapping, "network.NetworkService", MAINTENANCE_METHODS)
        return mapping

    async def Routes(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        found = await _read("routes", routes)
        msg = network_pb2.Routes(routes=[network_pb2.Route(**vars(r)) for r in found])
        await stream.send_message(network_pb2.RoutesResponse(messages=[msg]))

    async def Interfaces(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        found = await _read("interfaces", links)
        msg = network_pb2.Interfaces(
            interfaces=[
                network_pb2.Interface(
                    index=link.index,
                    mtu=link.mtu,
                    name=link.name,
                    hardwareaddr=link.hardware,
                    flags=link.flags,  # Go's net.Flags bit set, as Talos sends it
                    ipaddress=link.addresses,
                )
                for link in found
            ]
        )
        await stream.send_message(network_pb2.InterfacesResponse(messages=[msg]))
