"""The system views: LoadAvg, SystemStat, CPUInfo, NetworkDeviceStats, DiskStats, Interfaces,
Routes, Disks, Containers and Stats, against a real API server whose node is this test
process (so its /proc and network namespace, the test session's private one, are the node's).

Links and routes are checked against ``ip -j`` (iproute2, an independent reader of the same
kernel tables) after adding a veth link with an address and a gateway route inside the
session's namespace; every reply is also decoded by the independent betterproto client, and
maintenance mode serves Interfaces and Disks but nothing else of these.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import empty_pb2
from grpclib import GRPCError
from grpclib.const import Status

from libtalos.api import tls
from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
from libtalos.api._gen.network.network_grpc import NetworkServiceStub
from libtalos.api._gen.storage.storage_grpc import StorageServiceStub
from libtalos.api._gen.time.time_grpc import TimeServiceStub
from libtalos.api.channel import ClosingChannel
from talosctl.cli import main

HERE = Path(__file__).resolve().parent / "independent"
PEER = "sv1"
NO_RUNTIME = "no container runtime on this node"
LINK, ADDRESS, GATEWAY, ROUTE, METRIC = (
    "sv0",
    "198.51.100.7/24",
    "198.51.100.1",
    "203.0.113.0/24",
    77,
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def dummy_link() -> Iterator[str]:
    """A veth link with an address and a gateway route, in the session's own namespace."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        # tests/conftest.py puts the session in a private network namespace only then
        pytest.skip("needs root and iproute2 (the session's private network namespace)")
    _ip("link", "add", LINK, "type", "veth", "peer", "name", PEER)
    try:
        _ip("addr", "add", ADDRESS, "dev", LINK)
        _ip("link", "set", PEER, "up")
        _ip("link", "set", LINK, "up", "mtu", "1400")
        _ip("route", "add", ROUTE, "via", GATEWAY, "dev", LINK, "metric", str(METRIC))
        yield LINK
    finally:
        _ip("link", "del", LINK)


def _index(name: str) -> int:
    """The link's index as iproute2 reports it."""
    listing = subprocess.run(["ip", "-j", "link", "show", name], capture_output=True, check=True)
    (link,) = json.loads(listing.stdout)
    return int(link["ifindex"])


def _talosctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()[1:]]


def test_interfaces_and_routes_commands(
    configured: Any, talosconfig_for: Any, dummy_link: str, capsys: pytest.CaptureFixture[str]
) -> None:
    s, _node = configured()
    tc = str(talosconfig_for([s.endpoint], [s.endpoint]))
    code, out, err = _talosctl(capsys, "--talosconfig", tc, "interfaces")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["NODE", "INDEX", "NAME", "MAC", "MTU", "ADDRESS"]
    listed = json.loads(
        subprocess.run(["ip", "-j", "addr"], capture_output=True, check=True).stdout
    )
    want = []
    for link in listed:
        mac = link.get("address", "")
        mac = "" if set(mac) <= {"0", ":"} else mac
        for a in link.get("addr_info", []):
            cells = [s.endpoint, str(link["ifindex"]), link["ifname"], mac, str(link["mtu"])]
            want.append([c for c in [*cells, f"{a['local']}/{a['prefixlen']}"] if c])
    assert sorted(_rows(out)) == sorted(want)
    assert next(r for r in _rows(out) if ADDRESS in r)[:3] == [s.endpoint, str(_index(LINK)), LINK]
    code, out, err = _talosctl(capsys, "--talosconfig", tc, "routes")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["NODE", "INTERFACE", "DESTINATION", "GATEWAY", "METRIC"]
    assert [s.endpoint, LINK, ROUTE, f"{GATEWAY}/32", str(METRIC)] in _rows(out)
    assert [s.endpoint, LINK, "198.51.100.0/24", "0.0.0.0/32", "0"] in _rows(out)
    # negative control: a route that is not there is not listed
    assert not [r for r in _rows(out) if r[2] == "192.0.2.0/24"]
    code, same, err = _talosctl(capsys, "--talosconfig", tc, "route")  # the alias
    assert code == 0 and same == out, err


def test_containers_and_stats_without_a_runtime(
    configured: Any, talosconfig_for: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.path.exists("/run/containerd/containerd.sock"):
        pytest.skip("containerd runs on this machine")
    s, _node = configured()
    tc = str(talosconfig_for([s.endpoint], [s.endpoint]))
    for argv in (["containers"], ["c", "-k"], ["stats"], ["stats", "--kubernetes"]):
        code, out, err = _talosctl(capsys, "--talosconfig", tc, *argv)
        assert code == 1, (argv, out, err)
        first = err.splitlines()[0]
        assert first.startswith(f"error: {s.endpoint}: ") and NO_RUNTIME in first, err
        assert out.splitlines()[0].split()[:3] == ["NODE", "NAMESPACE", "ID"]
        assert len(out.splitlines()) == 1


def _disks_by_hand() -> list[tuple[str, int]]:
    out = []
    for entry in sorted(os.listdir("/sys/block")):
        if entry.startswith(("sg", "sr", "loop", "md", "dm-", "ram")):
            continue
        size = int(Path("/sys/block", entry, "size").read_text()) * 512
        if size:
            out.append((f"/dev/{entry}", size))
    return out


def _channel(s: Any, ctx: Any) -> ClosingChannel:
    return ClosingChannel("127.0.0.1", s.port, ssl=ctx, pins=[])


def test_stats_replies_match_proc(configured: Any, cluster: Any, admin: Any) -> None:
    s, _node = configured()
    ctx = tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)
    md = {"nodes": s.endpoint}

    async def go() -> dict[str, Any]:
        ch = _channel(s, ctx)
        try:
            stub = MachineServiceStub(ch)
            return {
                name: (await getattr(stub, name)(empty_pb2.Empty(), metadata=md)).messages[0]
                for name in ("LoadAvg", "SystemStat", "CPUInfo", "NetworkDeviceStats", "DiskStats")
            }
        finally:
            ch.close()

    got = asyncio.run(go())
    assert all(m.metadata.hostname == s.endpoint for m in got.values())
    load = got["LoadAvg"]
    assert load.load1 >= 0 and load.load15 >= 0
    stat = got["SystemStat"]
    btime = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime")
    )
    assert stat.boot_time == btime
    assert len(stat.cpu) == os.cpu_count() and stat.cpu_total.user > 0
    assert stat.context_switches > 0 and stat.process_created > 0 and stat.soft_irq.timer > 0
    cpus = got["CPUInfo"].cpu_info
    assert [c.processor for c in cpus] == list(range(os.cpu_count() or 0))
    netdev = got["NetworkDeviceStats"]
    names = [d.name for d in netdev.devices]
    assert "lo" in names and netdev.total.name == ", ".join(sorted(names))
    assert netdev.total.rx_bytes == sum(d.rx_bytes for d in netdev.devices)
    listed = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True).stdout or "[]")
    if listed:  # the reader's network namespace: this session's links, not the host's
        assert set(names) == {link["ifname"] for link in listed}
    disks = got["DiskStats"]
    assert disks.total.read_sectors == sum(d.read_sectors for d in disks.devices)
    listed = [line.split()[2] for line in Path("/proc/diskstats").read_text().splitlines()]
    assert [d.name for d in disks.devices] == listed


def test_disks(configured: Any, cluster: Any, admin: Any) -> None:
    s, _node = configured()
    ctx = tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)

    async def go() -> Any:
        ch = _channel(s, ctx)
        try:
            return await StorageServiceStub(ch).Disks(empty_pb2.Empty())
        finally:
            ch.close()

    (msg,) = asyncio.run(go()).messages
    assert [(d.device_name, d.size) for d in msg.disks] == _disks_by_hand()
    assert not [d for d in msg.disks if d.device_name.startswith("/dev/loop")]


def test_maintenance_serves_interfaces_and_disks_only(maintenance: Any) -> None:
    server, _node, _cert = maintenance()

    async def call(stub: Any, method: str, request: Any) -> Any:
        ch = ClosingChannel("127.0.0.1", server.port, ssl=tls.insecure_client_context(), pins=[])
        try:
            return await getattr(stub(ch), method)(request)
        finally:
            ch.close()

    links = asyncio.run(call(NetworkServiceStub, "Interfaces", empty_pb2.Empty()))
    assert "lo" in [i.name for i in links.messages[0].interfaces]
    disks = asyncio.run(call(StorageServiceStub, "Disks", empty_pb2.Empty()))
    assert [d.device_name for d in disks.messages[0].disks] == [d for d, _ in _disks_by_hand()]
    from libtalos.api._gen.time import time_pb2

    async def events() -> None:
        from libtalos.api import machine_pb2

        ch = ClosingChannel("127.0.0.1", server.port, ssl=tls.insecure_client_context(), pins=[])
        try:
            async with MachineServiceStub(ch).Events.open() as st:
                await st.send_message(machine_pb2.EventsRequest(), end=True)
                await st.recv_message()
        finally:
            ch.close()

    refused = [
        ("Routes", call(NetworkServiceStub, "Routes", empty_pb2.Empty())),
        ("TimeCheck", call(TimeServiceStub, "TimeCheck", time_pb2.TimeRequest(server="x"))),
        ("LoadAvg", call(MachineServiceStub, "LoadAvg", empty_pb2.Empty())),
        ("Events", events()),
    ]
    for method, attempt in refused:
        with pytest.raises(GRPCError) as err:
            asyncio.run(attempt)
        assert err.value.status is Status.UNIMPLEMENTED, method
        assert "maintenance" in (err.value.message or ""), method


def test_replies_decode_with_betterproto(
    configured: Any, cluster: Any, admin: Any, dummy_link: str
) -> None:
    pytest.importorskip("betterproto", reason="betterproto==2.0.0b7 (requirements-dev.txt)")
    sys.path.insert(0, str(HERE))
    try:
        m = importlib.import_module("_gen.machine")
        net = importlib.import_module("_gen.network")
        sto = importlib.import_module("_gen.storage")
        pbuf = importlib.import_module("betterproto.lib.google.protobuf")
    finally:
        sys.path.remove(str(HERE))
    s, _node = configured()
    ctx = tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)
    md = {"nodes": s.endpoint}

    async def go() -> dict[str, Any]:
        ch = _channel(s, ctx)
        try:
            stub, nstub, sstub = (
                m.MachineServiceStub(ch),
                net.NetworkServiceStub(ch),
                sto.StorageServiceStub(ch),
            )
            return {
                "load": await stub.load_avg(pbuf.Empty(), metadata=md),
                "stat": await stub.system_stat(pbuf.Empty(), metadata=md),
                "cpu": await stub.cpu_info(pbuf.Empty(), metadata=md),
                "netdev": await stub.network_device_stats(pbuf.Empty(), metadata=md),
                "disk": await stub.disk_stats(pbuf.Empty(), metadata=md),
                "routes": await nstub.routes(pbuf.Empty(), metadata=md),
                "interfaces": await nstub.interfaces(pbuf.Empty(), metadata=md),
                "disks": await sstub.disks(pbuf.Empty(), metadata=md),
            }
        finally:
            ch.close()

    out = asyncio.run(go())
    for name, reply in out.items():
        (msg,) = reply.messages
        assert msg.metadata.hostname == s.endpoint, name
    assert out["stat"].messages[0].cpu_total.user > 0
    assert out["cpu"].messages[0].cpu_info[0].flags or os.uname().machine != "x86_64"
    assert "lo" in [d.name for d in out["netdev"].messages[0].devices]
    route = [r for r in out["routes"].messages[0].routes if r.destination == ROUTE]
    assert len(route) == 1 and route[0].gateway == f"{GATEWAY}/32" and route[0].metric == METRIC
    assert route[0].family == net.AddressFamily.AF_INET and route[0].interface == LINK
    links = {i.name: i for i in out["interfaces"].messages[0].interfaces}
    assert links[LINK].mtu == 1400 and ADDRESS in links[LINK].ipaddress
    assert links["lo"].hardwareaddr == "" and "127.0.0.1/8" in links["lo"].ipaddress
    assert [d.device_name for d in out["disks"].messages[0].disks] == [
        d for d, _ in _disks_by_hand()
    ]


def test_container_requests_are_validated(configured: Any, cluster: Any, admin: Any) -> None:
    from libtalos.api import machine_pb2

    s, _node = configured()
    ctx = tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)

    async def call(method: str, request: Any) -> Any:
        ch = _channel(s, ctx)
        try:
            return await getattr(MachineServiceStub(ch), method)(request)
        finally:
            ch.close()

    for namespace in ("../../etc/passwd", "n" * 10_000, "a\0b", ""):
        for method, kind in (
            ("Containers", machine_pb2.ContainersRequest),
            ("Stats", machine_pb2.StatsRequest),
        ):
            with pytest.raises(GRPCError) as err:
                asyncio.run(call(method, kind(namespace=namespace)))
            assert err.value.status is Status.INVALID_ARGUMENT, (method, namespace[:20])
            assert "namespace" in (err.value.message or "")
            assert len(err.value.message or "") < 200
    with pytest.raises(GRPCError) as err:
        asyncio.run(call("Containers", machine_pb2.ContainersRequest(namespace="system", driver=7)))
    assert err.value.status is Status.INVALID_ARGUMENT and "driver" in (err.value.message or "")
    with pytest.raises(GRPCError) as err:  # CRI serves k8s.io only
        asyncio.run(call("Stats", machine_pb2.StatsRequest(namespace="system", driver=1)))
    assert err.value.status is Status.INVALID_ARGUMENT and "k8s.io" in (err.value.message or "")
    with pytest.raises(GRPCError) as err:  # negative control: a good request gets further
        asyncio.run(call("Stats", machine_pb2.StatsRequest(namespace="k8s.io", driver=1)))
    assert err.value.status is Status.FAILED_PRECONDITION
