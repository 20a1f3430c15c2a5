"""The wire shape, checked without our generated code: raw reply bytes from the server are
decoded by protoc itself (C++ protobuf, from grpcio-tools), once schema-less (``--decode_raw``:
field numbers only, compared with docs/talos-facts.md#machine-api) and once against the .proto files
(``--decode=machine.XResponse``), so neither our Python messages nor the Python protobuf runtime
is the judge of what goes on the wire.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from grpclib.const import Cardinality

from libtalos import api as api_pkg
from libtalos.api.channel import ClosingChannel

pytest.importorskip("grpc_tools", reason="protoc comes from grpcio-tools (requirements-dev.txt)")

PROTO = Path(api_pkg.__file__).parent / "proto"


class Raw(bytes):
    """Bytes that pass through grpclib's protobuf codec untouched."""

    def SerializeToString(self) -> bytes:  # noqa: N802 - the codec's interface
        return bytes(self)

    @classmethod
    def FromString(cls, data: bytes) -> Raw:  # noqa: N802 - the codec's interface
        return cls(data)


def protoc(args: list[str], data: bytes) -> str:
    import google.rpc
    import grpc_tools

    wkt = Path(grpc_tools.__file__).parent / "_proto"
    rpc_root = Path(next(iter(google.rpc.__path__))).parent.parent
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"-I{wkt}",
            f"-I{rpc_root}",
            *args,
        ],
        input=data,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode()


def decode(type_name: str, data: bytes) -> str:
    return protoc([f"--decode={type_name}", "machine/machine.proto"], data)


def raw_call(server, ssl_ctx, method: str, request: bytes, metadata, stream: bool = False):
    async def go():
        ch = ClosingChannel("127.0.0.1", server.port, ssl=ssl_ctx, pins=[])
        try:
            card = Cardinality.UNARY_STREAM if stream else Cardinality.UNARY_UNARY
            async with ch.request(
                f"/machine.MachineService/{method}", card, Raw, Raw, metadata=metadata, timeout=30
            ) as s:
                await s.send_message(Raw(request), end=True)
                return [bytes(m) async for m in s]
        finally:
            ch.close()

    return asyncio.run(go())


@pytest.fixture
def node_env(configured, cluster, admin):
    from libtalos.api import tls

    s, node = configured("init", hostname="n1")
    ctx = tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)
    return s, node, ctx, [("nodes", s.endpoint)]


@pytest.mark.parametrize(
    ("method", "request_type", "request_text", "response_type", "expect"),
    [
        ("Version", None, "", "machine.VersionResponse", ['tag: "v0.9.0-py"']),
        ("ServiceList", None, "", "machine.ServiceListResponse", ['id: "etcd"', "healthy: true"]),
        (
            "ServiceRestart",
            "machine.ServiceRestartRequest",
            'id: "kubelet"',
            "machine.ServiceRestartResponse",
            ['resp: "Service', "kubelet", "restarted"],
        ),
        ("Reboot", "machine.RebootRequest", "", "machine.RebootResponse", []),
        ("Shutdown", "machine.ShutdownRequest", "force: true", "machine.ShutdownResponse", []),
        (
            "Reset",
            "machine.ResetRequest",
            'graceful: true system_partitions_to_wipe { label: "STATE" wipe: true }',
            "machine.ResetResponse",
            [],
        ),
        ("Bootstrap", "machine.BootstrapRequest", "", "machine.BootstrapResponse", []),
    ],
)
def test_unary_replies_decode_with_protoc(
    node_env, method, request_type, request_text, response_type, expect
):
    s, _node, ctx, md = node_env
    request = b"" if request_type is None else _protoc_encode(request_type, request_text)
    (reply,) = raw_call(s, ctx, method, request, md)
    raw = protoc(["--decode_raw"], reply)
    # field 1 (messages) { field 1 (metadata) { field 1 (hostname): the target } ... }
    assert raw.startswith('1 {\n  1 {\n    1: "' + s.endpoint + '"\n  }'), raw
    text = decode(response_type, reply)
    assert f'hostname: "{s.endpoint}"' in text
    for fragment in expect:
        assert fragment in text, text


def _protoc_encode(type_name: str, text: str) -> bytes:
    import google.rpc
    import grpc_tools

    wkt = Path(grpc_tools.__file__).parent / "_proto"
    rpc_root = Path(next(iter(google.rpc.__path__))).parent.parent
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"-I{wkt}",
            f"-I{rpc_root}",
            f"--encode={type_name}",
            "machine/machine.proto",
        ],
        input=text.encode(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout


def test_v09_apply_request_encoded_by_protoc_is_understood(node_env):
    """A request written by protoc with v0.9's on_reboot (field 2) stages the config."""
    s, node, ctx, md = node_env
    data = node.config_text().encode()
    request = _protoc_encode(
        "machine.ApplyConfigurationRequest", f"data: {_text_bytes(data)} on_reboot: true"
    )
    (reply,) = raw_call(s, ctx, "ApplyConfiguration", request, md)
    text = decode("machine.ApplyConfigurationResponse", reply)
    assert "mode: STAGED" in text
    assert node.actions[0][1].name == "STAGED"


def _text_bytes(data: bytes) -> str:
    return '"' + "".join(f"\\{b:03o}" for b in data) + '"'


def test_per_node_error_decodes_as_metadata_error(node_env, configured):
    s, _node, ctx, _md = node_env
    dead, _ = configured(hostname="dead")
    dead.stop()
    (reply,) = raw_call(s, ctx, "Version", b"", [("nodes", s.endpoint), ("nodes", dead.endpoint)])
    text = decode("machine.VersionResponse", reply)
    assert f'hostname: "{dead.endpoint}"' in text and "error: " in text and "status {" in text


def test_kubeconfig_stream_decodes_as_common_data(node_env):
    s, _node, ctx, md = node_env
    frames = raw_call(s, ctx, "Kubeconfig", b"", md, stream=True)
    assert len(frames) == 1
    raw = protoc(["--decode_raw"], frames[0])
    assert raw.startswith('1 {\n  1: "' + s.endpoint + '"\n}\n2: "')  # metadata=1, bytes=2
    text = protoc(["--decode=common.Data", "common/common.proto"], frames[0])
    assert "bytes: " in text


def test_logs_stream_frames_decode(node_env):
    s, _node, ctx, md = node_env
    req = _protoc_encode("machine.LogsRequest", 'id: "etcd" tail_lines: -1')
    frames = raw_call(s, ctx, "Logs", req, md, stream=True)
    texts = [protoc(["--decode=common.Data", "common/common.proto"], f) for f in frames]
    assert any('bytes: "etcd: started\\n"' in t for t in texts), texts
