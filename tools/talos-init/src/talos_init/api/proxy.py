"""Proxying as apid does: ``nodes`` fans out, ``node`` forwards to one.

The rules: docs/talos-facts.md#api-proxying.

Every handler taking one request is wrapped (a client-streaming one, ``upgrade.Upload``, runs
only on the node dialled, and refuses ``nodes``/``node``): a call with no ``nodes``/``node``
metadata, or with ``proxyfrom`` (it was already forwarded once: never again, which stops
loops), runs locally. Otherwise the request goes to each target over mutual TLS with this
node's own certificate, with ``nodes``/``node`` removed and ``proxyfrom`` set. Unary replies
are merged into one reply whose messages carry ``metadata.hostname`` = the target string as
given; a target that fails contributes one message with ``metadata.error`` (and
``metadata.status``) instead of failing the call. Streamed frames are tagged the same way; a
failing target adds one error frame.

A target that is the address and port the caller connected to is this node itself: its part of
the call runs here, tagged like any other target, with no connection made. A worker needs that
(its certificate is a server certificate only, so it cannot dial itself), and it saves every
node a TLS round trip to itself.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from grpclib import GRPCError
from grpclib.const import Cardinality, Handler
from grpclib.const import Status as GrpcStatus
from grpclib.server import Stream

from libtalos.api.channel import ClosingChannel
from libtalos.api.wire import (
    NODE_KEY,
    NODES_KEY,
    PROXYFROM_KEY,
    error_message,
    split_target,
    tag,
)

FORWARD_TIMEOUT = 60.0  # seconds, when the caller set no deadline
_SKIP_KEYS = {NODES_KEY, NODE_KEY, ":authority", "te", "content-type", "user-agent"}


def _values(metadata: Any, key: str) -> list[str]:
    out: list[str] = []
    for value in metadata.getall(key, []):
        out += [v.strip() for v in str(value).split(",") if v.strip()]
    return out


class Forwarder:
    """Channels to other nodes (cached per target) and the forwarding of one call."""

    def __init__(self, client_ssl: ssl.SSLContext, proxy_from: str) -> None:
        self.client_ssl = client_ssl
        self.proxy_from = proxy_from
        self._channels: dict[str, ClosingChannel] = {}
        self.local_handlers: dict[str, Callable[[Any], Awaitable[None]]] = {}

    def channel(self, target: str) -> ClosingChannel:
        if target not in self._channels:
            host, port = split_target(target)
            self._channels[target] = ClosingChannel(host, port, ssl=self.client_ssl)
        return self._channels[target]

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    def _metadata(self, incoming: Any) -> list[tuple[str, str]]:
        md = [
            (k, str(v)) for k, v in incoming.items() if k not in _SKIP_KEYS and k != PROXYFROM_KEY
        ]
        return [*md, (PROXYFROM_KEY, self.proxy_from)]

    def wrap(self, name: str, handler: Handler) -> Handler:
        local = handler.func
        self.local_handlers[name] = local
        if handler.cardinality in (Cardinality.STREAM_UNARY, Cardinality.STREAM_STREAM):
            return Handler(
                _unproxied(name, local),
                handler.cardinality,
                handler.request_type,
                handler.reply_type,
            )

        async def func(stream: Stream[Any, Any]) -> None:
            md = stream.metadata
            if md is None or PROXYFROM_KEY in md:
                await local(stream)
                return None
            nodes = _values(md, NODES_KEY)
            one = _values(md, NODE_KEY)
            if not nodes and not one:
                await local(stream)
                return None
            if nodes and one:
                raise GRPCError(GrpcStatus.INVALID_ARGUMENT, "use either nodes or node, not both")
            request = await stream.recv_message()
            timeout = stream.deadline.time_remaining() if stream.deadline else FORWARD_TIMEOUT
            forward = self._metadata(md)
            call = _Call(self, name, handler, request, forward, timeout, _local_address(stream))
            call.peer = stream.peer  # a part run here still knows who called
            if one:
                return await call.one_to_one(stream, one[0])
            if handler.cardinality is Cardinality.UNARY_UNARY:
                return await call.unary(stream, nodes)
            return await call.streaming(stream, nodes)

        return Handler(func, handler.cardinality, handler.request_type, handler.reply_type)


def _unproxied(name: str, local: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Any]:
    """A client-streaming method runs on the node dialled: a call that names other targets
    is refused rather than run here."""

    async def func(stream: Stream[Any, Any]) -> None:
        md = stream.metadata
        targets = md is not None and (_values(md, NODES_KEY) or _values(md, NODE_KEY))
        if targets and md is not None and PROXYFROM_KEY not in md:
            raise GRPCError(
                GrpcStatus.INVALID_ARGUMENT,
                f"{name.rsplit('/', 1)[-1]} streams to the node dialled: call it with that"
                " node as the endpoint and no nodes/node metadata",
            )
        await local(stream)

    return func


def _local_address(stream: Stream[Any, Any]) -> tuple[str, int] | None:
    """The address and port the caller connected to (IPv4-mapped IPv6 as plain IPv4)."""
    transport: Any = getattr(stream.peer, "_transport", None)  # grpclib's Peer keeps it
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not sockname:
        return None
    host = str(sockname[0]).removeprefix("::ffff:")
    return host, int(sockname[1])


class _LocalStream:
    """What a handler needs of a stream, for running one target's part of a call here: the
    request, a sink for the replies it sends, and metadata saying it was forwarded already."""

    def __init__(
        self,
        request: Any,
        metadata: list[tuple[str, str]],
        sink: Callable[[Any], Awaitable[None]],
        peer: Any = None,
    ) -> None:
        self._request: Any = request
        self.metadata = _Metadata(metadata)
        self.deadline = None
        self.peer = peer
        self.send_message = sink

    async def recv_message(self) -> Any:
        request, self._request = self._request, None
        return request


class _Metadata(dict[str, str]):
    def getall(self, key: str, default: list[str]) -> list[str]:
        return [self[key]] if key in self else default


def _describe(exc: BaseException) -> tuple[str, int]:
    if isinstance(exc, GRPCError):
        return f"rpc error: code = {exc.status.name} desc = {exc.message or ''}", exc.status.value
    if isinstance(exc, asyncio.TimeoutError):
        return "rpc error: code = DEADLINE_EXCEEDED", GrpcStatus.DEADLINE_EXCEEDED.value
    if isinstance(exc, ssl.SSLError | ConnectionError | OSError):
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return f"connection error: {text}", GrpcStatus.UNAVAILABLE.value
    return f"proxy error: {type(exc).__name__}", GrpcStatus.UNKNOWN.value


class _Call:
    def __init__(
        self,
        fwd: Forwarder,
        name: str,
        handler: Handler,
        request: Any,
        metadata: list[tuple[str, str]],
        timeout: float,
        local: tuple[str, int] | None = None,
    ) -> None:
        self.fwd, self.name, self.handler = fwd, name, handler
        self.request, self.metadata, self.timeout = request, metadata, timeout
        self.local = local
        self.peer: Any = None  # the caller's connection (its certificate names it)

    def _is_here(self, target: str) -> bool:
        if self.local is None:
            return False
        host, port = split_target(target)
        return (host.removeprefix("::ffff:"), port) == self.local

    async def _run_here(self, sink: Callable[[Any], Awaitable[None]]) -> None:
        """Run the call in this node (its handler, unwrapped), passing each reply to ``sink``."""
        here = _LocalStream(self.request, self.metadata, sink, self.peer)
        await self.fwd.local_handlers[self.name](here)

    def _open(self, target: str) -> Any:
        return self.fwd.channel(target).request(
            self.name,
            self.handler.cardinality,
            self.handler.request_type,
            self.handler.reply_type,
            timeout=self.timeout,
            metadata=self.metadata,
        )

    async def _unary(self, target: str) -> Any:
        if self._is_here(target):
            replies: list[Any] = []

            async def keep(reply: Any) -> None:
                replies.append(reply)

            await asyncio.wait_for(self._run_here(keep), self.timeout)
            return replies[0]
        async with self._open(target) as s:
            await s.send_message(self.request, end=True)
            return await s.recv_message()

    async def one_to_one(self, stream: Stream[Any, Any], target: str) -> None:
        if self._is_here(target):
            await self._run_here(stream.send_message)
            return
        async with self._open(target) as s:
            await s.send_message(self.request, end=True)
            async for reply in s:
                await stream.send_message(reply)

    async def unary(self, stream: Stream[Any, Any], targets: list[str]) -> None:
        results = await asyncio.gather(*(self._unary(t) for t in targets), return_exceptions=True)
        merged = self.handler.reply_type()
        for target, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                text, code = _describe(result)
                merged.MergeFrom(error_message(self.handler.reply_type, target, text, code))
                continue
            tag(result.messages, target)
            merged.messages.extend(result.messages)
        await stream.send_message(merged)

    async def streaming(self, stream: Stream[Any, Any], targets: list[str]) -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
        reply_type = self.handler.reply_type

        async def pump(target: str) -> None:
            async def put(frame: Any) -> None:
                frame.metadata.hostname = target
                await queue.put(frame)

            try:
                if self._is_here(target):
                    await self._run_here(put)
                    return
                async with self._open(target) as s:
                    await s.send_message(self.request, end=True)
                    async for frame in s:
                        frame.metadata.hostname = target
                        await queue.put(frame)
            except Exception as exc:  # noqa: BLE001 - every failure becomes that node's error frame
                text, code = _describe(exc)
                frame = reply_type()
                frame.metadata.hostname = target
                frame.metadata.error = text
                frame.metadata.status.code = code
                frame.metadata.status.message = text
                await queue.put(frame)

        tasks = [asyncio.create_task(pump(t)) for t in targets]
        pending: set[asyncio.Task[Any]] = set(tasks)
        getter: asyncio.Task[Any] | None = None
        try:
            while pending or not queue.empty():
                if not queue.empty():
                    await stream.send_message(queue.get_nowait())
                    continue
                getter = asyncio.create_task(queue.get())
                finished, _ = await asyncio.wait(
                    {getter, *pending}, return_when=asyncio.FIRST_COMPLETED
                )
                pending -= finished
                if getter.done():
                    frame = getter.result()
                    getter = None
                    await stream.send_message(frame)
                else:
                    getter.cancel()
                    getter = None
        finally:
            leftovers = [t for t in [*tasks, getter] if t is not None and not t.done()]
            for task in leftovers:
                task.cancel()
            if leftovers:
                await asyncio.wait(leftovers)


def proxied_mapping(mapping: dict[str, Handler], forwarder: Forwarder) -> dict[str, Handler]:
    """``mapping`` with every handler wrapped by :meth:`Forwarder.wrap`."""
    return {name: forwarder.wrap(name, h) for name, h in mapping.items()}


Wrap = Callable[[dict[str, Handler]], dict[str, Handler]]
