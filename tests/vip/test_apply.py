"""The applier and announcer on a real kernel: a node and an observer on a bridge, in netns."""

from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest
import viplab as vlab

pytestmark = pytest.mark.system


def _addr_json(ns: str) -> list[dict[str, object]]:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "addr", "show", "dev", "eth0"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return list(json.loads(out)[0]["addr_info"])


def _apply_and_announce(ip: str, *, add: bool = True) -> dict[str, object]:
    """Inside the node's namespace: add (or not), announce once, report what happened."""
    from talos_vip.apply import Applier
    from talos_vip.arp import Announcer

    a = Applier("eth0", ipaddress.ip_address(ip))
    try:
        before = a.present()
        added = a.add() if add else False
        again = a.add() if add else False
        sent = Announcer("eth0", a.mac, a.ip).announce()
        return {
            "before": before,
            "added": added,
            "again": again,
            "sent": sent,
            "present": a.present(),
        }
    finally:
        a.close()


def _remove(ip: str) -> tuple[bool, bool, bool]:
    from talos_vip.apply import Applier

    a = Applier("eth0", ipaddress.ip_address(ip))
    try:
        return a.remove(), a.remove(), a.present()
    finally:
        a.close()


@pytest.mark.parametrize(
    ("vip", "prefix", "family"), [("10.66.0.100", 32, "inet"), ("fd66::100", 128, "inet6")]
)
def test_add_announce_remove(bare_lab: vlab.Lab, vip: str, prefix: int, family: str) -> None:
    node = bare_lab.nodes[0]
    observer = vlab.Observer(bare_lab.obs)
    try:
        result = vlab.in_netns(node.netns, lambda: _apply_and_announce(vip))
        assert result == {
            "before": False,
            "added": True,
            "again": False,
            "sent": 2 if family == "inet" else 1,
            "present": True,
        }
        info = [a for a in _addr_json(node.netns) if a["local"] == vip]
        assert len(info) == 1
        entry = info[0]
        assert entry["family"] == family and entry["prefixlen"] == prefix
        assert entry["scope"] == "global"
        assert entry["valid_life_time"] == 4294967295  # permanent: no lifetime
        frames = 2 if family == "inet" else 1
        vlab.wait_for(
            lambda: len(observer.seen(ip=vip)) >= frames,
            10,
            f"the observer to capture the announcement of {vip}",
        )
        seen = observer.seen(ip=vip)
        assert len(seen) == frames
        assert {c.mac for c in seen} == {node.mac}
        if family == "inet":
            kinds = sorted(c.kind for c in observer.seen(ip=vip))
            assert kinds == ["arp-reply", "arp-request"]
            assert all(c.detail["sha"] == node.mac for c in seen)
        else:
            (na,) = seen
            assert na.kind == "na" and na.detail["checksum_ok"]
            assert na.detail["lladdr"] == node.mac and na.detail["hop_limit"] == 255
        removed = vlab.in_netns(node.netns, lambda: _remove(vip))
        assert removed == (True, False, False)
        assert not [a for a in _addr_json(node.netns) if a["local"] == vip]
    finally:
        observer.close()


def test_observer_sees_nothing_without_announcement(bare_lab: vlab.Lab) -> None:
    """Negative control: the capture is not vacuous - another node's address is not announced."""
    observer = vlab.Observer(bare_lab.obs)
    try:
        node = bare_lab.nodes[1]
        vlab.in_netns(node.netns, lambda: _apply_and_announce("10.66.0.101"))
        vlab.wait_for(lambda: observer.seen(ip="10.66.0.101"), 10, "the control announcement")
        assert observer.seen(ip="10.66.0.100") == []
    finally:
        observer.close()


def test_missing_interface_is_a_clear_error(bare_lab: vlab.Lab) -> None:
    from talos_vip.apply import Applier, InterfaceError

    def attempt() -> str:
        try:
            Applier("nosuch0", ipaddress.ip_address("10.66.0.100"))
        except InterfaceError as exc:
            return str(exc)
        return "no error"

    assert vlab.in_netns(bare_lab.nodes[0].netns, attempt) == (
        "--interface: no interface named 'nosuch0'"
    )
