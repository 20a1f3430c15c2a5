"""The seams talos-init uses: stop after a maintenance apply, certificate renewal, the v1.x
single-target ``node`` key, and generated code kept in step with the protos."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import empty_pb2

from libtalos import pki, spki
from libtalos.api import tls
from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
from libtalos.api.channel import ClosingChannel
from libtalos.errors import PKIError
from talos_apply.cli import main
from talos_init.api import node_server_cert
from talos_init.api.certs import needs_renewal

ROOT = Path(__file__).resolve().parents[2]


def _version(port: int, ctx, pins=(), metadata=()):
    async def go():
        ch = ClosingChannel("127.0.0.1", port, ssl=ctx, pins=list(pins))
        try:
            return await MachineServiceStub(ch).Version(
                empty_pb2.Empty(), metadata=list(metadata), timeout=20
            )
        finally:
            ch.close()

    return asyncio.run(go())


def test_maintenance_stops_after_accepting_and_client_gets_reply(maintenance, cluster, tmp_path):
    s, node, _cert = maintenance()
    original = node.apply_configuration

    async def apply_then_stop(text, mode, timeout):
        result = await original(text, mode, timeout)
        asyncio.get_running_loop().create_task(s.server.stop(grace=5))
        return result

    async def install():
        node.apply_configuration = apply_then_stop

    s.call(install())
    f = tmp_path / "c.yaml"
    f.write_text(cluster.configs["init"])
    assert main(["apply-config", "--insecure", "-n", s.endpoint, "-f", str(f)]) == 0
    assert asyncio.run(_wait_closed(s.port)), "the maintenance port is still open after the apply"
    s.running = False


async def _wait_closed(port: int) -> bool:
    for _ in range(500):
        try:
            _r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return True
        w.close()
        await w.wait_closed()
        await asyncio.sleep(0.01)
    return False


def test_renewed_certificate_used_for_new_connections(configured, cluster, admin):
    s, _node = configured()
    ctx = tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)
    old_pin = spki.digest(pki.load_certificate(_server_crt(s)).public_bytes(_der()))
    assert _version(s.port, ctx, [old_pin]).messages
    new = node_server_cert(cluster.bundle.talos_ca, ["127.0.0.1"], "node")
    s.server.renew(new)
    with pytest.raises(PKIError):
        _version(s.port, ctx, [old_pin])
    new_pin = spki.digest(pki.load_certificate(new.crt).public_bytes(_der()))
    assert _version(s.port, ctx, [new_pin]).messages


def _der():
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.DER


def _server_crt(s) -> bytes:
    async def peer():
        _r, w = await asyncio.open_connection(
            "127.0.0.1", s.port, ssl=tls.insecure_client_context()
        )
        der = w.get_extra_info("ssl_object").getpeercert(binary_form=True)
        w.transport.abort()
        return der

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = asyncio.run(peer())
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def test_needs_renewal_at_half_life(cluster):
    import datetime as dt

    cert = node_server_cert(cluster.bundle.talos_ca, ["127.0.0.1"], "n")
    info = pki.load_certificate(cert.crt)
    start = info.not_valid_before_utc
    assert not needs_renewal(cert.crt, start + dt.timedelta(hours=11))
    assert needs_renewal(cert.crt, start + dt.timedelta(hours=12))


def test_single_node_key_forwards_one_to_one(configured, cluster, admin):
    from grpclib import GRPCError
    from grpclib.const import Status

    a, _ = configured(hostname="a", tag="v-a")
    b, _ = configured(hostname="b", tag="v-b")
    ctx = tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)
    reply = _version(a.port, ctx, metadata=[("node", b.endpoint)])
    # one-to-one: b's reply, passed through as it is (no hostname tagging)
    assert [m.version.tag for m in reply.messages] == ["v-b"]
    assert reply.messages[0].metadata.hostname == ""
    assert _version(a.port, ctx).messages[0].version.tag == "v-a"  # control: local call
    with pytest.raises(GRPCError) as err:
        _version(a.port, ctx, metadata=[("node", b.endpoint), ("nodes", a.endpoint)])
    assert err.value.status is Status.INVALID_ARGUMENT


def test_generated_code_is_fresh():
    pytest.importorskip("grpc_tools", reason="protoc comes from grpcio-tools")
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-proto"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
