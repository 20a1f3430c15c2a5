"""What a node answers for methods it does not serve and for paths that name no method: a
complete gRPC response (HTTP :status 200, ``content-type: application/grpc[+proto]``, ``grpc-status``
12 in the frame that ends the stream), checked on the wire with raw HTTP/2 frames (the ``h2``
package) and through a grpclib client, which turns anything less into UNKNOWN.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from google.protobuf import empty_pb2
from grpclib import GRPCError
from grpclib.const import Cardinality, Status

from libtalos.api import machine_pb2, tls
from libtalos.api._gen.machine import machine_grpc
from libtalos.api._gen.network import network_grpc, network_pb2
from libtalos.api._gen.storage import storage_grpc, storage_pb2
from libtalos.api._gen.time import time_grpc, time_pb2
from libtalos.api.channel import ClosingChannel

UNKNOWN_PATHS = [
    "/foo.Bar/Baz",
    "/machine.MachineService/NoSuch",
    "/network.NetworkService/NoSuch",
    "/notaservice",
]
GRPC_TYPES = ("application/grpc", "application/grpc+proto")  # grpclib sends the second
UNSERVED = "RemoveBootkubeInitializedKey"  # a v0.9 method for bootkube, which is gone


class Reply:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.trailers: dict[str, str] = {}
        self.data = b""
        self.ended = False

    @property
    def last(self) -> dict[str, str]:
        """The header block that ended the stream (trailers, or the only block)."""
        return self.trailers or self.headers


def _decode(block: Any) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in block
    }


def raw_grpc(port: int, ctx: ssl.SSLContext, path: str, body: bytes = b"") -> Reply:
    """One gRPC request written frame by frame: a 5-byte length prefix, then ``body``."""
    reply = Reply()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        assert sock.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(
            sid,
            [
                (":method", "POST"),
                (":scheme", "https"),
                (":path", path),
                (":authority", f"127.0.0.1:{port}"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        conn.send_data(sid, b"\0" + len(body).to_bytes(4, "big") + body, end_stream=True)
        sock.sendall(conn.data_to_send())
        while not reply.ended:
            chunk = sock.recv(65536)
            if not chunk:
                break
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    reply.headers = _decode(event.headers)
                elif isinstance(event, h2.events.TrailersReceived) and event.stream_id == sid:
                    reply.trailers = _decode(event.headers)
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    reply.data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif (
                    isinstance(event, h2.events.StreamEnded | h2.events.StreamReset)
                    and event.stream_id == sid
                ):
                    reply.ended = True
            sock.sendall(conn.data_to_send())
    assert reply.ended, "the server closed the connection before ending the stream"
    return reply


@pytest.fixture
def node(configured, cluster, admin):
    s, _node = configured("init", hostname="n1")
    return s, tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)


def call(port: int, ctx: ssl.SSLContext, fn: Any) -> Any:
    async def go() -> Any:
        ch = ClosingChannel("127.0.0.1", port, ssl=ctx, pins=[])
        try:
            return await fn(ch)
        finally:
            ch.close()

    return asyncio.run(go())


def unary(path: str, request: Any = None, reply_type: Any = empty_pb2.Empty) -> Any:
    async def fn(ch: ClosingChannel) -> Any:
        async with ch.request(
            path, Cardinality.UNARY_UNARY, type(request or empty_pb2.Empty()), reply_type
        ) as stream:
            await stream.send_message(request or empty_pb2.Empty(), end=True)
            return await stream.recv_message()

    return fn


# ---------------------------------------------------------------- on the wire


@pytest.mark.parametrize("path", [*UNKNOWN_PATHS, f"/machine.MachineService/{UNSERVED}"])
def test_raw_unimplemented_is_a_complete_grpc_response(node, path):
    s, ctx = node
    reply = raw_grpc(s.port, ctx, path)
    assert reply.headers[":status"] == "200"
    assert reply.headers["content-type"] in GRPC_TYPES
    assert reply.last["grpc-status"] == "12", reply.last
    assert reply.data == b""


def test_raw_unknown_path_is_named_in_the_message(node):
    s, ctx = node
    assert raw_grpc(s.port, ctx, "/foo.Bar/Baz").last["grpc-message"] == (
        "unknown method /foo.Bar/Baz"
    )
    unserved = raw_grpc(s.port, ctx, f"/machine.MachineService/{UNSERVED}")
    assert unserved.last["grpc-message"] == f"{UNSERVED} is not implemented on this node"


def test_raw_served_method_answers_ok(node):
    """Negative control: the same raw request to Version gets a reply and grpc-status 0."""
    s, ctx = node
    reply = raw_grpc(s.port, ctx, "/machine.MachineService/Version")
    assert reply.headers[":status"] == "200"
    assert reply.headers["content-type"] in GRPC_TYPES
    assert reply.trailers["grpc-status"] == "0"
    msg = machine_pb2.VersionResponse.FromString(reply.data[5:])
    assert msg.messages[0].version.tag


def test_raw_long_unknown_path_is_cut_in_the_message(node):
    s, ctx = node
    path = "/a.B/" + "x" * 5000
    reply = raw_grpc(s.port, ctx, path)
    assert reply.last["grpc-status"] == "12"
    assert len(reply.last["grpc-message"]) < 300


# ---------------------------------------------------------------- through grpclib


@pytest.mark.parametrize("path", UNKNOWN_PATHS)
def test_grpclib_sees_unimplemented_for_unknown_paths(node, path):
    s, ctx = node
    with pytest.raises(GRPCError) as err:
        call(s.port, ctx, unary(path))
    assert err.value.status is Status.UNIMPLEMENTED
    assert err.value.message == f"unknown method {path}"


def test_grpclib_stub_sees_unimplemented_for_an_unserved_method(node):
    s, ctx = node

    async def fn(ch: ClosingChannel) -> Any:
        return await machine_grpc.MachineServiceStub(ch).RemoveBootkubeInitializedKey(
            empty_pb2.Empty()
        )

    with pytest.raises(GRPCError) as err:
        call(s.port, ctx, fn)
    assert err.value.status is Status.UNIMPLEMENTED
    assert err.value.message == f"{UNSERVED} is not implemented on this node"


def test_grpclib_version_answers(node):
    """Negative control: a served method through the same client."""
    s, ctx = node

    async def fn(ch: ClosingChannel) -> Any:
        return await machine_grpc.MachineServiceStub(ch).Version(empty_pb2.Empty())

    reply = call(s.port, ctx, fn)
    assert reply.messages[0].version.tag


SERVICES = [
    (network_grpc.NetworkServiceStub, "Routes", empty_pb2.Empty()),
    (network_grpc.NetworkServiceStub, "Interfaces", empty_pb2.Empty()),
    (storage_grpc.StorageServiceStub, "Disks", empty_pb2.Empty()),
    (time_grpc.TimeServiceStub, "Time", empty_pb2.Empty()),
    (time_grpc.TimeServiceStub, "TimeCheck", time_pb2.TimeRequest(server="127.0.0.1")),
]


@pytest.mark.parametrize(("stub", "method", "request_msg"), SERVICES)
def test_other_services_are_routed(node, stub, method, request_msg):
    """network, storage and time are registered: whatever a method answers (served or not),
    it is not the reply to a path the node does not know."""
    s, ctx = node

    async def fn(ch: ClosingChannel) -> Any:
        return await getattr(stub(ch), method)(request_msg)

    try:
        reply = call(s.port, ctx, fn)
    except GRPCError as exc:
        assert not (exc.message or "").startswith("unknown method"), exc.message
        assert exc.status is not Status.UNKNOWN
    else:
        assert isinstance(
            reply,
            network_pb2.RoutesResponse
            | network_pb2.InterfacesResponse
            | storage_pb2.DisksResponse
            | time_pb2.TimeResponse,
        )


def test_every_v093_method_is_routed(node):
    """Every method of the four services is in the node's table (a missing one would get the
    unknown-method reply); the unknown path shows the check can fail."""
    from libtalos.api._gen.machine import machine_pb2 as mpb

    s, _ctx = node
    routes = s.server._server._mapping
    paths = [
        f"/{svc.full_name}/{m.name}"
        for pb in (mpb, network_pb2, storage_pb2, time_pb2)
        for svc in pb.DESCRIPTOR.services_by_name.values()
        for m in svc.methods
    ]
    assert len(paths) == 44  # 39 machine, 2 network, 1 storage, 2 time (v0.9.3)
    assert [p for p in paths if p not in routes] == []
    assert "/foo.Bar/Baz" not in routes


# ---------------------------------------------------------------- maintenance mode


def test_maintenance_unknown_path_is_unimplemented(maintenance):
    s, _node, _cert = maintenance()
    ctx = tls.insecure_client_context()
    reply = raw_grpc(s.port, ctx, "/foo.Bar/Baz")
    assert reply.headers["content-type"] in GRPC_TYPES
    assert reply.last["grpc-status"] == "12"
    with pytest.raises(GRPCError) as err:
        call(s.port, ctx, unary("/foo.Bar/Baz"))
    assert err.value.status is Status.UNIMPLEMENTED
    # negative control: Version is served in maintenance mode
    assert raw_grpc(s.port, ctx, "/machine.MachineService/Version").trailers["grpc-status"] == "0"
