"""Dialling the machine API: endpoints in turn, mutual TLS or ``--insecure`` with a key pin.

A call goes to the first endpoint that answers (the others are tried when one cannot be
reached: fail-over), with the gRPC metadata ``nodes`` listing the target nodes, as talosctl
does; the endpoint fans the call out and tags each reply with its node. ``--insecure`` dials the
one node directly, without ``nodes`` (maintenance mode has no proxy).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from grpclib import GRPCError
from grpclib.exceptions import StreamTerminatedError

from libtalos import talosconfig
from libtalos.api import API_PORT, tls
from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
from libtalos.api.channel import ClosingChannel
from libtalos.api.wire import NODES_KEY, NodeError, split_errors
from libtalos.endpoint import parse_address
from libtalos.errors import NetworkError, PKIError, TalosError, UsageError
from talos_apply.options import Globals

CALL_TIMEOUT = 60.0  # seconds for one unary call

# A configured node requires a client certificate, which --insecure does not send. The server
# asks for one in the handshake (CertificateRequest). Over TLS 1.3 the client completes the
# handshake, then a server on Go's crypto/tls sends the ``certificate_required`` alert while one
# on Python's asyncio drops the connection without a word; over TLS 1.2 the handshake fails
# (Go sends ``bad_certificate``). These are OpenSSL's names of the two alerts.
_CERT_REQUIRED = frozenset({"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE"})
_CERTIFICATE_REQUEST = 13  # TLS handshake message type (RFC 8446 §4.3.2)


class CallError(TalosError):
    """The node answered with a gRPC error (status and message in the text)."""

    def __init__(self, where: str, status: str, message: str) -> None:
        super().__init__(f"{where}: {status}: {message}" if message else f"{where}: {status}")
        self.status = status


@dataclass
class Target:
    endpoints: list[str]
    nodes: list[str]
    ssl: ssl.SSLContext
    pins: list[bytes] = field(default_factory=list)
    direct: bool = False  # --insecure: dial the node itself, no ``nodes`` metadata
    # --insecure: notes whether the node asked for a client certificate
    watch: CertificateRequestWatch | None = None

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return [] if self.direct else [(NODES_KEY, n) for n in self.nodes]


def _b64(value: str, key: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TalosError(f"talosconfig: {key} is not valid base64") from None


class ConfiguredNodeError(NetworkError):
    """``--insecure`` reached a node that requires a client certificate: it is configured."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(
            f"{endpoint}: the node is already configured: it requires a client certificate, "
            "which --insecure (maintenance mode) does not send",
            hint="drop --insecure and use the cluster's talosconfig (--talosconfig FILE)",
        )


class _Channel(ClosingChannel):
    """A channel that keeps the exception its connection was lost with (grpclib reports only
    ``StreamTerminatedError``): a TLS alert the server sent after the handshake is in it."""

    def __init__(
        self, host: str, port: int, *, ssl: ssl.SSLContext, pins: list[bytes] | None = None
    ) -> None:
        super().__init__(host, port, ssl=ssl, pins=pins)
        self.lost: BaseException | None = None

    def _protocol_factory(self) -> Any:
        protocol: Any = super()._protocol_factory()  # grpclib's H2Protocol
        lost = protocol.connection_lost

        def connection_lost(exc: BaseException | None) -> None:
            if exc is not None and self.lost is None:
                self.lost = exc
            lost(exc)

        protocol.connection_lost = connection_lost
        return protocol


class CertificateRequestWatch:
    """Notes whether a server of ``context`` sent a CertificateRequest (asked for a client
    certificate). An ``--insecure`` target dials one node, so one note covers its calls.

    Python has no public accessor for this; ``SSLContext._msg_callback`` (CPython's message
    trace hook, present since 3.8) is used when it exists; without it nothing is noted.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.seen = False
        if hasattr(context, "_msg_callback"):
            context._msg_callback = self._message  # a private hook: see the docstring

    def _message(
        self, _conn: Any, direction: str, _ver: Any, _kind: Any, msg: Any, _d: Any
    ) -> None:
        if direction == "read" and msg == _CERTIFICATE_REQUEST:
            self.seen = True


def insecure_target(g: Globals, pins: list[str]) -> Target:
    if len(g.nodes) != 1:
        raise UsageError("--insecure needs exactly one node (--nodes IP)")
    talosconfig.check_endpoints(g.nodes, "--nodes")  # the node is dialled directly
    context = tls.insecure_client_context()
    return Target(
        endpoints=list(g.nodes),
        nodes=list(g.nodes),
        ssl=context,
        pins=[tls.parse_pin(p) for p in pins],
        direct=True,
        watch=CertificateRequestWatch(context),
    )


def secure_target(g: Globals, *, need_nodes: bool = True) -> Target:
    path = talosconfig.default_path(g.talosconfig)
    cfg = talosconfig.load(path)
    if not cfg.contexts:
        raise TalosError(f"{path}: no talosconfig contexts", hint="pass --talosconfig FILE")
    ctx = cfg.current(g.context)
    if g.endpoints:
        endpoints = talosconfig.check_endpoints(g.endpoints, "-e/--endpoints")
    else:
        endpoints = cfg.endpoints_of(g.context, str(path))
    nodes = g.nodes or ctx.nodes
    if not endpoints:
        raise UsageError("no endpoints: pass -e/--endpoints or run 'config endpoint'")
    if need_nodes and not nodes:
        raise UsageError("nodes are not set for the command: please use `--nodes` flag")
    if not (ctx.ca and ctx.crt and ctx.key):
        raise TalosError("the talosconfig context has no ca/crt/key for mutual TLS")
    context = tls.client_context(_b64(ctx.ca, "ca"), _b64(ctx.crt, "crt"), _b64(ctx.key, "key"))
    return Target(list(endpoints), list(nodes), context)


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, GRPCError):
        return exc.status.name == "UNAVAILABLE"
    return isinstance(exc, OSError | ssl.SSLError | StreamTerminatedError | asyncio.TimeoutError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or 'handshake failed'}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, GRPCError):
        return f"{exc.status.name}: {exc.message or ''}"
    return type(exc).__name__


def _grpc_error(where: str, exc: GRPCError) -> CallError:
    return CallError(where, exc.status.name.lower().replace("_", " "), exc.message or "")


class Client:
    def __init__(self, target: Target) -> None:
        self.target = target

    def _channel(self, endpoint: str) -> _Channel:
        parsed = parse_address(endpoint)
        port = parsed.port if parsed.port is not None else API_PORT
        return _Channel(parsed.host, port, ssl=self.target.ssl, pins=self.target.pins)

    def _refused(self, endpoint: str, exc: BaseException, channel: _Channel) -> None:
        """Raise :class:`ConfiguredNodeError` when ``--insecure`` failed because the node
        requires a client certificate (see ``_CERT_REQUIRED``)."""
        if not self.target.direct:
            return
        for cause in (exc, channel.lost):
            if isinstance(cause, ssl.SSLError) and cause.reason in _CERT_REQUIRED:
                raise ConfiguredNodeError(endpoint) from None
        if self.target.watch is not None and self.target.watch.seen:
            raise ConfiguredNodeError(endpoint) from None  # asked for a cert, then failed

    def _order(self) -> list[str]:
        """Every endpoint once, starting at a random one: calls spread over the endpoints
        (load balance) and each call fails over to the next."""
        eps = self.target.endpoints
        start = random.randrange(len(eps)) if len(eps) > 1 else 0  # noqa: S311 - not crypto
        return eps[start:] + eps[:start]

    async def each_endpoint(
        self, attempt: Callable[[Any], Any], stub: Callable[[Any], Any] = MachineServiceStub
    ) -> Any:
        reasons: list[str] = []
        for endpoint in self._order():
            channel = self._channel(endpoint)
            try:
                return await attempt(stub(channel))
            except PKIError:
                raise
            except GRPCError as exc:
                if not _unreachable(exc):
                    raise _grpc_error(endpoint, exc) from None
                reasons.append(f"{endpoint}: {_reason(exc)}")
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                self._refused(endpoint, exc, channel)
                reasons.append(f"{endpoint}: {_reason(exc)}")
            finally:
                channel.close()
        raise NetworkError("no endpoint could be reached: " + "; ".join(reasons))

    async def unary(
        self, method: str, request: Any, *, stub: Callable[[Any], Any] = MachineServiceStub
    ) -> tuple[list[Any], list[NodeError]]:
        """Call ``method`` of ``stub``'s service (default: machine.MachineService); the reply's
        messages, split into answers and per-node errors."""

        async def attempt(service: Any) -> Any:
            call = getattr(service, method)
            return await call(request, timeout=CALL_TIMEOUT, metadata=self.target.metadata)

        reply = await self.each_endpoint(attempt, stub)
        return split_errors(reply.messages)

    async def stream(self, method: str, request: Any) -> AsyncIterator[Any]:
        """Frames of a server-streaming ``method`` (per-node errors come as frames with
        ``metadata.error``). Fail-over happens only before the first frame."""
        reasons: list[str] = []
        for endpoint in self._order():
            channel = self._channel(endpoint)
            started = False
            try:
                call = getattr(MachineServiceStub(channel), method)
                async with call.open(metadata=self.target.metadata) as s:
                    await s.send_message(request, end=True)
                    async for frame in s:
                        started = True
                        yield frame
                return
            except PKIError:
                raise
            except GRPCError as exc:
                if started or not _unreachable(exc):
                    raise _grpc_error(endpoint, exc) from None
                reasons.append(f"{endpoint}: {_reason(exc)}")
            except Exception as exc:
                if started or not _unreachable(exc):
                    raise
                self._refused(endpoint, exc, channel)
                reasons.append(f"{endpoint}: {_reason(exc)}")
            finally:
                channel.close()
        raise NetworkError("no endpoint could be reached: " + "; ".join(reasons))


def run(coro: Any) -> Any:
    """Run one client coroutine to completion (each command is one event loop)."""
    return asyncio.run(coro)
