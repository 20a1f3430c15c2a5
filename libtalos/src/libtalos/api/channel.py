"""Closing connections of the machine API at once, on every Python 3.11 patch release.

Server and client drop a connection with ``transport.abort()`` when it is done with it: a
graceful TLS shutdown could outlive the event loop and leave the socket to the garbage
collector. :func:`abort` is that drop, made safe for a connection that is already gone.

Early Python 3.11 releases (Debian 12's 3.11.2 among them) forget the TLS protocol of an SSL
transport on its second ``close()`` and then fail in ``abort()`` with ``AttributeError:
'NoneType' object has no attribute '_abort'``; later ones (3.11.7) check for it. grpclib closes
a transport whose peer went away, and the server's or the channel's own close then aborts it
once more, so the case is ordinary: a client that hung up, a node that stopped.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from grpclib.client import Channel
from grpclib.protocol import H2Protocol

from libtalos.api import tls


def gone(transport: asyncio.BaseTransport) -> bool:
    """True when the connection has nothing left to close: an SSL transport that no longer
    has its TLS protocol (its second ``close()`` has run)."""
    return getattr(transport, "_ssl_protocol", transport) is None


def abort(transport: asyncio.BaseTransport | None) -> None:
    """Drop the connection now; a no-op when it is already gone (or ``None``)."""
    if isinstance(transport, asyncio.Transport) and not gone(transport):
        transport.abort()


class ClosingChannel(Channel):
    """A grpclib channel whose ``close()`` drops its connection at once.

    With ``pins`` (SPKI SHA-256 digests), the server's key is checked right after the TLS
    handshake, before the first request byte is written: nothing of a request leaves on a
    mismatch.
    """

    def __init__(
        self, host: str, port: int, *, ssl: ssl.SSLContext, pins: list[bytes] | None = None
    ) -> None:
        super().__init__(host, port, ssl=ssl)
        self._pins = list(pins or ())
        self._transport: asyncio.BaseTransport | None = None

    async def _create_connection(self) -> H2Protocol:
        transport: Any
        transport, protocol = await self._loop.create_connection(
            self._protocol_factory, self._host, self._port, ssl=self._ssl
        )
        if self._pins:
            obj = transport.get_extra_info("ssl_object")
            der = obj.getpeercert(binary_form=True) if obj is not None else None
            try:
                tls.check_pin(der, self._pins)
            except BaseException:
                abort(transport)
                raise
        self._transport = transport
        return protocol

    def close(self) -> None:
        super().close()
        abort(self._transport)
        self._transport = None
