"""The pure parts of talos-cluster: the plan (names, addresses, limits) and the record file."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from pathlib import Path

import pytest
from talos_cluster import state
from talos_cluster.plan import find_clash, make_plan, parse_duration

from libtalos.errors import TalosError, UsageError


def _plan(**kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "name": "talos-default",
        "cidr": "10.5.0.0/24",
        "masters": 3,
        "workers": 2,
        "cpus": 2.0,
        "memory_mib": 2048,
        "cpus_workers": 1.0,
        "memory_workers_mib": 1024,
    }
    args.update(kw)
    return make_plan(**args)  # type: ignore[arg-type]


def test_names_addresses_and_limits() -> None:
    p = _plan()
    short = "talo" + hashlib.sha256(b"talos-default").hexdigest()[:6]
    assert [(n.name, n.ip, n.veth, n.role) for n in p.nodes] == [
        ("talos-default-master-1", "10.5.0.2", f"{short}_m1", "controlplane"),
        ("talos-default-master-2", "10.5.0.3", f"{short}_m2", "controlplane"),
        ("talos-default-master-3", "10.5.0.4", f"{short}_m3", "controlplane"),
        ("talos-default-worker-1", "10.5.0.5", f"{short}_w1", "worker"),
        ("talos-default-worker-2", "10.5.0.6", f"{short}_w2", "worker"),
    ]
    # the default layout: the bridge, named after the cluster, in the namespace create runs in
    assert (p.layout, p.bridge, p.netns) == ("shared", "talos-default", "")
    assert p.gateway == "10.5.0.1" and p.prefixlen == 24
    assert p.endpoint == "https://10.5.0.2:6443"
    assert [(n.cpus, n.memory_mib) for n in p.nodes[2:4]] == [(2.0, 2048), (1.0, 1024)]
    assert {n.machine_type for n in p.nodes} == {"controlplane", "worker"}


def test_isolated_layout_names() -> None:
    p = _plan(layout="isolated")
    assert (p.bridge, p.netns) == ("talos0", "talos-default")
    assert [n.veth for n in p.nodes] == ["m1", "m2", "m3", "w1", "w2"]


@pytest.mark.parametrize(
    "name", ["a", "demo", "fifteen-chars-x", "sixteen-chars-xy", "a" * 40, "a" * 39 + "b"]
)
def test_link_names_fit_and_differ(name: str) -> None:
    """Every link name fits in IFNAMSIZ; long names are shortened, and stay distinct."""
    p = _plan(name=name, cidr="10.0.0.0/8", masters=999, workers=0)
    names = [p.bridge, *(n.veth for n in p.nodes)]
    assert max(len(n) for n in names) <= 15
    assert len(set(names)) == len(names)
    assert p.bridge == (name if len(name) <= 15 else p.bridge)
    assert all("_" in n.veth for n in p.nodes)  # never a cluster name (no '_' allowed there)
    other = _plan(name=name[:-1] + ("z" if name[-1] != "z" else "y"), masters=1, workers=0)
    assert other.bridge != p.bridge and other.nodes[0].veth != p.nodes[0].veth


def test_find_clash() -> None:
    net = ipaddress.IPv4Network("10.5.0.0/24")
    assert find_clash(net, [("eth0", "192.168.1.10/24"), ("lo", "127.0.0.1/8")], []) is None
    assert find_clash(net, [("eth0", "10.5.0.77/16")], []) == "address 10.5.0.77/16 on eth0"
    assert find_clash(net, [], [("0.0.0.0/0", "dev eth0")]) is None  # a default route
    assert find_clash(net, [], [("10.0.0.0/8", "dev wg0")]) == "route 10.0.0.0/8 dev wg0"
    assert find_clash(net, [], [("10.5.0.128/25", "table 7")]) == "route 10.5.0.128/25 table 7"
    assert find_clash(net, [], [("10.6.0.0/24", "dev x")]) is None


def test_cidr_not_strict_and_full() -> None:
    assert _plan(cidr="192.168.7.77/29", masters=1, workers=4).nodes[-1].ip == "192.168.7.78"
    with pytest.raises(UsageError, match="room for 5 nodes, 6 were asked for"):
        _plan(cidr="192.168.7.0/29", masters=1, workers=5)
    with pytest.raises(UsageError, match="only IPv4"):
        _plan(cidr="fd00::/64")


@pytest.mark.parametrize(
    ("text", "seconds"), [("20m", 1200.0), ("1h30m", 5400.0), ("90", 90.0), ("0.5", 0.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--wait-timeout") == seconds


def test_record_round_trip_and_refusals(tmp_path: Path) -> None:
    rec = state.ClusterRecord(name="c", cidr="10.5.0.0/24", dir=str(tmp_path), netns="c")
    rec.nodes.append(
        state.NodeRecord(
            name="c-master-1",
            role="controlplane",
            ip="10.5.0.2",
            netns="c-master-1",
            dir="d",
            console="l",
        )
    )
    rec.namespaces += ["c", "c-master-1"]
    rec.save()
    assert oct((tmp_path / "cluster.yaml").stat().st_mode & 0o777) == "0o600"
    assert state.load(tmp_path) == rec
    assert state.load(tmp_path / "none") is None
    (tmp_path / "cluster.yaml").write_text("kind: TalosLocalCluster\nname: c\nbogus: 1\n")
    with pytest.raises(TalosError, match="not a talos-cluster record"):
        state.load(tmp_path)
    (tmp_path / "cluster.yaml").write_text(": [\n")
    with pytest.raises(TalosError, match="not a talos-cluster record"):
        state.load(tmp_path)


def test_process_identity() -> None:
    me = state.process_start_time(os.getpid())
    assert me is not None and me > 0
    assert state.is_ours(os.getpid(), me)
    assert not state.is_ours(os.getpid(), me + 1)  # a reused PID has another start time
    assert not state.is_ours(0, me)


def test_an_interrupt_python_swallows_still_stops_create(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C landing in a fork callback or a finalizer is dropped by Python ("Exception
    ignored"); create's flag raises it again at its next check."""
    import signal
    import sys

    from talos_cluster.interrupts import Interrupts

    dropped: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))
    interrupts = Interrupts()
    interrupts.check()  # negative control: nothing seen, nothing raised

    class Finalizer:
        def __del__(self) -> None:
            interrupts.handler(signal.SIGINT, None)

    Finalizer()  # the handler runs in __del__: its KeyboardInterrupt goes nowhere
    assert dropped == [KeyboardInterrupt]
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()


def test_interrupt_handler_only_replaces_the_default_one() -> None:
    import signal

    from talos_cluster.interrupts import Interrupts

    saved = signal.getsignal(signal.SIGINT)
    try:
        interrupts = Interrupts()
        interrupts.seen = True  # left from an earlier create in this process
        signal.signal(signal.SIGINT, signal.default_int_handler)
        assert interrupts.install() is signal.default_int_handler
        assert signal.getsignal(signal.SIGINT) == interrupts.handler and not interrupts.seen
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # started with Ctrl-C ignored: kept so
        assert interrupts.install() is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, saved)


def _saved(tmp_path: Path) -> Path:
    rec = state.ClusterRecord(name="c", cidr="10.5.0.0/24", dir=str(tmp_path), netns="c")
    rec.nodes.append(
        state.NodeRecord(
            name="c-master-1",
            role="controlplane",
            ip="10.5.0.2",
            netns="c-master-1",
            dir="d",
            console="l",
            pid=7,
            start_time=9,
        )
    )
    rec.save()
    return rec.path()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("pid: 7", "pid: seven", "line 19: nodes[0].pid: must be an integer"),
        ("pid: 7", "pid: true", "nodes[0].pid: must be an integer"),
        ("namespaces: []", "namespaces: c", "line 11: namespaces: must be a list of strings"),
        ("namespaces: []", "namespaces: [1]", "namespaces: must be a list of strings"),
        ("complete: false", "complete: 1", "complete: must be true or false"),
        ("name: c\n", "name: [c]\n", "line 3: name: must be a string"),
        ("nodes:\n", "bogus: 1\nnodes:\n", "line 12: bogus: unknown key"),
        ("    role: controlplane\n", "", "nodes[0]: missing role"),
        ("nodes:\n-", "nodes:\n- 5\n-", "nodes[0]: must be a mapping"),
        ("kind: TalosLocalCluster", "kind: Other", "line 2: kind: must be TalosLocalCluster"),
        ("apiVersion: v1alpha1", "apiVersion: v2", "line 1: apiVersion: must be v1alpha1"),
    ],
)
def test_record_types_are_checked(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = _saved(tmp_path)
    assert state.load(tmp_path) is not None  # negative control: the record as written loads
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(TalosError) as caught:
        state.load(tmp_path)
    assert caught.value.message.startswith(f"{path}: not a talos-cluster record: line ")
    assert caught.value.message.endswith(message)


def test_record_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    import time

    lines = ["kind: TalosLocalCluster", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (tmp_path / "cluster.yaml").write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(TalosError, match="not a talos-cluster record: line .*aliases expand"):
        state.load(tmp_path)
    assert time.monotonic() - started < 5


def test_record_too_large_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _saved(tmp_path)
    monkeypatch.setattr(state, "MAX_RECORD_BYTES", path.stat().st_size - 1)
    with pytest.raises(TalosError, match="larger than"):
        state.load(tmp_path)
    monkeypatch.setattr(state, "MAX_RECORD_BYTES", path.stat().st_size)
    assert state.load(tmp_path) is not None
