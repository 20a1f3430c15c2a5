"""The system views, events and time end to end: the installed talos-apply, run inside the
node's own network namespace, against a real talos-init PID 1 (container mode).

One node: ``events`` replays the boot (sequence, phase, task and service events as the node
lived them) and follows a service stop made afterwards; ``interfaces`` and ``routes`` list the
node's namespace (compared with iproute2 run in it) and not the host's; ``containers`` and
``stats`` report that the node has no container runtime; ``time --check`` queries a small SNTP
server started inside the node's namespace, whose clock runs an hour ahead.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from init.harness import NodeRun, write_service

from .conftest import Material, api
from .test_node_api_methods import BOOT_DONE, MTLS, _follow

pytestmark = pytest.mark.system

SNTP_SERVER = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(512)
    if len(data) < 48 or data[0] & 7 != 3:
        continue
    now = time.time() + 3600 + 2208988800
    w, f = int(now), int((now % 1) * (1 << 32))
    s.sendto(struct.pack("!BBbb", 0x24, 2, 4, -20) + bytes(8) + b"TEST"
             + struct.pack("!II", w, f) + data[40:48] + struct.pack("!IIII", w, f, w, f), peer)
"""


def _seconds(stamp: str) -> float:
    """Epoch seconds of an RFC 3339 UTC stamp as protobuf's JSON writes it (to the second)."""
    return datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()


def _in_node(node: NodeRun, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net=/proc/{node.pid1}/ns/net", "--", *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def test_node_sysviews(start_node: Any, material: Material, tmp_path: Any) -> None:
    services = tmp_path / "services"
    services.mkdir()
    write_service(services, "sleeper", command="/bin/sleep", args=["1000"], restart="always")
    node, _state = start_node("--services-dir", str(services), config=material.controlplane)
    node.expect(MTLS)
    node.seen(BOOT_DONE)
    tc = ["--talosconfig", str(material.talosconfig)]

    # -- events: the boot's history, then a change made while following ---------------------
    follow = _follow(node, tc, "events", "--tail", "-1")
    try:
        follow.wait_for("talos/runtime/machine.SequenceEvent   boot   STOP")
        assert follow.has("talos/runtime/machine.SequenceEvent   boot   START")
        assert follow.has("talos/runtime/machine.PhaseEvent")
        assert follow.has("talos/runtime/machine.TaskEvent")
        follow.wait_for("sleeper   RUNNING: Started process with PID")
        header = follow.lines[0].split()
        assert header == ["NODE", "ID", "EVENT", "SOURCE", "MESSAGE"], follow.lines[:2]
        assert all(line.startswith("127.0.0.1 ") for line in follow.lines[1:])
        assert not follow.has("sleeper   STOPPING")  # negative control: nothing stopped yet
        res = api(node, *tc, "service", "sleeper", "stop")
        assert res.returncode == 0, res.stderr
        follow.wait_for("sleeper   STOPPING: Sending SIGTERM to")
        follow.wait_for("sleeper   FINISHED: Service stopped")
        ids = [line.split()[1] for line in follow.lines[1:]]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
    finally:
        follow.stop()
    # no history without --tail: only what happens from now on (here: nothing, so a bad
    # --since is the quick way to see the call reach the node and be refused)
    res = api(node, *tc, "events", "--since", "not-an-id")
    assert res.returncode == 1 and "tail_id" in res.stderr, res.stderr

    # -- interfaces and routes: the node's namespace, as iproute2 sees it there --------------
    res = api(node, *tc, "interfaces")
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()[1:]]
    links = json.loads(_in_node(node, "ip", "-j", "addr").stdout)
    want = [
        [str(link["ifindex"]), link["ifname"], f"{a['local']}/{a['prefixlen']}"]
        for link in links
        for a in link.get("addr_info", [])
    ]
    assert sorted([r[1], r[2], r[-1]] for r in rows) == sorted(want), res.stdout
    assert {r[2] for r in rows} == {link["ifname"] for link in links if link.get("addr_info")}
    res = api(node, *tc, "routes")
    assert res.returncode == 0, res.stderr
    routes = [line.split() for line in res.stdout.splitlines()[1:]]
    assert ["127.0.0.1", "lo", "127.0.0.0/8", "0.0.0.0/32", "0"] in routes, res.stdout

    # -- containers and stats: no container runtime on these nodes -------------------------
    for command in ("containers", "stats"):
        res = api(node, *tc, command)
        assert res.returncode == 1, res
        assert "127.0.0.1" in res.stderr and "no container runtime on this node" in res.stderr

    # -- time --check: an SNTP server inside the node's namespace, an hour ahead -------------
    server = subprocess.Popen(
        ["nsenter", f"--net=/proc/{node.pid1}/ns/net", "--", sys.executable, "-c", SNTP_SERVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        res = api(node, *tc, "time", "--check", f"127.0.0.1:{port}", "-o", "json")
        assert res.returncode == 0, res.stderr
        (reply,) = json.loads(res.stdout)
        assert reply["server"] == f"127.0.0.1:{port}"
        local, remote = (_seconds(reply[k]) for k in ("localtime", "remotetime"))
        assert abs(remote - local - 3600) < 60, reply
        table = api(node, *tc, "time", "-c", f"127.0.0.1:{port}")
        assert table.returncode == 0, table.stderr
        header = table.stdout.splitlines()[0].split()
        assert header == ["NODE", "NTP-SERVER", "NODE-TIME", "NTP-SERVER-TIME"]
        assert table.stdout.splitlines()[1].count("+0000 UTC") == 2
    finally:
        server.kill()
        server.communicate(timeout=30)
    # negative control: nobody answers on another port
    res = api(node, *tc, "time", "--check", "127.0.0.1:9")
    assert res.returncode == 1 and "127.0.0.1:9" in res.stderr, res.stderr
