"""``talosctl upgrade`` and ``rollback`` against configured servers on loopback (MemoryNode).

What the client sends and how it rolls out; the node's side (slots, GRUB, reboots) is in
tests/init/test_bootloader.py and, on real VMs, tests/image/test_upgrade.py:

- a local FILE is streamed to the node (``upgrade.UpgradeService/Upload``): the node reads the
  same bytes, with the flags given; a URL goes as ``MachineService/Upgrade``'s image;
- an image that names a container registry is refused before anything is sent (exit 2);
- several nodes go one at a time: a node that refuses stops the rollout, the others are not
  touched (named on stderr, exit 1); ``--force`` goes on;
- ``Upload`` through the proxy (``nodes`` metadata) is refused rather than run on the wrong node;
- ``version`` shows a node's slot, a rollback and the other slot; ``rollback`` reaches the node.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from libtalos.api import machine_pb2, tls
from libtalos.api._gen.upgrade import upgrade_grpc, upgrade_pb2
from libtalos.api.channel import ClosingChannel
from talos_apply.cli import main
from talos_init.api.node import BootInfo, NodeCallError
from talos_init.api.node import Status as NodeStatus


def _cli(*args: str) -> int:
    return main(list(args))


def _actions(node, kind):
    return [a for k, a in node.actions if k == kind]


def test_a_local_file_is_streamed_and_the_node_reads_the_same_bytes(
    configured, talosconfig_for, tmp_path, capsys
):
    s, node = configured()
    bundle = tmp_path / "installer-amd64.tar"
    data = bytes(range(256)) * 12_000  # 3 MB: several Upload messages
    bundle.write_bytes(data)
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    code = _cli("--talosconfig", str(tc), "upgrade", "--image", str(bundle), "--preserve")
    err = capsys.readouterr().err
    assert code == 0, err
    ((source, label, preserve, stage, force, digest),) = _actions(node, "upgrade")
    assert digest == hashlib.sha256(data).hexdigest()
    assert source == str(node.spool_dir / ".upgrade-bundle.tar")  # spooled on the node
    assert label == f"upload installer-amd64.tar ({len(data)} bytes)"
    assert (preserve, stage, force) == (True, False, False)
    assert f"sent {len(data)} of {len(data)} bytes" in err
    assert "Upgrade request received" in err
    assert list(node.spool_dir.iterdir()) == []  # the spooled copy is gone


def test_a_url_is_passed_to_the_node_and_a_registry_image_is_refused(
    configured, talosconfig_for, capsys
):
    s, node = configured()
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    url = "http://10.0.0.1/installer-amd64.tar"
    assert _cli("--talosconfig", str(tc), "upgrade", "-i", url, "--stage", "--force") == 0
    ((source, label, preserve, stage, force, _),) = _actions(node, "upgrade")
    assert (source, label, preserve, stage, force) == (url, f"image {url}", False, True, True)
    capsys.readouterr()
    code = _cli("--talosconfig", str(tc), "upgrade", "-i", "ghcr.io/siderolabs/installer:v0.9.3")
    assert code == 2
    assert "nodes pull no container images" in capsys.readouterr().err
    assert len(_actions(node, "upgrade")) == 1  # nothing more reached the node
    assert _cli("--talosconfig", str(tc), "upgrade") == 2  # no --image


def test_a_node_that_refuses_stops_the_rollout_unless_force(configured, talosconfig_for, capsys):
    first_s, first = configured(hostname="n1")
    second_s, second = configured(hostname="n2")
    first.upgrade_refusal = NodeCallError(
        NodeStatus.FAILED_PRECONDITION, "upgrade: slot A is on trial"
    )
    tc = talosconfig_for([first_s.endpoint], [first_s.endpoint, second_s.endpoint])
    url = "http://10.0.0.1/installer-amd64.tar"
    assert _cli("--talosconfig", str(tc), "upgrade", "-i", url) == 1
    err = capsys.readouterr().err
    assert "slot A is on trial" in err
    assert f"not upgraded (the rollout stopped): {second_s.endpoint}" in err
    assert _actions(second, "upgrade") == []  # the second node was not touched
    # the control: with --force the rollout goes on to the second node (staged: no reboot wait)
    assert _cli("--talosconfig", str(tc), "upgrade", "-i", url, "--force", "--stage") == 1
    assert len(_actions(second, "upgrade")) == 1


def test_upload_through_the_proxy_is_refused(configured, cluster, admin):
    s, node = configured()

    async def call():
        ctx = tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)
        ch = ClosingChannel("127.0.0.1", s.port, ssl=ctx)
        try:
            stub = upgrade_grpc.UpgradeServiceStub(ch)
            async with stub.Upload.open(timeout=30, metadata=[("nodes", "10.9.9.9")]) as st:
                req = machine_pb2.UpgradeRequest(image="x.tar")
                await st.send_message(upgrade_pb2.UploadRequest(request=req, data=b"x"), end=True)
                return await st.recv_message()
        finally:
            ch.close()

    with pytest.raises(GRPCError) as err:
        asyncio.run(call())
    assert err.value.status is Status.INVALID_ARGUMENT
    assert "streams to the node dialled" in (err.value.message or "")
    assert _actions(node, "upgrade") == []


def test_version_shows_the_slots_and_rollback_reaches_the_node(configured, talosconfig_for, capsys):
    s, node = configured()
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    assert _cli("--talosconfig", str(tc), "version") == 0
    assert "Slot:" not in capsys.readouterr().out  # the control: no slots, no lines
    node.boot = BootInfo("A", "B", "v0.9.4", rolled_back_from="B")
    assert _cli("--talosconfig", str(tc), "version") == 0
    out = capsys.readouterr().out
    assert "\tSlot:        A\n" in out
    assert "\tRolled back: slot B failed to boot; slot A runs again\n" in out
    assert "\tOther slot:  B (v0.9.4)\n" in out
    assert _cli("--talosconfig", str(tc), "rollback") == 0
    assert _actions(node, "rollback") == [()]
    assert "rollback requested" in capsys.readouterr().err
