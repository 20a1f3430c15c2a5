"""Bounds on what a client can make the machine API do: request messages over their method's
limit are refused from their length prefix (maintenance and configured mode, proxied calls too),
a config is parsed in a worker within a time budget, and error messages are bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.protobuf import empty_pb2
from grpclib import GRPCError
from grpclib.const import Status

from libtalos import yamlio
from libtalos.api import machine_pb2, tls
from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
from libtalos.api.channel import ClosingChannel
from libtalos.errors import ParseError, Problem, ValidationError
from talos_init.api import server as api_server
from talos_init.api import service

MIB = 1 << 20


def _call(port: int, ctx: Any, method: str, request: Any, **kw: Any) -> Any:
    async def run() -> Any:
        ch = ClosingChannel("127.0.0.1", port, ssl=ctx, pins=[])
        try:
            return await getattr(MachineServiceStub(ch), method)(request, timeout=60, **kw)
        finally:
            ch.close()

    return asyncio.run(run())


def _refusal(port: int, ctx: Any, method: str, request: Any, **kw: Any) -> GRPCError:
    with pytest.raises(GRPCError) as info:
        _call(port, ctx, method, request, **kw)
    return info.value


def _apply(data: bytes) -> machine_pb2.ApplyConfigurationRequest:
    return machine_pb2.ApplyConfigurationRequest(data=data)


def _padded_empty(size: int) -> empty_pb2.Empty:
    """An Empty carrying ``size`` bytes of an unknown field (field 15, length-delimited)."""
    payload = b"\x7a" + _varint(size) + b"\0" * size
    msg = empty_pb2.Empty()
    msg.ParseFromString(payload)
    return msg


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_maintenance_refuses_an_oversized_config_from_its_prefix(maintenance) -> None:
    s, node, _cert = maintenance()
    ctx = tls.insecure_client_context()
    err = _refusal(s.port, ctx, "ApplyConfiguration", _apply(b"x" * (5 * MIB)))
    assert err.status is Status.RESOURCE_EXHAUSTED
    assert err.message == (
        f"ApplyConfiguration request is {5 * MIB + 5} bytes; "
        f"the limit is {api_server.REQUEST_LIMITS['/machine.MachineService/ApplyConfiguration']}"
    )
    assert node.config_text() is None
    # negative control: just under the limit the message is read, and refused for what it says
    err = _refusal(s.port, ctx, "ApplyConfiguration", _apply(b"x" * (4 * MIB - 64)))
    assert err.status is Status.INVALID_ARGUMENT
    # the server still serves
    assert _call(s.port, ctx, "Version", empty_pb2.Empty()).messages


def test_configured_refuses_oversized_requests_also_when_proxied(configured) -> None:
    s, node = configured()
    ctx = s.server.forwarder.client_ssl  # a client certificate of the machine CA
    before = node.config_text()
    for metadata in (None, [("nodes", "127.0.0.1:1")]):  # local, and for another node
        err = _refusal(
            s.port, ctx, "ApplyConfiguration", _apply(b"x" * (5 * MIB)), metadata=metadata
        )
        assert err.status is Status.RESOURCE_EXHAUSTED, (metadata, err)
    # every other request is small: 64 KiB
    err = _refusal(s.port, ctx, "Version", _padded_empty(100_000))
    assert err.status is Status.RESOURCE_EXHAUSTED
    assert err.message.startswith("Version request is 100004 bytes; the limit is 65536")
    assert _call(s.port, ctx, "Version", _padded_empty(60_000)).messages  # under it: served
    assert node.config_text() == before


def test_a_config_that_takes_too_long_is_refused_at_the_budget(maintenance, monkeypatch) -> None:
    s, node, _cert = maintenance()
    ctx = tls.insecure_client_context()
    keys = "".join(f"    - 10.0.{i // 250}.{i % 250}\n" for i in range(15_000))
    text = f"version: v1alpha1\nmachine:\n    type: init\n    certSANs:\n{keys}"
    monkeypatch.setattr(service, "LOAD_BUDGET", 0.01)
    err = _refusal(s.port, ctx, "ApplyConfiguration", _apply(text.encode()))
    assert err.status is Status.INVALID_ARGUMENT
    assert err.message == "the config took more than 0.01 s to parse and validate"
    # negative control: with the budget back, the same config is read and judged on its merits
    monkeypatch.setattr(service, "LOAD_BUDGET", 30.0)
    err = _refusal(s.port, ctx, "ApplyConfiguration", _apply(text.encode()))
    assert "took more than" not in err.message and "cluster" in err.message, err.message
    assert node.config_text() is None


def test_bounded_messages() -> None:
    assert service.bounded("short") == "short"
    long = "\n".join(f"line {i}: " + "x" * 50 for i in range(1000))
    cut = service.bounded(long, 1000)
    assert len(cut.encode()) <= 1000
    assert cut.endswith(f"\n... (message cut at 1000 of {len(long.encode())} bytes)")
    assert cut.startswith("line 0: ") and "\nline 1: " in cut
    body = cut.rsplit("\n... (", 1)[0]
    assert all(line.endswith("x" * 50) for line in body.splitlines())  # cut at a line boundary
    wide = "ü" * 3000  # multi-byte characters are never split
    assert len(service.bounded(wide, 1001).encode()) <= 1001


def test_document_message_names_the_first_problems_and_counts_the_rest() -> None:
    problems = [Problem(message="unknown key", path=f"machine.k{i}", line=i) for i in range(25)]
    text = service.document_message(ValidationError(problems, summary="ignored"))
    lines = text.splitlines()
    assert lines[0] == "25 problems found"
    assert lines[1] == "line 0: machine.k0: unknown key"
    assert len(lines) == 1 + service.MAX_REPORTED + 1
    assert lines[-1] == "... and 5 more problems"
    one = ValidationError([problems[0]])
    assert service.document_message(one) == one.message


def test_node_limit_counts_before_building() -> None:
    flow = "[" + ", ".join(["x"] * 99) + "]"  # 100 nodes: the list and 99 scalars
    assert yamlio.load_documents(flow, "f", max_nodes=100)[0].data == ["x"] * 99
    with pytest.raises(ParseError) as info:
        yamlio.load_documents(flow, "f", max_nodes=99)
    assert info.value.problems[0].message == "more than 99 YAML nodes (the limit for this input)"
    block = "".join(f"k{i}: v\n" for i in range(100))
    with pytest.raises(ParseError) as info:
        yamlio.load_documents(block, "f.yaml", max_nodes=50)
    assert info.value.message.startswith("f.yaml:25: more than 50")  # the line where it overflowed
    # malformed YAML is still reported by the parser, with its own message
    with pytest.raises(ParseError, match="malformed YAML"):
        yamlio.load_documents("a: [\n", "f", max_nodes=10)
