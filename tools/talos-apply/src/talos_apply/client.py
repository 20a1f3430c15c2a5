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
from libtalos.api import tls
from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
from libtalos.api.channel import ClosingChannel
from libtalos.api.wire import NODES_KEY, NodeError, split_errors, split_target
from libtalos.errors import NetworkError, PKIError, TalosError, UsageError
from talos_apply.options import Globals

CALL_TIMEOUT = 60.0  # seconds for one unary call


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

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return [] if self.direct else [(NODES_KEY, n) for n in self.nodes]


def _b64(value: str, key: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TalosError(f"talosconfig: {key} is not valid base64") from None


def insecure_target(g: Globals, pins: list[str]) -> Target:
    if len(g.nodes) != 1:
        raise UsageError("--insecure needs exactly one node (--nodes IP)")
    return Target(
        endpoints=list(g.nodes),
        nodes=list(g.nodes),
        ssl=tls.insecure_client_context(),
        pins=[tls.parse_pin(p) for p in pins],
        direct=True,
    )


def secure_target(g: Globals, *, need_nodes: bool = True) -> Target:
    path = talosconfig.default_path(g.talosconfig)
    cfg = talosconfig.load(path)
    if not cfg.contexts:
        raise TalosError(f"{path}: no talosconfig contexts", hint="pass --talosconfig FILE")
    ctx = cfg.current(g.context)
    endpoints = g.endpoints or ctx.endpoints
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

    def _channel(self, endpoint: str) -> ClosingChannel:
        host, port = split_target(endpoint)
        return ClosingChannel(host, port, ssl=self.target.ssl, pins=self.target.pins)

    def _order(self) -> list[str]:
        """Every endpoint once, starting at a random one: calls spread over the endpoints
        (load balance) and each call fails over to the next."""
        eps = self.target.endpoints
        start = random.randrange(len(eps)) if len(eps) > 1 else 0  # noqa: S311 - not crypto
        return eps[start:] + eps[:start]

    async def _each_endpoint(self, attempt: Callable[[MachineServiceStub], Any]) -> Any:
        reasons: list[str] = []
        for endpoint in self._order():
            channel = self._channel(endpoint)
            try:
                return await attempt(MachineServiceStub(channel))
            except PKIError:
                raise
            except GRPCError as exc:
                if not _unreachable(exc):
                    raise _grpc_error(endpoint, exc) from None
                reasons.append(f"{endpoint}: {_reason(exc)}")
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                reasons.append(f"{endpoint}: {_reason(exc)}")
            finally:
                channel.close()
        raise NetworkError("no endpoint could be reached: " + "; ".join(reasons))

    async def unary(self, method: str, request: Any) -> tuple[list[Any], list[NodeError]]:
        """Call ``method``; the reply's messages, split into answers and per-node errors."""

        async def attempt(stub: MachineServiceStub) -> Any:
            call = getattr(stub, method)
            return await call(request, timeout=CALL_TIMEOUT, metadata=self.target.metadata)

        reply = await self._each_endpoint(attempt)
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
                reasons.append(f"{endpoint}: {_reason(exc)}")
            finally:
                channel.close()
        raise NetworkError("no endpoint could be reached: " + "; ".join(reasons))


def run(coro: Any) -> Any:
    """Run one client coroutine to completion (each command is one event loop)."""
    return asyncio.run(coro)
