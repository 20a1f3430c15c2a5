"""Fixtures for talos-cluster: a capability probe, unique cluster names, and a cleanup that
removes whatever a test's cluster left (namespaces, links, processes, state), also when it fails.

Everything the tests create lives in network namespaces the test session made: the session runs
in a private network namespace of its own (tests/conftest.py), where create puts the bridge of
a cluster (or, with ``--isolated``, in the cluster's own namespace); each node has its own. The
build machine's network namespace is never changed and no packet leaves those namespaces.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_counter = itertools.count(1)


def _probe() -> str | None:
    """None when the machine can run clusters; else the missing capability, named."""
    if os.geteuid() != 0:
        return "root is needed (network namespaces, PID namespaces, cgroups)"
    for tool in ("ip", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2 / util-linux)"
    name = f"h7probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        veth = subprocess.run(
            ["ip", "-n", name, "link", "add", "name", "a", "type", "veth", "peer", "name", "b"],
            capture_output=True,
            text=True,
            check=False,
        )
        if veth.returncode != 0:
            return f"cannot create a veth pair: {veth.stderr.strip()}"
        br = subprocess.run(
            ["ip", "-n", name, "link", "add", "name", "br", "type", "bridge"],
            capture_output=True,
            text=True,
            check=False,
        )
        if br.returncode != 0:
            return f"cannot create a bridge: {br.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
    pidns = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "--uts", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if pidns.returncode != 0:
        return f"cannot create PID/mount/UTS namespaces: {pidns.stderr.strip()}"
    return None


@pytest.fixture(scope="session")
def cluster_capable() -> None:
    reason = _probe()
    if reason is not None:
        pytest.skip(reason)


@dataclass
class Env:
    name: str
    state_dir: Path
    talosconfig: Path

    @property
    def cluster_dir(self) -> Path:
        return self.state_dir / self.name

    def args(self, *extra: str) -> list[str]:
        return [
            "--name",
            self.name,
            "--state-dir",
            str(self.state_dir),
            *extra,
        ]

    def create_args(self, *extra: str) -> list[str]:
        return ["create", *self.args("--talosconfig", str(self.talosconfig), *extra)]


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def net_snapshot() -> dict[str, object]:
    """This namespace's addresses, routes (every table, IPv4 and IPv6) and links, as ``ip -j``
    prints them: equal before create and after destroy when nothing was left behind."""
    views = {
        "addr": ["addr"],
        "route": ["route", "show", "table", "all"],
        "route6": ["-6", "route", "show", "table", "all"],
        "link": ["link"],
    }
    return {
        key: json.loads(
            subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, check=True).stdout
            or "[]"
        )
        for key, argv in views.items()
    }


FORWARDING = (
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv4/conf/all/forwarding",
    "/proc/sys/net/ipv4/conf/default/forwarding",
    "/proc/sys/net/ipv6/conf/all/forwarding",
    "/proc/sys/net/ipv6/conf/default/forwarding",
)


def forwarding() -> dict[str, str]:
    """This namespace's forwarding switches."""
    return {p: Path(p).read_text().strip() for p in FORWARDING}


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


@pytest.fixture
def env(cluster_capable: None, tmp_path: Path) -> Iterator[Env]:
    name = f"tc{os.getpid() % 100000}x{next(_counter)}"
    e = Env(name=name, state_dir=tmp_path / "clusters", talosconfig=tmp_path / "talosconfig")
    try:
        yield e
    finally:
        clean_up(e, grace=2)


def clean_up(e: Env, *, grace: float, kill: bool = True) -> None:
    """Remove what cluster ``e`` left after a failed test: the tool's own destroy first, then
    its namespaces and links by hand, and (``kill``) every process naming its state dir."""
    from talos_cluster import state
    from talos_cluster.commands.destroy import destroy_record
    from talos_cluster.netlab import processes_in

    with contextlib.suppress(Exception):
        record = state.load(e.cluster_dir)
        if record is not None:
            destroy_record(record, grace=grace)
    ours = [ns for ns in netns_list() if ns == e.name or ns.startswith(f"{e.name}-")]
    stray = processes_mentioning(str(e.state_dir)) if kill else []
    for pid in {*stray, *processes_in(ours)}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    for ns in ours:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
    remove_links(e.name)


def remove_links(name: str) -> None:
    """Delete the links of cluster ``name`` left in this (the session's private) namespace."""
    from talos_cluster import plan

    for link in net_snapshot()["link"]:  # type: ignore[union-attr]
        ifname = str(link["ifname"])  # type: ignore[index]
        if ifname == plan.bridge_name(name) or ifname.startswith(plan.veth_prefix(name) + "_"):
            subprocess.run(["ip", "link", "delete", ifname], capture_output=True, check=False)
