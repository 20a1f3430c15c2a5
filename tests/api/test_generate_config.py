"""GenerateConfiguration: v0.9.3's request fields, a config and talosconfig made on the node,
every bad field named (INVALID_ARGUMENT), and no secret in any error."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from typing import Any

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from libtalos import config as cfgmod
from libtalos import pki, talosconfig
from libtalos.api import machine_pb2 as m
from libtalos.api import tls
from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
from libtalos.api.channel import ClosingChannel
from talos_init.api import genconfig


def request(**over: Any) -> Any:
    """A good request; ``over`` replaces parts (dotted names as keyword paths with ``__``)."""
    req = m.GenerateConfigurationRequest(
        config_version="v1alpha1",
        cluster_config=m.ClusterConfig(
            name="gen-test",
            control_plane=m.ControlPlaneConfig(endpoint="https://10.5.0.2:6443"),
            cluster_network=m.ClusterNetworkConfig(dns_domain="cluster.local"),
        ),
        machine_config=m.MachineConfig(
            type=m.MachineConfig.TYPE_INIT,
            install_config=m.InstallConfig(install_disk="/dev/vdb"),
            network_config=m.NetworkConfig(
                hostname="gen-1",
                interfaces=[
                    m.NetworkDeviceConfig(
                        interface="eth0",
                        cidr="10.5.0.2/24",
                        routes=[m.RouteConfig(network="0.0.0.0/0", gateway="10.5.0.1")],
                    ),
                    m.NetworkDeviceConfig(interface="eth1", dhcp=True),
                ],
            ),
        ),
    )
    for path, value in over.items():
        *parents, leaf = path.split("__")
        target = req
        for p in parents:
            target = getattr(target, p)
        if isinstance(value, list):
            del getattr(target, leaf)[:]
            getattr(target, leaf).extend(value)
        else:
            setattr(target, leaf, value)
    return req


def call(port: int, req: Any, ssl: Any = None) -> Any:
    async def go() -> Any:
        ch = ClosingChannel("127.0.0.1", port, ssl=ssl or tls.insecure_client_context())
        try:
            return await MachineServiceStub(ch).GenerateConfiguration(req, timeout=60)
        finally:
            ch.close()

    return asyncio.run(go())


BAD = [
    ({"config_version": "v1alpha2"}, "config_version"),
    ({"cluster_config__control_plane__endpoint": "10.5.0.2:6443"}, "control_plane.endpoint"),
    ({"cluster_config__control_plane__endpoint": "http://10.5.0.2:6443"}, "https scheme"),
    ({"cluster_config__name": ""}, "cluster_config.name"),
    ({"cluster_config__cluster_network__dns_domain": "bad domain"}, "dns_domain"),
    ({"machine_config__type": 7}, "machine_config.type: unknown machine type 7"),
    ({"machine_config__type": 0}, "machine_config.type"),
    ({"machine_config__install_config__install_disk": "sda"}, "install_disk"),
    ({"machine_config__kubernetes_version": "latest"}, "kubernetes_version"),
    ({"machine_config__network_config__hostname": "a b"}, "network_config.hostname"),
    (
        {"machine_config__network_config__interfaces": [m.NetworkDeviceConfig(interface="eth0", cidr="10.5.0.2")]},
        "interfaces[0].cidr: '10.5.0.2' is not in CIDR notation",
    ),
    (
        {"machine_config__network_config__interfaces": [m.NetworkDeviceConfig(interface="eth0", cidr="10.5.0.300/24")]},
        "interfaces[0].cidr",
    ),
    (
        {
            "machine_config__network_config__interfaces": [
                m.NetworkDeviceConfig(interface="eth0", cidr="10.5.0.2/24", dhcp=True)
            ]
        },
        "interfaces[0].cidr: a static address and dhcp exclude each other",
    ),
    (
        {
            "machine_config__network_config__interfaces": [
                m.NetworkDeviceConfig(
                    interface="eth0",
                    cidr="10.5.0.2/24",
                    routes=[m.RouteConfig(network="0.0.0.0/0", gateway="10.5.0")],
                )
            ]
        },
        "interfaces[0].routes[0].gateway",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("over", "named"), BAD, ids=[b[1] for b in BAD])
def test_bad_field_is_named(over: dict[str, Any], named: str) -> None:
    with pytest.raises(GRPCError) as err:
        genconfig.check(request(**over))
    assert err.value.status is Status.INVALID_ARGUMENT
    assert named in (err.value.message or "")


def test_good_request_passes_check() -> None:
    """Negative control of the table above: the unchanged request is fine."""
    checked = genconfig.check(request())
    assert checked.kind == "init" and checked.install_disk == "/dev/vdb"


def test_missing_messages_are_named() -> None:
    for name in ("machine_config", "cluster_config"):
        req = request()
        req.ClearField(name)
        with pytest.raises(GRPCError) as err:
            genconfig.check(req)
        assert err.value.message == f"{name}: is required"


def test_maintenance_generates_config_and_talosconfig(maintenance) -> None:
    s, _node, _cert = maintenance()
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    req = request()
    req.override_time.FromDatetime(at)
    reply = call(s.port, req)
    msg = reply.messages[0]
    assert len(msg.data) == 1
    cfg = cfgmod.load(msg.data[0].decode(), "generated").config
    assert cfgmod.validate(cfg, "container").errors == []
    assert cfg.machine.type == "init"
    assert cfg.machine.install.disk == "/dev/vdb"
    assert cfg.machine.network.hostname == "gen-1"
    eth0, eth1 = cfg.machine.network.interfaces
    assert eth0.cidr == "10.5.0.2/24" and eth0.routes[0].gateway == "10.5.0.1"
    assert eth1.dhcp and not eth1.cidr
    assert cfg.cluster.cluster_name == "gen-test"
    assert cfg.cluster.control_plane.endpoint == "https://10.5.0.2:6443"
    # the talosconfig: the endpoint's host, the config's Talos CA, an admin cert of that CA
    tc = talosconfig.loads(msg.talosconfig.decode())
    ctx = tc.contexts[tc.context]
    assert tc.context == "gen-test" and ctx.endpoints == ["10.5.0.2"]
    assert ctx.ca == cfg.machine.ca.crt
    ca_pem = base64.b64decode(cfg.machine.ca.crt)
    pki.verify_chain(ca_pem, base64.b64decode(ctx.crt), pki.FixedClock(at + dt.timedelta(1)))
    # override_time fixes the CA's validity start
    assert pki.inspect(ca_pem).not_before.date() == at.date()


def test_maintenance_makes_new_secrets_each_time(maintenance) -> None:
    s, _node, _cert = maintenance()
    a = cfgmod.load(call(s.port, request()).messages[0].data[0].decode(), "a").config
    b = cfgmod.load(call(s.port, request()).messages[0].data[0].decode(), "b").config
    assert a.machine.ca.crt != b.machine.ca.crt and a.machine.token != b.machine.token


def test_join_is_refused_in_maintenance(maintenance) -> None:
    s, _node, _cert = maintenance()
    with pytest.raises(GRPCError) as err:
        call(s.port, request(machine_config__type=m.MachineConfig.TYPE_JOIN))
    assert err.value.status is Status.FAILED_PRECONDITION
    assert "machine_config.type" in (err.value.message or "")


def _mtls(server: Any, cluster: Any) -> Any:
    admin = pki.admin_client_cert(cluster.bundle.talos_ca)
    return tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)


def test_configured_node_reuses_its_cluster_secrets(configured, cluster) -> None:
    s, _node = configured("init")
    reply = call(s.port, request(machine_config__type=m.MachineConfig.TYPE_JOIN), _mtls(s, cluster))
    cfg = cfgmod.load(reply.messages[0].data[0].decode(), "join").config
    running = cfgmod.load(cluster.configs["init"], "running").config
    assert cfg.machine.type == "worker"
    assert cfg.machine.token == running.machine.token
    assert cfg.cluster.ca.crt == running.cluster.ca.crt
    assert cfg.cluster.token == running.cluster.token


def test_worker_refuses(configured, cluster) -> None:
    s, _node = configured("join")
    with pytest.raises(GRPCError) as err:
        call(s.port, request(), _mtls(s, cluster))
    assert err.value.status is Status.FAILED_PRECONDITION
    assert "worker" in (err.value.message or "")


def _secrets(text: str) -> list[str]:
    cfg = cfgmod.load(text, "running").config
    values = [cfg.machine.token, cfg.machine.ca.key, cfg.cluster.token, cfg.cluster.ca.key]
    values += [cfg.cluster.aescbc_encryption_secret, cfg.cluster.etcd.ca.key]
    return [v for v in values if v]


def test_errors_carry_no_secret(configured, cluster) -> None:
    """A configured node holds the cluster's secrets: its refusals quote none of them."""
    s, _node = configured("init")
    secrets = _secrets(cluster.configs["init"])
    assert len(secrets) >= 5
    ctx = _mtls(s, cluster)
    for over, _named in BAD:
        with pytest.raises(GRPCError) as err:
            call(s.port, request(**over), ctx)
        message = err.value.message or ""
        assert message
        for secret in secrets:
            assert secret not in message and secret[:16] not in message
