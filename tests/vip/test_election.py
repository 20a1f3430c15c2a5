"""Three talos-vip daemons, a real etcd, an observer: all in namespaces made by the test.

The sampler reads every node's addresses over and over for the whole test; a round in which two
nodes (still on the LAN) hold the VIP is an overlap, and every test asserts there was none.
Waits are bounded polls; no test asserts a duration (the figures live in bench/vip_bench.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import viplab as vlab
import yaml

pytestmark = [pytest.mark.system, pytest.mark.etcd]

TALOS_VIP = str(Path(sys.executable).with_name("talos-vip"))
WAIT = 30.0  # bound on every wait: a hang guard on a loaded machine, not a speed claim


@dataclass
class Cluster:
    lab: vlab.Lab
    vip: str
    observer: vlab.Observer
    sampler: vlab.Sampler

    def start(self, node: vlab.Node, *extra: str) -> subprocess.Popen[bytes]:
        return self.lab.spawn(
            node,
            [
                TALOS_VIP,
                "run",
                "--interface",
                "eth0",
                "--vip",
                self.vip,
                "--etcd-endpoints",
                self.lab.etcd_endpoint,
                "--node-name",
                node.name,
                *extra,
            ],
            log_name=f"{node.name}-{time.monotonic_ns()}",
        )

    def holder(self, *, other_than: tuple[str, ...] = ()) -> vlab.Node:
        def one() -> str | None:
            h = self.sampler.holders()
            return h[0] if len(h) == 1 and h[0] not in other_than else None

        return self.lab.node_by_name(
            vlab.wait_for(one, WAIT, f"exactly one holder other than {other_than}")
        )

    def announced_by(self, node: vlab.Node, *, after: float, frames: int = 1) -> list[vlab.Capture]:
        def got() -> list[vlab.Capture]:
            seen = [c for c in self.observer.seen(ip=self.vip, after=after) if c.mac == node.mac]
            return seen if len(seen) >= frames else []

        return vlab.wait_for(got, WAIT, f"{frames} announcement(s) of {self.vip} by {node.name}")

    def assert_no_overlap(self) -> None:
        assert self.sampler.rounds > 0
        assert self.sampler.overlaps == [], self.logs()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')}"
            for p in sorted(self.lab.tmp.glob("*.log"))
        )


def _cluster(vip: str, nodes: int) -> Iterator[Cluster]:
    with vlab.Lab(nodes) as lab:
        observer = vlab.Observer(lab.obs)
        sampler = vlab.Sampler({n.name: n.netns for n in lab.nodes}, vip)
        c = Cluster(lab, vip, observer, sampler)
        try:
            for node in lab.nodes:
                c.start(node)
            yield c
        finally:
            sampler.close()
            observer.close()


@pytest.fixture
def cluster(netns_capable: None, etcd_capable: None) -> Iterator[Cluster]:
    yield from _cluster("10.66.0.100", 3)


def _status(c: Cluster, node: vlab.Node) -> dict[str, object]:
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            node.netns,
            TALOS_VIP,
            "status",
            "--vip",
            c.vip,
            "--etcd-endpoints",
            c.lab.etcd_endpoint,
            "--node-name",
            node.name,
            "--interface",
            "eth0",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=WAIT,
    ).stdout
    data = yaml.safe_load(out)
    assert isinstance(data, dict)
    return data


def _state(c: Cluster, node: vlab.Node) -> object:
    """The node's election state, or None while etcd cannot be asked from there yet."""
    try:
        return _status(c, node)["state"]
    except subprocess.CalledProcessError:
        return None


def test_one_holder_announces_from_its_mac(cluster: Cluster) -> None:
    start = time.monotonic() - 60
    holder = cluster.holder()
    # The first-second burst: 4 announcements of 2 ARP frames each (request and reply forms).
    seen = cluster.announced_by(holder, after=start, frames=8)
    assert {c.kind for c in seen} == {"arp-request", "arp-reply"}
    assert {c.mac for c in cluster.observer.seen(ip=cluster.vip)} == {holder.mac}
    assert all(c.detail["sha"] == holder.mac for c in seen)
    assert cluster.sampler.holders() == (holder.name,)
    status = _status(cluster, holder)
    assert status["holder"] == holder.name and status["state"] == "leader"
    assert status["addressPresent"] is True
    assert status["candidates"] is not None and len(status["candidates"]) == 3  # type: ignore[arg-type]
    lease = status["lease"]
    assert isinstance(lease, dict) and lease["grantedTTL"] == 2
    other = next(n for n in cluster.lab.nodes if n is not holder)
    assert _status(cluster, other)["state"] == "candidate"
    cluster.assert_no_overlap()


def test_sigkill_and_cut_moves_the_vip(cluster: Cluster) -> None:
    old = cluster.holder()
    assert old.proc is not None
    cut = time.monotonic()
    old.proc.kill()
    cluster.lab.cut_lan(old)
    cluster.sampler.mark_dead(old.name)  # powered off, as far as the LAN can tell
    new = cluster.holder(other_than=(old.name,))
    cluster.announced_by(new, after=cut, frames=2)
    cluster.assert_no_overlap()


def test_sigterm_moves_the_vip_at_once(cluster: Cluster) -> None:
    old = cluster.holder()
    assert old.proc is not None
    lease = _status(cluster, old)["lease"]
    assert isinstance(lease, dict)
    stop = time.monotonic()
    old.proc.send_signal(signal.SIGTERM)
    assert old.proc.wait(timeout=WAIT) == 0
    # Resigned, not expired: the lease is gone at etcd as soon as the process has exited,
    # although its TTL had not run out.
    remaining, _ = cluster.lab.etcd_call(lambda c: c.time_to_live(int(str(lease["id"]), 16)))
    assert remaining == -1
    new = cluster.holder(other_than=(old.name,))
    cluster.announced_by(new, after=stop)
    log = old.log.read_text() if old.log else ""
    assert log.index("released 10.66.0.100: stopping") < log.index("resigned")
    cluster.assert_no_overlap()


def test_partition_from_etcd_drops_before_anyone_takes(cluster: Cluster) -> None:
    old = cluster.holder()
    cluster.lab.cut_etcd(old)  # still on the LAN: a second holder would be a real conflict
    new = cluster.holder(other_than=(old.name,))
    cluster.announced_by(new, after=time.monotonic() - 60)
    history = cluster.sampler.history
    i_new = next(i for i, (_, h) in enumerate(history) if new.name in h)
    assert history[i_new - 1][1] == (), history  # the old holder let go first
    assert old.log is not None and "fenced by our clock" in old.log.read_text()
    cluster.lab.cut_etcd(old, up=True)  # heal: the old holder campaigns again, as a candidate
    vlab.wait_for(
        lambda: _state(cluster, old) == "candidate", WAIT, f"{old.name} to campaign again"
    )
    assert cluster.sampler.holders() == (new.name,)
    cluster.assert_no_overlap()


def test_etcd_down_drops_the_vip_and_it_returns(cluster: Cluster) -> None:
    old = cluster.holder()
    cluster.lab.stop_etcd()
    vlab.wait_for(lambda: cluster.sampler.holders() == (), WAIT, "the VIP to be dropped")
    assert all(n.proc is not None and n.proc.poll() is None for n in cluster.lab.nodes)
    cluster.lab.start_etcd()
    again = cluster.holder()
    cluster.announced_by(again, after=time.monotonic() - 1)
    del old
    cluster.assert_no_overlap()


def test_stale_address_from_a_crashed_run_is_removed(
    netns_capable: None, etcd_capable: None
) -> None:
    vip = "10.66.0.100"
    with vlab.Lab(2) as lab:
        first, second = lab.nodes
        # `first` crashed while holding: its kernel still has the VIP, and no daemon runs.
        subprocess.run(
            ["ip", "-n", first.netns, "addr", "add", f"{vip}/32", "dev", "eth0"], check=True
        )
        sampler = vlab.Sampler({n.name: n.netns for n in lab.nodes}, vip)
        c = Cluster(lab, vip, vlab.Observer(lab.obs), sampler)
        try:
            assert vlab.wait_for(sampler.holders, WAIT, "a sample") == (first.name,)
            c.start(second)
            vlab.wait_for(lambda: second.name in sampler.holders(), WAIT, f"{second.name} to hold")
            # Negative control: the sampler does count a leftover address; until `first`
            # starts again, this is an overlap the sampler must report.
            vlab.wait_for(lambda: sampler.overlaps, WAIT, "the sampler to report the overlap")
            sampler.overlaps.clear()
            c.start(first)
            vlab.wait_for(
                lambda: sampler.holders() == (second.name,),
                WAIT,
                "the leftover address to be removed",
            )
            assert "removed 10.66.0.100 left on eth0 by an earlier run" in c.logs()
        finally:
            sampler.close()
            c.observer.close()


@pytest.fixture
def cluster6(netns_capable: None, etcd_capable: None) -> Iterator[Cluster]:
    yield from _cluster("fd66::100", 2)


def test_ipv6_vip_with_unsolicited_na(cluster6: Cluster) -> None:
    holder = cluster6.holder()
    seen = cluster6.announced_by(holder, after=time.monotonic() - 60, frames=2)
    assert {c.kind for c in seen} == {"na"}
    assert all(c.detail["checksum_ok"] and c.detail["lladdr"] == holder.mac for c in seen)
    out = subprocess.run(
        ["ip", "-n", holder.netns, "-6", "addr", "show", "dev", "eth0"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "inet6 fd66::100/128 scope global" in out
    assert holder.proc is not None
    holder.proc.send_signal(signal.SIGTERM)
    assert holder.proc.wait(timeout=WAIT) == 0
    new = cluster6.holder(other_than=(holder.name,))
    cluster6.announced_by(new, after=time.monotonic() - 60)
    cluster6.assert_no_overlap()


def test_sigint_exits_130_after_releasing(cluster: Cluster) -> None:
    holder = cluster.holder()
    assert holder.proc is not None
    os.kill(holder.proc.pid, signal.SIGINT)
    assert holder.proc.wait(timeout=WAIT) == 130
    cluster.holder(other_than=(holder.name,))
    cluster.assert_no_overlap()


def test_address_removed_behind_our_back_is_restored(cluster: Cluster) -> None:
    holder = cluster.holder()
    subprocess.run(
        ["ip", "-n", holder.netns, "addr", "del", f"{cluster.vip}/32", "dev", "eth0"], check=True
    )
    vlab.wait_for(
        lambda: "re-adding" in (holder.log.read_text() if holder.log else ""),
        WAIT,
        f"{holder.name} to notice the missing address",
    )
    assert cluster.holder() is holder
    assert cluster.sampler.history[-1][1] == (holder.name,)
    cluster.assert_no_overlap()


def test_run_from_a_machine_config(netns_capable: None, etcd_capable: None, tmp_path: Path) -> None:
    """`run --config`: interface, VIP and node name (the config's hostname) come from the file."""
    golden = Path(__file__).resolve().parent.parent / "data" / "config" / "golden"
    network = (
        "    network:\n"
        "        hostname: cp-from-config\n"
        "        interfaces:\n"
        "            - interface: eth0\n"
        "              vip:\n"
        "                  ip: 10.66.0.100\n"
    )
    cfg = tmp_path / "controlplane.yaml"
    cfg.write_text(
        (golden / "controlplane.yaml").read_text().replace("    network: {}\n", network, 1)
    )
    with vlab.Lab(1) as lab:
        node = lab.nodes[0]
        lab.spawn(
            node,
            [TALOS_VIP, "run", "--config", str(cfg), "--etcd-endpoints", lab.etcd_endpoint],
            log_name="node1",
        )
        sampler = vlab.Sampler({node.name: node.netns}, "10.66.0.100")
        try:
            vlab.wait_for(lambda: sampler.holders() == (node.name,), WAIT, "the configured VIP")
        finally:
            sampler.close()
        c = Cluster(lab, "10.66.0.100", None, sampler)  # type: ignore[arg-type]
        assert _status(c, node)["candidates"] == ["cp-from-config"]


def test_periodic_refresh_after_the_burst(netns_capable: None, etcd_capable: None) -> None:
    with vlab.Lab(1) as lab:
        node = lab.nodes[0]
        observer = vlab.Observer(lab.obs)
        try:
            lab.spawn(
                node,
                [
                    TALOS_VIP,
                    "run",
                    "--interface",
                    "eth0",
                    "--vip",
                    "10.66.0.100",
                    "--etcd-endpoints",
                    lab.etcd_endpoint,
                    "--node-name",
                    node.name,
                    "--announce-refresh",
                    "0.3",
                ],
                log_name="node1",
            )
            # The burst is 4 announcements (8 frames); 2 more announcements are refreshes.
            vlab.wait_for(
                lambda: len(observer.seen(ip="10.66.0.100")) >= 12,
                WAIT,
                "refresh announcements after the burst",
            )
            assert {c.mac for c in observer.seen(ip="10.66.0.100")} == {node.mac}
        finally:
            observer.close()
