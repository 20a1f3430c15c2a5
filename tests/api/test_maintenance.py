"""Maintenance mode end to end: talos-apply against a server with the ephemeral certificate."""

from __future__ import annotations

import asyncio

import pytest

from libtalos import pki
from talos_apply.cli import main
from talos_init.api import maintenance_banner


def test_banner_lines_match_talos_console(maintenance):
    _s, _node, cert = maintenance()
    lines = maintenance_banner(["10.5.0.2", "fd00::2"], cert.fingerprint)
    assert lines[:4] == [
        "starting maintenance service",
        "this machine is reachable at:",
        "\t10.5.0.2",
        "\tfd00::2",
    ]
    assert f"\t{cert.fingerprint}" in lines
    assert "\ttalosctl apply-config --insecure --nodes 10.5.0.2 --file <config.yaml>" in lines
    assert "\ttalosctl apply-config --insecure --nodes 10.5.0.2 --interactive" in lines
    assert (
        f"\ttalosctl apply-config --insecure --nodes 10.5.0.2 --cert-fingerprint "
        f"'{cert.fingerprint}' --file <config.yaml>"
    ) in lines


def test_certificate_is_ephemeral_ed25519_with_loopback_sans(maintenance):
    _s, _node, cert = maintenance()
    info = pki.inspect(cert.server.crt)
    data = info.to_yaml_data()
    assert "Ed25519" in str(data)
    assert "127.0.0.1" in str(data) and "::1" in str(data)
    assert cert.fingerprint == pki.spki_fingerprint(cert.server.crt)
    assert len(cert.fingerprint) == 44


def test_insecure_apply_hands_config_to_node(maintenance, cluster, tmp_path, capsys):
    server, node, cert = maintenance()
    cfg = tmp_path / "init.yaml"
    cfg.write_text(cluster.configs["init"])
    code = main(
        [
            "apply-config",
            "--insecure",
            "--nodes",
            server.endpoint,
            "--file",
            str(cfg),
            "--cert-fingerprint",
            cert.fingerprint,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert node.accepted.get_nowait() == cluster.configs["init"]
    assert node.actions and node.actions[0][0] == "apply"


def test_wrong_fingerprint_refused_before_config_is_sent(maintenance, cluster, tmp_path, capsys):
    server, node, _cert = maintenance()
    other = pki.spki_fingerprint(pki.new_ca(algorithm="ed25519", organizations=["x"]).crt)
    cfg = tmp_path / "init.yaml"
    cfg.write_text(cluster.configs["init"])
    code = main(
        [
            "apply-config",
            "--insecure",
            "--nodes",
            server.endpoint,
            "--file",
            str(cfg),
            "--cert-fingerprint",
            other,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "does not match --cert-fingerprint" in err and "nothing was sent" in err
    assert node.actions == [] and node.accepted.empty()


def test_invalid_config_rejected_with_every_problem(maintenance, cluster, tmp_path, capsys):
    import yaml

    server, node, _cert = maintenance()
    data = yaml.safe_load(cluster.configs["init"])
    data["machine"]["type"] = "nonsense"
    data["cluster"]["controlPlane"]["endpoint"] = "ftp://example"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(data))
    code = main(["apply-config", "--insecure", "--nodes", server.endpoint, "--file", str(cfg)])
    err = capsys.readouterr().err
    assert code == 1
    assert "invalid argument" in err
    # two separate problems, both reported in one refusal
    assert "machine.type" in err and "cluster.controlPlane.endpoint" in err
    assert node.actions == []


def test_malformed_yaml_rejected(maintenance, tmp_path, capsys):
    server, node, _cert = maintenance()
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("machine: [unclosed\n")
    assert main(["apply-config", "--insecure", "-n", server.endpoint, "-f", str(cfg)]) == 1
    assert "invalid argument" in capsys.readouterr().err
    assert node.actions == []


def test_huge_payload_rejected_nothing_persisted(maintenance, cluster, tmp_path, capsys):
    server, node, _cert = maintenance()
    cfg = tmp_path / "huge.yaml"
    cfg.write_text(cluster.configs["init"] + "#" + "x" * (5 << 20) + "\n")
    assert main(["apply-config", "--insecure", "-n", server.endpoint, "-f", str(cfg)]) == 1
    assert "limit" in capsys.readouterr().err
    assert node.actions == []


def test_on_reboot_not_supported_in_maintenance(maintenance, cluster, tmp_path, capsys):
    server, node, _cert = maintenance()
    cfg = tmp_path / "init.yaml"
    cfg.write_text(cluster.configs["init"])
    code = main(
        ["apply-config", "--insecure", "-n", server.endpoint, "-f", str(cfg), "--on-reboot"]
    )
    assert code == 1
    assert "not supported in maintenance mode" in capsys.readouterr().err
    assert node.actions == []


def test_version_served_in_maintenance(maintenance, capsys):
    server, _node, _cert = maintenance()
    assert main(["version", "--insecure", "-n", server.endpoint]) == 0
    out = capsys.readouterr().out
    assert "Tag:         v0.9.0-py" in out and "(maintenance)" in out


@pytest.mark.parametrize(
    "method",
    ["ServiceList", "Bootstrap", "Kubeconfig", "Reboot", "Shutdown", "Reset", "EtcdMemberList"],
)
def test_other_methods_unimplemented(maintenance, method):
    from google.protobuf import empty_pb2
    from grpclib import GRPCError
    from grpclib.const import Status

    from libtalos.api import machine_pb2, tls
    from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
    from libtalos.api.channel import ClosingChannel

    server, node, _cert = maintenance()
    requests = {
        "ServiceList": empty_pb2.Empty(),
        "Bootstrap": machine_pb2.BootstrapRequest(),
        "Kubeconfig": empty_pb2.Empty(),
        "Reboot": machine_pb2.RebootRequest(),
        "Shutdown": machine_pb2.ShutdownRequest(),
        "Reset": machine_pb2.ResetRequest(),
        "EtcdMemberList": machine_pb2.EtcdMemberListRequest(),
    }

    async def call():
        ch = ClosingChannel("127.0.0.1", server.port, ssl=tls.insecure_client_context(), pins=[])
        try:
            await getattr(MachineServiceStub(ch), method)(requests[method])
        finally:
            ch.close()

    with pytest.raises(GRPCError) as err:
        asyncio.run(call())
    assert err.value.status is Status.UNIMPLEMENTED
    assert node.actions == []


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_insecure_apply_over_ipv6_loopback(cluster, tmp_path, capsys):
    from memory_node import MemoryNode

    from talos_init.api import ApiServer, MaintenanceCert

    from .conftest import ServerThread

    cert = MaintenanceCert.create([], "talos-maint")  # SANs still carry ::1
    holder = {}

    def make():
        holder["node"] = MemoryNode()
        return ApiServer.maintenance(holder["node"], cert)

    s = ServerThread(make, host="::1")
    try:
        f = tmp_path / "c.yaml"
        f.write_text(cluster.configs["init"])
        code = main(
            [
                "apply-config",
                "--insecure",
                "-n",
                s.endpoint,
                "-f",
                str(f),
                "--cert-fingerprint",
                cert.fingerprint,
            ]
        )
        assert code == 0, capsys.readouterr().err
        assert holder["node"].accepted.get_nowait() == cluster.configs["init"]
    finally:
        s.close()
