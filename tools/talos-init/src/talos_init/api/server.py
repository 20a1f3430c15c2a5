"""The API server: grpclib over asyncio with Python's ``ssl``.

:meth:`ApiServer.maintenance` serves server-only TLS with the ephemeral certificate;
:meth:`ApiServer.configured` serves mutual TLS against ``machine.ca`` and proxies calls that
carry ``nodes``/``node`` metadata to other nodes (:mod:`talos_init.api.proxy`).

Every handler refuses a request message larger than its method's limit as soon as the message's
length prefix arrives (RESOURCE_EXHAUSTED): the body is never read, and HTTP/2 flow control
keeps what a client can send unread to one window (4 MiB).

The node routes every service of v0.9.3's API (machine, network, storage, time); a method it
does not serve, and any path that names no method at all, is answered UNIMPLEMENTED with a
complete gRPC response (``content-type: application/grpc``, ``grpc-status`` in the trailers).
grpclib's own reply to an unknown path lacks the content-type, which grpclib and Go clients
report as UNKNOWN instead.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import Sequence
from typing import Any

from google.protobuf import empty_pb2
from grpclib import GRPCError
from grpclib.const import Cardinality, Handler
from grpclib.const import Status as GrpcStatus
from grpclib.server import Server, Stream

from libtalos.api import API_PORT, channel, tls
from libtalos.secrets import CertKey
from talos_init.api.network import NetworkService
from talos_init.api.node import ApiBackend
from talos_init.api.proxy import Forwarder, proxied_mapping
from talos_init.api.service import MAX_CONFIG_BYTES, MachineService
from talos_init.api.storage import StorageService
from talos_init.api.time import TimeService
from talos_init.api.upgrade import CHUNK, UpgradeService

REQUEST_LIMIT = 64 << 10  # bytes of one request message: every request but a config is small
REQUEST_LIMITS = {
    "/machine.MachineService/ApplyConfiguration": MAX_CONFIG_BYTES + REQUEST_LIMIT,
    "/upgrade.UpgradeService/Upload": CHUNK + REQUEST_LIMIT,
}

TYPE_CHECKING = False
if TYPE_CHECKING:
    from talos_init.api.certs import MaintenanceCert


MAX_PATH_REPORTED = 200  # characters of an unknown path repeated in grpc-message


def _unknown_method(path: str) -> Handler:
    """A handler answering UNIMPLEMENTED for ``path``, which names no method of this node. It
    reads nothing of the request; the declared types only satisfy grpclib's Stream."""
    shown = path if len(path) <= MAX_PATH_REPORTED else path[:MAX_PATH_REPORTED] + "..."

    async def unknown(stream: Stream[Any, Any]) -> None:
        raise GRPCError(GrpcStatus.UNIMPLEMENTED, f"unknown method {shown}")

    return Handler(unknown, Cardinality.UNARY_UNARY, empty_pb2.Empty, empty_pb2.Empty)


class _Routes(dict[str, Handler]):
    """The method table grpclib looks paths up in (``mapping.get(path)``): a path that is not in
    it gets :func:`_unknown_method` instead of grpclib's incomplete "method not found" reply."""

    def get(self, key: str, default: Any = None) -> Handler:
        found = super().get(key)
        return found if found is not None else _unknown_method(key)


class _Server(Server):
    """grpclib's Server, keeping its connections so that stopping closes them too (asyncio's
    server close, before Python 3.12, leaves accepted connections open)."""

    def __init__(self, handlers: list[Any]) -> None:
        super().__init__(handlers)
        self._mapping = _Routes(self._mapping)
        self.transports: weakref.WeakSet[asyncio.Transport] = weakref.WeakSet()

    def _protocol_factory(self) -> Any:
        protocol = super()._protocol_factory()
        made = protocol.connection_made

        def connection_made(transport: Any) -> None:
            self.transports.add(transport)
            made(transport)

        protocol.connection_made = connection_made  # type: ignore[method-assign]
        return protocol


def _limit_messages(stream: Stream[Any, Any], method: str, limit: int) -> None:
    """Make ``stream`` refuse a message over ``limit`` bytes when its length prefix arrives.

    grpclib reads a message as a 5-byte prefix (compression flag, big-endian length) and then
    the body, each with one ``recv_data`` of the HTTP/2 stream, and acknowledges data only as
    it is read: checking the prefix keeps an oversized body unread.
    """
    h2_stream: Any = stream._stream
    recv = h2_stream.recv_data
    at_prefix = True

    async def recv_data(size: int) -> bytes:
        nonlocal at_prefix
        data: bytes = await recv(size)
        if not at_prefix:
            at_prefix = True  # that was a body; a prefix comes next
        elif size == 5 and len(data) == 5:
            length = int.from_bytes(data[1:], "big")
            if length > limit:
                name = method.rsplit("/", 1)[-1]
                raise GRPCError(
                    GrpcStatus.RESOURCE_EXHAUSTED,
                    f"{name} request is {length} bytes; the limit is {limit}",
                )
            at_prefix = False
        return data

    h2_stream.recv_data = recv_data


def bounded_mapping(mapping: dict[str, Any]) -> dict[str, Any]:
    """``mapping`` with every handler limited to its method's request size."""

    def wrap(method: str, handler: Handler) -> Handler:
        limit = REQUEST_LIMITS.get(method, REQUEST_LIMIT)
        func = handler.func

        async def bounded(stream: Stream[Any, Any]) -> None:
            _limit_messages(stream, method, limit)
            await func(stream)

        return handler._replace(func=bounded)

    return {method: wrap(method, handler) for method, handler in mapping.items()}


class _Servable:
    """What grpclib's Server takes: an object with ``__mapping__``."""

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping

    def __mapping__(self) -> dict[str, Any]:
        return self._mapping


def node_services(node: ApiBackend, *, maintenance: bool) -> list[Any]:
    """The services beside MachineService that a node routes."""
    return [
        NetworkService(node, maintenance=maintenance),
        StorageService(node, maintenance=maintenance),
        TimeService(node, maintenance=maintenance),
        UpgradeService(node, maintenance=maintenance),
    ]


class ApiServer:
    def __init__(
        self,
        service: MachineService,
        server_ssl: ssl.SSLContext,
        forwarder: Forwarder | None = None,
        others: Sequence[Any] | None = None,
    ) -> None:
        """Serve ``service`` and ``others`` (default: :func:`node_services` of the same node
        and mode); with ``forwarder``, calls carrying ``nodes``/``node`` are proxied."""
        self.service = service
        self.ssl = server_ssl
        self.forwarder = forwarder
        if others is None:
            others = node_services(service.node, maintenance=service.maintenance)
        mapping = service.__mapping__()
        for other in others:
            mapping.update(other.__mapping__())
        if forwarder is not None:
            mapping = proxied_mapping(mapping, forwarder)
        self._server = _Server([_Servable(bounded_mapping(mapping))])
        self.port: int | None = None

    @classmethod
    def maintenance(cls, node: ApiBackend, cert: MaintenanceCert) -> ApiServer:
        ctx = tls.server_context(cert.server.crt, cert.server.key)
        return cls(MachineService(node, maintenance=True), ctx)

    @classmethod
    def configured(
        cls, node: ApiBackend, server_cert: CertKey, machine_ca_crt: bytes, *, proxy: bool = True
    ) -> ApiServer:
        """Mutual TLS: clients need a certificate from ``machine_ca_crt``. ``server_cert`` is
        also this node's client certificate when it forwards calls to other nodes."""
        ctx = tls.server_context(server_cert.crt, server_cert.key, client_ca=machine_ca_crt)
        forwarder = None
        if proxy:
            client = tls.client_context(machine_ca_crt, server_cert.crt, server_cert.key)
            forwarder = Forwarder(client, node.hostname or "talos")
        return cls(MachineService(node, maintenance=False), ctx, forwarder)

    async def start(self, host: str | None = None, port: int = API_PORT) -> int:
        """Listen (``host`` None: every address); returns the bound port (``port`` 0: any)."""
        await self._server.start(host, port, ssl=self.ssl, reuse_address=True)
        inner: Any = self._server._server  # grpclib keeps the asyncio server here
        sockets = inner.sockets if inner is not None else ()
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        return self.port

    def renew(self, server_cert: CertKey) -> None:
        """Use a new certificate for new connections (renewal at half-life); the listener and
        the connections already open are kept. It is also the client certificate this node
        presents when it forwards calls."""
        tls.load_chain(self.ssl, server_cert.crt, server_cert.key, "server")
        if self.forwarder is not None:
            tls.load_chain(self.forwarder.client_ssl, server_cert.crt, server_cert.key, "client")

    def _busy(self) -> bool:
        handlers: Any = self._server._handlers  # grpclib: one per connection
        return any(not task.done() for h in handlers for task in h._tasks.values())

    async def stop(self, grace: float = 0.0) -> None:
        """Stop serving. With ``grace``, stop accepting first and let calls in flight finish
        (up to ``grace`` seconds): maintenance mode stops the server right after it accepted
        a config, and the client must still get its reply."""
        inner: Any = self._server._server
        if grace > 0 and inner is not None:
            inner.close()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            while self._busy() and loop.time() < deadline:
                await asyncio.sleep(0.01)
        self._server.close()
        for transport in list(self._server.transports):
            channel.abort(transport)  # a client that hung up has left it closed already
        await self._server.wait_closed()
        await asyncio.sleep(0)  # let the aborted transports close their sockets
        if self.forwarder is not None:
            self.forwarder.close()
