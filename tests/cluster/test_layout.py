"""Where a cluster's bridge lives: in the namespace create runs in (the default, "shared"), or
in a private namespace of the cluster's own (``--isolated``); what that changes there.

Each test runs in the test session's private network namespace (tests/conftest.py); the nodes
run a stand-in PID 1, so no etcd is needed. Every cluster is on its own CIDR or name.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from talos_cluster import state
from talos_cluster.cli import main

from .conftest import Env, clean_up, forwarding, net_snapshot, netns_list

pytestmark = pytest.mark.system

STAND_IN = "sh -c 'echo ready; exec sleep 600'"
_counter = itertools.count(1)


def _answers(ip: str, *prefix: str, port: int = 1) -> str:
    """``refused`` when ``ip`` sends an RST for a closed port, ``connected`` when ``port`` is
    open, else the error's name."""
    code = (
        "import socket\n"
        f"try:\n socket.create_connection(({ip!r}, {port}), timeout=3); print('connected')\n"
        "except ConnectionRefusedError:\n print('refused')\n"
        "except OSError as e:\n print(type(e).__name__)\n"
    )
    done = subprocess.run(
        [*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip() or done.stderr.strip()


def _static() -> tuple[list[str], list[object], object]:
    """Link names, IPv4 addresses and IPv4 routes here: while a cluster runs, its links' IPv6
    state (link-local addresses leaving "tentative") still changes."""
    snap = net_snapshot()
    links = [str(link["ifname"]) for link in snap["link"]]  # type: ignore[attr-defined]
    v4 = [
        (a["ifname"], [i for i in a["addr_info"] if i["family"] == "inet"])
        for a in snap["addr"]  # type: ignore[attr-defined]
    ]
    return links, v4, snap["route"]


def _node(ns: str) -> tuple[str, ...]:
    return ("nsenter", f"--net=/run/netns/{ns}", "--")


@pytest.fixture
def second(env: Env, tmp_path: Path) -> Iterator[Env]:
    """Another cluster name, state dir shared with ``env``; removed afterwards."""
    e = Env(
        name=f"{env.name}y{next(_counter)}", state_dir=env.state_dir, talosconfig=env.talosconfig
    )
    try:
        yield e
    finally:
        clean_up(e, grace=1, kill=False)  # the state dir is env's too


def test_two_clusters_side_by_side(
    env: Env, second: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    before = net_snapshot()
    args = ("--workers", "1", "--node-command", STAND_IN, "--skip-kubeconfig")
    assert main(env.create_args(*args)) == 0
    assert main(second.create_args(*args, "--cidr", "10.6.0.0/24")) == 0
    capsys.readouterr()
    a, b = state.load(env.cluster_dir), state.load(second.cluster_dir)
    assert a is not None and b is not None and a.bridge != b.bridge
    # from here every node of both answers; each node reaches its own cluster's peer
    for ip in ("10.5.0.2", "10.5.0.3", "10.6.0.2", "10.6.0.3"):
        assert _answers(ip) == "refused", ip
    assert _answers("10.5.0.2", *_node(a.nodes[1].netns)) == "refused"
    assert _answers("10.6.0.2", *_node(b.nodes[1].netns)) == "refused"
    # ... but not the other cluster's nodes: the bridges forward nothing between them
    assert _answers("10.6.0.2", *_node(a.nodes[1].netns)) != "refused"
    assert main(["destroy", *env.args(), "--grace", "1"]) == 0
    assert _answers("10.6.0.2") == "refused"  # the other one is untouched
    assert main(["destroy", *second.args(), "--grace", "1"]) == 0
    assert net_snapshot() == before


@pytest.mark.parametrize("cidr", ["10.5.0.0/24", "10.5.0.128/25", "10.0.0.0/8"])
def test_overlap_with_another_cluster_is_refused(
    env: Env, second: Env, capsys: pytest.CaptureFixture[str], tmp_path: Path, cidr: str
) -> None:
    assert main(env.create_args("--workers", "0", "--node-command", STAND_IN)) == 0
    capsys.readouterr()
    netns, links = netns_list(), _static()
    # known from its record (same state directory) ...
    assert main(second.create_args("--workers", "0", "--cidr", cidr)) == 2
    err = capsys.readouterr().err
    assert f"--cidr: {cidr} overlaps cluster {env.name}'s network 10.5.0.0/24" in err
    # ... or from its bridge's address, whatever the state directory
    elsewhere = ["--state-dir", str(tmp_path / "elsewhere")]
    assert main([*second.create_args("--workers", "0", "--cidr", cidr), *elsewhere]) == 2
    err = capsys.readouterr().err
    assert f"--cidr: {cidr} overlaps address 10.5.0.1/24 on {env.name} in this network" in err
    assert netns_list() == netns and _static() == links and not second.cluster_dir.exists()
    assert not (tmp_path / "elsewhere").exists()
    assert main(["destroy", *env.args(), "--grace", "1"]) == 0


def test_overlap_with_a_record_whose_bridge_is_not_up(
    env: Env, second: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cluster whose create was stopped before its bridge was made still owns its CIDR."""
    from talos_cluster.netlab import current_netns

    env.cluster_dir.mkdir(parents=True)
    state.ClusterRecord(
        name=env.name,
        cidr="10.7.0.0/24",
        dir=str(env.cluster_dir),
        netns="",
        layout="shared",
        bridge=env.name,
        bridge_netns=current_netns(),
    ).save()
    assert main(second.create_args("--workers", "0", "--cidr", "10.7.0.0/25")) == 2
    err = capsys.readouterr().err
    assert f"overlaps cluster {env.name}'s network 10.7.0.0/24" in err
    assert main(["destroy", *env.args()]) == 0  # it removes that record (nothing else exists)
    assert not env.cluster_dir.exists()


@contextlib.contextmanager
def _uplink(addr: str, route: str | None) -> Iterator[None]:
    """A veth pair in this namespace with ``addr`` on one end (and ``route`` through it)."""
    end = f"up{os.getpid() % 100000}"
    subprocess.run(
        ["ip", "link", "add", end, "type", "veth", "peer", "name", f"{end}p"], check=True
    )
    try:
        subprocess.run(["ip", "addr", "add", addr, "dev", end], check=True)
        subprocess.run(["ip", "link", "set", end, "up"], check=True)
        if route is not None:
            subprocess.run(["ip", "route", "add", route, "dev", end], check=True)
        yield
    finally:
        subprocess.run(["ip", "link", "delete", end], check=False)


@pytest.mark.parametrize(
    ("addr", "route", "cidr", "clash"),
    [
        ("10.77.0.1/16", None, "10.77.3.0/24", "address 10.77.0.1/16 on up"),
        ("10.78.0.1/30", "10.88.0.0/16", "10.88.9.0/24", "route 10.88.0.0/16 dev up"),
    ],
)
def test_overlap_with_this_namespace_is_refused(
    env: Env,
    capsys: pytest.CaptureFixture[str],
    addr: str,
    route: str | None,
    cidr: str,
    clash: str,
) -> None:
    with _uplink(addr, route):
        before, netns = net_snapshot(), netns_list()
        assert main(env.create_args("--workers", "0", "--cidr", cidr)) == 2
        err = capsys.readouterr().err
        assert f"--cidr: {cidr} overlaps {clash}" in err, err
        assert net_snapshot() == before and netns_list() == netns
        assert not env.cluster_dir.exists() and not env.talosconfig.exists()
        # negative control: a CIDR beside it is fine
        assert (
            main(
                env.create_args(
                    "--workers", "0", "--cidr", "10.99.0.0/24", "--node-command", STAND_IN
                )
            )
            == 0
        )
        assert main(["destroy", *env.args(), "--grace", "1"]) == 0
        assert net_snapshot() == before


def test_nothing_forwarded_where_the_namespace_forwards(env: Env) -> None:
    """With ``net.ipv4.ip_forward=1`` here (set for the test, put back after) and a network
    behind another interface, a node cannot reach it: the bridge's own forwarding is off.
    Negative control: with the bridge's forwarding switched on by hand, it can."""
    outside = f"{env.name}-out"
    saved = forwarding()
    subprocess.run(["ip", "netns", "add", outside], check=True)
    server = None
    end = f"fw{os.getpid() % 100000}"
    try:
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        switches = forwarding()
        subprocess.run(
            ["ip", "link", "add", end, "type", "veth", "peer", "name", "eth0", "netns", outside],
            check=True,
        )
        for argv in (
            ["ip", "addr", "add", "10.98.0.1/24", "dev", end],
            ["ip", "link", "set", end, "up"],
            ["ip", "-n", outside, "addr", "add", "10.98.0.2/24", "dev", "eth0"],
            ["ip", "-n", outside, "link", "set", "eth0", "up"],
            ["ip", "-n", outside, "link", "set", "lo", "up"],
            ["ip", "-n", outside, "route", "add", "10.5.0.0/24", "via", "10.98.0.1"],
        ):
            subprocess.run(argv, check=True)
        server = subprocess.Popen(
            [
                *_node(outside),
                sys.executable,
                "-c",
                "import socket,time\ns=socket.create_server(('10.98.0.2', 8080))\n"
                "print('up', flush=True)\n"
                "while True:\n c,_=s.accept(); c.close()\n",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        assert _answers("10.98.0.2", port=8080) == "connected"  # reachable from here
        assert main(env.create_args("--workers", "0", "--node-command", STAND_IN)) == 0
        record = state.load(env.cluster_dir)
        assert record is not None
        node = _node(record.nodes[0].netns)
        assert forwarding() == switches  # create changed no switch of the namespace
        assert _answers("10.98.0.2", *node, port=8080) != "connected"
        Path(f"/proc/sys/net/ipv4/conf/{record.bridge}/forwarding").write_text("1\n")
        assert _answers("10.98.0.2", *node, port=8080) == "connected"  # the negative control
        assert main(["destroy", *env.args(), "--grace", "1"]) == 0
    finally:
        if server is not None:
            server.kill()
            server.wait()
            if server.stdout is not None:
                server.stdout.close()
        # deleted here, not with the namespace: that is torn down asynchronously
        subprocess.run(["ip", "link", "delete", end], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "delete", outside], capture_output=True, check=False)
        for path, value in saved.items():
            Path(path).write_text(value + "\n")
    assert forwarding() == saved


def test_isolated_layout(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    before = net_snapshot()
    args = env.create_args("--workers", "1", "--isolated", "--node-command", STAND_IN)
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"ip netns exec {env.name}" in err
    record = state.load(env.cluster_dir)
    assert record is not None
    assert (record.layout, record.bridge, record.netns) == ("isolated", "talos0", env.name)
    assert net_snapshot() == before  # nothing at all here
    assert _answers("10.5.0.2") != "refused"  # not reachable from here ...
    assert _answers("10.5.0.2", *_node(env.name)) == "refused"  # ... but from its namespace
    assert main(["show", *env.args()]) == 0
    assert (
        f"layout isolated (in the private network namespace {env.name}" in capsys.readouterr().err
    )
    # a second isolated cluster may use the same CIDR: its network is its own
    other = Env(name=f"{env.name}i", state_dir=env.state_dir, talosconfig=env.talosconfig)
    try:
        assert (
            main(other.create_args("--workers", "0", "--isolated", "--node-command", STAND_IN)) == 0
        )
    finally:
        assert main(["destroy", *other.args(), "--grace", "1"]) == 0
    assert main(["destroy", *env.args(), "--grace", "1"]) == 0
    assert not {env.name, *(n.name for n in record.nodes)} & netns_list()
    assert net_snapshot() == before


def test_destroy_from_another_namespace_is_refused(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bridge is where create ran: destroy elsewhere removes nothing and says where."""
    before = net_snapshot()
    assert main(env.create_args("--workers", "0", "--node-command", STAND_IN)) == 0
    capsys.readouterr()
    elsewhere = subprocess.run(
        [
            "unshare",
            "--net",
            str(Path(sys.executable).parent / "talos-cluster"),
            "destroy",
            *env.args(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert elsewhere.returncode == 1, elsewhere.stderr
    assert "not this one" in elsewhere.stderr and "nothing removed" in elsewhere.stderr
    assert env.name in _static()[0]  # the bridge is still there
    assert state.load(env.cluster_dir) is not None
    assert main(["destroy", *env.args(), "--grace", "1"]) == 0
    assert net_snapshot() == before
