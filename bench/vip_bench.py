"""VIP failover: talos-vip against Debian's keepalived at default timers, same run, same topology.

Three nodes and an observer on a bridge, each in a fresh network namespace (tests/viplab.py), plus
a real etcd for talos-vip. For each tool and each trial:

* crash failover: SIGKILL the holder's process group and cut its LAN port; time until the
  observer captures the first announcement (GARP) from the new holder's MAC;
* graceful failover: SIGTERM the holder; same end point;
* announcement frames from the new holder in the first 2 s after its first one;
* overlap: sampling rounds in which two nodes on the LAN hold the VIP (must be 0).

Talos's own VIP is not run here (its 60 s etcd session TTL is the documented reference:
docs/talos-facts.md#virtual-ip). Run as root: ``python bench/vip_bench.py [--trials N]``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The namespace lab (tests/viplab.py) is test equipment: it lives with the tests, not in
# talos-vip, and this benchmark borrows it from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import viplab as vlab

VIP = "10.66.0.100"
TALOS_VIP = str(Path(sys.executable).with_name("talos-vip"))
WAIT = 30.0
WINDOW = 2.0

KEEPALIVED_CONF = """\
global_defs {{
    router_id {name}
    enable_script_security
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        {vip}/32 dev eth0
    }}
}}
"""


@dataclass
class Results:
    crash: list[float] = field(default_factory=list)
    graceful: list[float] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    overlaps: int = 0
    startup_overlaps: int = 0
    rounds: int = 0


def start_talos_vip(lab: vlab.Lab, node: vlab.Node) -> None:
    lab.spawn(
        node,
        [
            TALOS_VIP,
            "run",
            "--interface",
            "eth0",
            "--vip",
            VIP,
            "--etcd-endpoints",
            lab.etcd_endpoint,
            "--node-name",
            node.name,
        ],
        log_name=node.name,
    )


def start_keepalived(lab: vlab.Lab, node: vlab.Node) -> None:
    i = lab.nodes.index(node)
    conf = lab.tmp / f"{node.name}-keepalived.conf"
    conf.write_text(KEEPALIVED_CONF.format(name=node.name, priority=100 + i, vip=VIP))
    lab.spawn(
        node,
        [
            "keepalived",
            "--dont-fork",
            "--log-console",
            "--no-syslog",
            "--vrrp",
            "--use-file",
            str(conf),
            "--pid",
            str(lab.tmp / f"{node.name}-k.pid"),
            "--vrrp_pid",
            str(lab.tmp / f"{node.name}-v.pid"),
        ],
        log_name=node.name,
    )


def one_trial(
    tool: str, start: Callable[[vlab.Lab, vlab.Node], None], crash: bool, res: Results
) -> None:
    with vlab.Lab(3, with_etcd=tool == "talos-vip") as lab:
        observer = vlab.Observer(lab.obs)
        sampler = vlab.Sampler({n.name: n.netns for n in lab.nodes}, VIP)
        try:
            for node in lab.nodes:
                start(lab, node)

            def settled() -> str | None:
                # One holder, unchanged for 2 s: start-up contention is over (keepalived's
                # backups all become master at first, then yield) and the burst has finished.
                if not sampler.history:
                    return None
                since, holders = sampler.history[-1]
                if len(holders) == 1 and time.monotonic() - since >= 2.0:
                    return holders[0]
                return None

            old = lab.node_by_name(vlab.wait_for(settled, WAIT, "a settled holder"))
            res.startup_overlaps += len(sampler.overlaps)
            sampler.overlaps.clear()
            t0 = time.monotonic()
            if crash:
                lab.signal(old, signal.SIGKILL)
                lab.cut_lan(old)
                sampler.mark_dead(old.name)
            else:
                lab.signal(old, signal.SIGTERM)

            def first_new() -> vlab.Capture | None:
                for c in observer.seen(ip=VIP, after=t0):
                    if c.mac != old.mac:
                        return c
                return None

            first = vlab.wait_for(first_new, WAIT, f"{tool}: an announcement by a new holder")
            (res.crash if crash else res.graceful).append(first.at - t0)
            time.sleep(WINDOW)
            res.frames.append(
                len(
                    [
                        c
                        for c in observer.seen(ip=VIP, after=first.at)
                        if c.mac == first.mac and c.at <= first.at + WINDOW
                    ]
                )
            )
        finally:
            sampler.close()
            observer.close()
            res.overlaps += len(sampler.overlaps)
            res.rounds += sampler.rounds


def _fmt(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vip_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="trials per tool and scenario")
    args = parser.parse_args(argv)
    missing = vlab.probe() or vlab.etcd_probe()
    if missing:
        print(f"vip_bench: skipped: {missing}", file=sys.stderr)
        return 0
    tools: dict[str, Callable[[vlab.Lab, vlab.Node], None]] = {"talos-vip": start_talos_vip}
    if shutil.which("keepalived"):
        tools["keepalived"] = start_keepalived
    else:
        print("vip_bench: keepalived not installed: reference column skipped", file=sys.stderr)
    results = {name: Results() for name in tools}
    for name, start in tools.items():
        for crash in (True, False):
            for i in range(args.trials):
                one_trial(name, start, crash, results[name])
                kind = "crash" if crash else "graceful"
                print(f"vip_bench: {name} {kind} trial {i + 1}/{args.trials} done", file=sys.stderr)
    names = list(tools)
    rows = [
        (
            "crash failover, s: median (min-max)",
            [_fmt(results[n].crash) for n in names],
            "<= 2.5 (keepalived ~3.6, Talos ~60)",
        ),
        (
            "graceful failover, s: median (min-max)",
            [_fmt(results[n].graceful) for n in names],
            "< 0.2",
        ),
        (
            f"announcement frames, first {WINDOW:.0f} s of a takeover: median",
            [f"{statistics.median(results[n].frames):.0f}" for n in names],
            "-",
        ),
        (
            "overlap rounds during failover / sampling rounds",
            [f"{results[n].overlaps} / {results[n].rounds}" for n in names],
            "0",
        ),
        (
            "overlap rounds while starting together",
            [f"{results[n].startup_overlaps}" for n in names],
            "0",
        ),
    ]
    width = max(len(r[0]) for r in rows) + 2
    cols = [max(len(n), *(len(r[1][i]) for r in rows)) + 2 for i, n in enumerate(names)]
    print(f"VIP failover, 3 nodes on one bridge, {args.trials} trials per tool and scenario")
    print("".ljust(width) + "".join(n.ljust(c) for n, c in zip(names, cols, strict=True)) + "goal")
    for label, values, goal in rows:
        print(
            label.ljust(width)
            + "".join(v.ljust(c) for v, c in zip(values, cols, strict=True))
            + goal
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
