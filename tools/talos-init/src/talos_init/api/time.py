# ruff: noqa: N802 - handler names are the proto's method names (the generated base class)
"""``time.TimeService``: the node's clock against an NTP server (docs/talos-facts.md#time-api).

Each call makes one SNTP query (RFC 4330: a 48-byte client packet over UDP, one reply, within
:data:`QUERY_TIMEOUT` seconds) and replies, as Talos's timed does, with the server asked, the
node's clock when the reply came (``localtime``) and the server's transmit time
(``remotetime``). ``Time`` asks the first of ``machine.time.servers`` (default
``pool.ntp.org``); ``TimeCheck`` asks the server in the request. A server is ``HOST`` or
``HOST:PORT`` (``[V6]:PORT``), port 123 by default. A server that does not answer, answers
garbage or sends a kiss-o'-death is UNAVAILABLE; a malformed server name is INVALID_ARGUMENT.
Maintenance mode answers both UNIMPLEMENTED (v0.9.3's maintenance service has no time service).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from google.protobuf import timestamp_pb2
from grpclib import GRPCError
from grpclib.const import Status as GrpcStatus
from grpclib.server import Stream

from libtalos.api._gen.time import time_grpc, time_pb2
from libtalos.errors import TalosError
from talos_init.api.node import ApiBackend
from talos_init.api.service import maintenance_mapping

DEFAULT_SERVER = "pool.ntp.org"
NTP_PORT = 123
QUERY_TIMEOUT = 5.0  # seconds for one query (resolution included)
MAX_SERVER = 261  # a DNS name (253) and ":65535"
NTP_EPOCH = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_PACKET = struct.Struct("!BBbb11I")  # flags, stratum, poll, precision, 11 32-bit words
PACKET_SIZE = 48


class NtpError(TalosError):
    """The query failed: no answer in time, or not a usable answer."""


@dataclass(frozen=True)
class NtpReply:
    server: str
    local: float  # this node's clock when the reply came (epoch seconds)
    remote: float  # the server's transmit timestamp (epoch seconds)
    stratum: int


def parse_server(server: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST``, ``HOST:PORT`` or ``[V6]:PORT``; ValueError naming the
    problem."""
    if not server:
        raise ValueError("server is empty")
    if len(server) > MAX_SERVER:
        raise ValueError(f"server is {len(server)} characters; the limit is {MAX_SERVER}")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in server):
        raise ValueError("server holds a space or a control character")
    host, port = server, NTP_PORT
    if server.startswith("["):
        end = server.find("]")
        rest = server[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise ValueError(f"server {server!r} is not HOST[:PORT]")
        host = server[1:end]
        if rest:
            port = _port(rest[1:], server)
    elif server.count(":") == 1:
        host, text = server.split(":")
        port = _port(text, server)
    if not host:
        raise ValueError(f"server {server!r} has no host")
    return host, port


def _port(text: str, server: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"server {server!r}: port must be 1-65535")
    return int(text)


def _to_ntp(seconds: float) -> tuple[int, int]:
    whole = int(seconds) + NTP_EPOCH
    return whole & 0xFFFFFFFF, int((seconds % 1) * (1 << 32)) & 0xFFFFFFFF


def _from_ntp(whole: int, frac: int) -> float:
    return whole - NTP_EPOCH + frac / (1 << 32)


class _Protocol(asyncio.DatagramProtocol):
    """Datagrams and socket errors (an ICMP port unreachable...) in arrival order."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes | OSError] = asyncio.Queue(16)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.received.full():
            self.received.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        if not self.received.full() and isinstance(exc, OSError):
            self.received.put_nowait(exc)


async def query(server: str, timeout: float = QUERY_TIMEOUT) -> NtpReply:
    """One SNTP query to ``server``; :class:`NtpError` when it fails."""
    host, port = parse_server(server)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            family, _, _, _, address = infos[0]
            transport, protocol = await loop.create_datagram_endpoint(
                _Protocol, remote_addr=(str(address[0]), int(address[1])), family=family
            )
            try:
                # The transmit field carries random bits, not our clock: the reply must echo
                # them as its origin (RFC 4330 §5), which ties it to this request.
                nonce = struct.unpack("!II", os.urandom(8))
                request = _PACKET.pack(0x23, 0, 0, 0, *([0] * 9), *nonce)  # LI 0, v4, client
                transport.sendto(request)
                while True:
                    data = await protocol.received.get()
                    local = time.time()
                    if isinstance(data, OSError):
                        raise NtpError(f"ntp query to {server}: {data.strerror or data}")
                    reply = _check(server, data, nonce)
                    if reply is not None:
                        stratum, remote = reply
                        return NtpReply(server, local, remote, stratum)
            finally:
                transport.close()
    except TimeoutError:
        raise NtpError(f"ntp query to {server}: no answer within {timeout:g} s") from None
    except socket.gaierror as exc:
        raise NtpError(f"ntp query to {server}: cannot resolve {host}: {exc.strerror}") from None
    except OSError as exc:
        raise NtpError(f"ntp query to {server}: {exc.strerror or exc}") from None


def _check(server: str, data: bytes, nonce: tuple[int, int]) -> tuple[int, float] | None:
    """``(stratum, transmit time)`` of a valid reply to ``nonce``; None for a datagram that is
    not a reply to it (ignored); NtpError for a reply that refuses."""
    if len(data) < PACKET_SIZE:
        return None
    flags, stratum, _poll, _precision, *words = _PACKET.unpack_from(data)
    origin = (words[5], words[6])
    if flags & 0x7 != 4 or origin != nonce:  # mode 4 (server), echoing our transmit field
        return None
    if stratum == 0:
        code = data[12:16].decode("ascii", "replace").strip("\0")
        raise NtpError(f"ntp query to {server}: refused (kiss code {code or '?'})")
    if flags >> 6 == 3:
        raise NtpError(f"ntp query to {server}: the server's clock is not synchronized")
    transmit = (words[9], words[10])
    if transmit == (0, 0):
        raise NtpError(f"ntp query to {server}: the reply has no transmit time")
    return stratum, _from_ntp(*transmit)


def _ts(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt.datetime.fromtimestamp(seconds, dt.UTC))
    return ts


class TimeService(time_grpc.TimeServiceBase):
    def __init__(self, node: ApiBackend, *, maintenance: bool) -> None:
        self.node = node
        self.maintenance = maintenance

    def __mapping__(self) -> dict[str, Any]:
        mapping = super().__mapping__()
        if self.maintenance:  # v0.9.3's maintenance service has no time service
            return maintenance_mapping(mapping, "time.TimeService", ())
        return mapping

    def _configured_server(self) -> str:
        text = self.node.config_text()
        section = None
        if text is not None:
            from libtalos import config  # here: the maintenance banner does not wait for it

            section = config.load(text, "running config").config.machine.time
        if section is not None and section.disabled:
            raise GRPCError(
                GrpcStatus.FAILED_PRECONDITION,
                "the time service is disabled (machine.time.disabled); use TimeCheck",
            )
        servers = section.servers if section is not None else []
        return servers[0] if servers else DEFAULT_SERVER

    async def _reply(self, stream: Stream[Any, Any], server: str) -> None:
        try:
            got = await query(server)
        except ValueError as exc:
            raise GRPCError(GrpcStatus.INVALID_ARGUMENT, str(exc)) from None
        except NtpError as exc:
            raise GRPCError(GrpcStatus.UNAVAILABLE, exc.message) from None
        msg = time_pb2.Time(server=server, localtime=_ts(got.local), remotetime=_ts(got.remote))
        await stream.send_message(time_pb2.TimeResponse(messages=[msg]))

    async def Time(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await self._reply(stream, self._configured_server())

    async def TimeCheck(self, stream: Stream[Any, Any]) -> None:
        req = await stream.recv_message()
        assert req is not None  # noqa: S101 - grpclib delivers the unary request
        await self._reply(stream, req.server)
