"""Dropping a TLS connection that is already gone is a no-op, on every Python 3.11.

Python 3.11.2 (Debian 12's) forgets an SSL transport's TLS protocol on the transport's second
``close()``, and its ``abort()`` then raises AttributeError. The server's stop, a channel's
close and a proxied target's close all abort connections that grpclib or the peer may have
closed already.
"""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest
from google.protobuf import empty_pb2

from libtalos.api import channel, tls
from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
from libtalos.api.channel import ClosingChannel


async def _closed_twice(port: int) -> asyncio.Transport:
    """A client TLS transport closed twice: the state 3.11.2's abort() trips over."""
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls.insecure_client_context()
    )
    transport = writer.transport
    transport.close()
    transport.close()
    await asyncio.sleep(0.05)
    return transport  # type: ignore[return-value]


def test_abort_after_second_close_is_a_no_op(maintenance):
    s, _node, _cert = maintenance()

    async def go() -> None:
        transport = await _closed_twice(s.port)
        # the state is the one that breaks an unguarded abort: its TLS protocol is gone
        assert transport._ssl_protocol is None  # type: ignore[attr-defined]
        assert channel.gone(transport)
        channel.abort(transport)
        channel.abort(transport)
        channel.abort(None)

    asyncio.run(go())


def test_a_live_transport_is_aborted(maintenance):
    """Negative control: abort() is not a no-op for a connection that is still up."""
    s, _node, _cert = maintenance()

    async def go() -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", s.port, ssl=tls.insecure_client_context()
        )
        assert not channel.gone(writer.transport)
        channel.abort(writer.transport)
        assert writer.transport.is_closing()
        assert await reader.read() == b""  # dropped: no more data is received

    asyncio.run(go())


def test_server_stops_after_clients_hung_up(maintenance):
    """Clients that closed their side (one politely, one twice, one by abort) before the
    server stops: stop() closes what is left without raising."""
    s, _node, _cert = maintenance()

    async def clients() -> None:
        for _ in range(3):
            ch = ClosingChannel("127.0.0.1", s.port, ssl=tls.insecure_client_context())
            reply = await MachineServiceStub(ch).Version(empty_pb2.Empty(), timeout=10)
            assert reply.messages
            ch.close()
        await _closed_twice(s.port)
        _r, w = await asyncio.open_connection(
            "127.0.0.1", s.port, ssl=tls.insecure_client_context()
        )
        w.close()
        await asyncio.sleep(0.2)  # the server sees every hang-up

    asyncio.run(clients())
    s.stop()


def test_channel_closes_after_the_server_went_away(maintenance):
    """The server stops first (its side aborts the connection), then the client closes."""
    s, _node, _cert = maintenance()
    seen: list[object] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u.exc_value)
    try:

        async def go() -> None:
            ch = ClosingChannel("127.0.0.1", s.port, ssl=tls.insecure_client_context())
            assert (await MachineServiceStub(ch).Version(empty_pb2.Empty(), timeout=10)).messages
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(s.server.stop(), s.loop))
            s.running = False
            await asyncio.sleep(0.2)
            ch.close()
            ch.close()

        asyncio.run(go())
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert seen == []


@pytest.mark.parametrize("closes", [1, 2])
def test_pinned_channel_refusal_leaves_nothing_open(maintenance, closes):
    """A key-pin mismatch aborts the fresh connection; closing the channel afterwards (once or
    twice) raises nothing and leaks nothing."""
    from libtalos.errors import PKIError

    s, _node, _cert = maintenance()

    async def go() -> None:
        ch = ClosingChannel(
            "127.0.0.1", s.port, ssl=tls.insecure_client_context(), pins=[b"\0" * 32]
        )
        with pytest.raises(PKIError):
            await MachineServiceStub(ch).Version(empty_pb2.Empty(), timeout=10)
        for _ in range(closes):
            ch.close()

    asyncio.run(go())
