"""Faults on a real three-master cluster: talos-init nodes in namespaces, real etcd.

One cluster (``cluster create --masters 3 --workers 0``, inside its own network namespaces) serves
every test of this module, in order; each test starts from a healthy cluster and leaves one:

- bootstrap twice: the second is refused and etcd keeps its members and data;
- etcd SIGKILLed on a control plane: the supervisor restarts it and the member is healthy again;
- one of three control planes stopped: etcd keeps quorum, ``health`` names the missing node; the
  node started again (same command line as create's) rejoins with its data (same member ID);
- ``reset --graceful`` of a joined control plane: it leaves etcd, wipes EPHEMERAL, reboots, and
  joins again as a new member.

A second cluster (etcd's strict reconfiguration check off) has a member added by hand and never
started when a control plane joins: the joining node must list it in its initial cluster.

``talos-apply`` (the client under test) runs in the namespace that ran create (the test
session's private one, holding the cluster's bridge), ``etcdctl`` inside a node's namespaces:
no packet leaves them. The module's cluster is on 10.5.0.0/24 for the whole module, so the
other clusters made meanwhile take other CIDRs.

Faults during create (a node that never comes up, an unexpected error between two nodes): create
removes everything it made, down to the state directory it created and the talosconfig as it
was; these use a stand-in PID 1 and need no etcd.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cluster.conftest import (
    Env,
    _probe,
    net_snapshot,
    netns_list,
    processes_mentioning,
    remove_links,
)

pytestmark = [pytest.mark.system]

TALOS_APPLY = str(Path(sys.executable).parent / "talos-apply")
ETCD_PKI = "/system/secrets/etcd"  # inside a control-plane node's root
_counter = itertools.count(1)


@dataclass
class Cluster:
    name: str
    state_dir: Path
    talosconfig: Path

    @property
    def dir(self) -> Path:
        return self.state_dir / self.name

    def record(self) -> Any:
        from talos_cluster import state

        record = state.load(self.dir)
        assert record is not None
        return record

    def masters(self) -> list[Any]:
        return [n for n in self.record().nodes if n.role == "controlplane"]

    def api(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """talos-apply from the namespace that ran create, where the cluster's bridge is."""
        return subprocess.run(
            [TALOS_APPLY, "--talosconfig", str(self.talosconfig), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def health(self, wait: str) -> subprocess.CompletedProcess[str]:
        return self.api("health", "--wait-timeout", wait, timeout=600)

    def members(self, ip: str) -> dict[str, str]:
        """member hostname -> ID, as the node at ``ip`` lists them."""
        done = self.api("etcd", "members", "--nodes", ip, "-o", "json")
        assert done.returncode == 0, done.stderr
        (reply,) = json.loads(done.stdout)
        return {m.get("hostname", ""): m["id"] for m in reply["members"]}

    def etcdctl(self, node: Any, *args: str) -> subprocess.CompletedProcess[str]:
        """etcdctl on the node itself (its network and mount namespaces, its client cert)."""
        from talos_cluster import nodes

        pid1 = nodes.node_pid1(node.pid)
        assert pid1 is not None, f"{node.name} is not running"
        return subprocess.run(
            [
                "nsenter",
                f"--target={pid1}",
                "--net",
                "--mount",
                "--",
                "/usr/bin/etcdctl",
                "--endpoints=https://127.0.0.1:2379",
                f"--cacert={ETCD_PKI}/ca.crt",
                f"--cert={ETCD_PKI}/client.crt",
                f"--key={ETCD_PKI}/client.key",
                "--command-timeout=10s",
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def consoles(self) -> str:
        parts = []
        for n in self.masters():
            path = Path(n.console)
            text = path.read_text(errors="replace") if path.exists() else "(no console)"
            parts.append(f"--- {n.name} ---\n{text[-3000:]}")
        return "\n".join(parts)

    def assert_healthy(self, wait: str = "120s") -> str:
        done = self.health(wait)
        assert done.returncode == 0, done.stdout + done.stderr + self.consoles()
        return done.stdout


@contextlib.contextmanager
def _cluster(tmp: Path, *extra: str) -> Iterator[Cluster]:
    """A three-master cluster, no worker; removed afterwards, whatever happened."""
    reason = _probe()
    if reason is not None:
        pytest.skip(reason)
    if not Path("/usr/bin/etcd").exists() or not Path("/usr/bin/etcdctl").exists():
        pytest.skip("etcd/etcdctl are not installed (Debian packages etcd-server, etcd-client)")
    c = Cluster(f"tf{os.getpid() % 100000}x{next(_counter)}", tmp / "clusters", tmp / "talosconfig")
    from talos_cluster.cli import main

    try:
        code = main(
            [
                "create",
                "--name",
                c.name,
                "--state-dir",
                str(c.state_dir),
                "--talosconfig",
                str(c.talosconfig),
                "--masters",
                "3",
                "--workers",
                "0",
                "--wait-timeout",
                "120",
                *extra,
            ]
        )
        assert code == 0, "cluster create failed (its messages are in the captured stderr)"
        yield c
    finally:
        _remove(c)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with _cluster(tmp_path_factory.mktemp("faults")) as c:
        yield c


def _remove(c: Cluster) -> None:
    from talos_cluster import state
    from talos_cluster.commands.destroy import destroy_record
    from talos_cluster.netlab import processes_in

    with contextlib.suppress(Exception):
        record = state.load(c.dir)
        if record is not None:
            destroy_record(record, grace=2)
    ours = [ns for ns in netns_list() if ns == c.name or ns.startswith(f"{c.name}-")]
    for pid in {*processes_mentioning(str(c.state_dir)), *processes_in(ours)}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for ns in ours:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
    remove_links(c.name)


def _etcd_pid(node: Any) -> int | None:
    """The etcd process of ``node``: a child of the node's PID 1 running /usr/bin/etcd."""
    from talos_cluster import nodes

    pid1 = nodes.node_pid1(node.pid)
    if pid1 is None:
        return None
    for child in Path(f"/proc/{pid1}/task/{pid1}/children").read_text().split():
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"/etcd") and f"--name={node.name}".encode() in argv:
                return int(child)
    return None


def _relaunch(c: Cluster, node: Any) -> None:
    """Start a stopped node again with create's command line; the record follows."""
    from talos_cluster import nodes

    record = c.record()
    rec = record.node(node.name)
    argv = [
        *nodes.talos_init_command(),
        "--mode",
        "container",
        "--state-dir",
        rec.dir,
        "--cmdline",
        f"talos.hostname={rec.name}",
        "--config",
        str(c.dir / "controlplane.yaml"),
    ]
    # no cgroup: the node's groups may be gone with its processes; limits are not under test
    rec.pid, rec.start_time = nodes.launch(
        netns=rec.netns, node_command=argv, console=Path(rec.console), cgroup_procs=[]
    )
    record.save()


def _wait_until(what: str, check: Any, bound: float = 60, detail: Any = str) -> Any:
    deadline = time.monotonic() + bound
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not after {bound:g}s\n{detail()}"
        time.sleep(0.2)


# ------------------------------------------------------------------------------------ tests


@pytest.mark.etcd
def test_healthy_after_create_and_bootstrap_twice_refused(cluster: Cluster) -> None:
    c = cluster
    out = c.assert_healthy()
    masters = c.masters()
    for n in masters:
        assert any(line.split()[:2] == [n.ip, "etcd"] and "OK" in line for line in out.splitlines())
    put = c.etcdctl(masters[0], "put", "/faults/kept", "before")
    assert put.returncode == 0, put.stderr
    before = c.members(masters[0].ip)
    assert sorted(before) == sorted(n.name for n in masters)

    for n in (masters[0], masters[1]):  # the bootstrapped node and a joined one
        again = c.api("bootstrap", "--nodes", n.ip)
        assert again.returncode == 1, again.stdout + again.stderr
        assert "etcd data directory is not empty" in again.stderr, again.stderr

    assert c.members(masters[0].ip) == before  # same members, same IDs
    got = c.etcdctl(masters[2], "get", "/faults/kept", "--print-value-only")
    assert got.returncode == 0 and got.stdout.strip() == "before", got.stderr
    c.assert_healthy("30s")


@pytest.mark.etcd
def test_killed_etcd_is_restarted(cluster: Cluster) -> None:
    c = cluster
    node = c.masters()[1]
    before = c.members(node.ip)
    old = _etcd_pid(node)
    assert old is not None, c.consoles()
    os.kill(old, signal.SIGKILL)
    new = _wait_until("etcd running again", lambda: (p := _etcd_pid(node)) != old and p)
    assert new != old
    c.assert_healthy()
    assert c.members(node.ip) == before  # the same member came back, with its data
    got = c.etcdctl(node, "get", "/faults/kept", "--print-value-only")
    assert got.returncode == 0 and got.stdout.strip() == "before", got.stderr


@pytest.mark.etcd
def test_stopped_control_plane_named_then_rejoins(cluster: Cluster) -> None:
    from talos_cluster import nodes

    c = cluster
    first, _, third = c.masters()
    before = c.members(first.ip)
    nodes.stop(third.pid, third.start_time)
    assert not nodes.alive(third.pid, third.start_time)

    # quorum is kept: two of three members list the members and take writes
    assert c.members(first.ip) == before
    put = c.etcdctl(first, "put", "/faults/while-down", "yes")
    assert put.returncode == 0, put.stderr

    down = c.health("3s")
    assert down.returncode == 1, down.stdout + down.stderr
    failed = {tuple(line.split()[:2]) for line in down.stdout.splitlines() if " FAIL " in line}
    assert (third.ip, "api") in failed, down.stdout
    assert all(node == third.ip for node, _ in failed), down.stdout  # only the missing node
    assert f"{third.ip}: api" in down.stderr and f"etcd member {third.name}" in down.stdout

    _relaunch(c, third)
    c.assert_healthy()
    assert c.members(third.ip) == before  # rejoined with its data: the same member ID
    got = c.etcdctl(c.record().node(third.name), "get", "/faults/while-down", "--print-value-only")
    assert got.returncode == 0 and got.stdout.strip() == "yes", got.stderr  # caught up
    console = Path(third.console).read_text()
    assert "etcd: data found in EPHEMERAL: starting with it" in console


@pytest.mark.etcd
def test_reset_member_rejoins_as_new_member(cluster: Cluster) -> None:
    c = cluster
    first, second, _ = c.masters()
    before = c.members(first.ip)
    args = (
        "reset",
        "--graceful",
        "--reboot",
        "--system-labels-to-wipe",
        "EPHEMERAL",
        "--nodes",
        second.ip,
    )
    # the node was stopped and came back in the test before: etcd refuses a member removal
    # until every member has been connected for 5 s ("unhealthy cluster"), and the node waits
    # that out itself, so the user's one reset succeeds
    reset = c.api(*args)
    assert reset.returncode == 0, reset.stderr + c.consoles()
    c.assert_healthy()
    after = c.members(first.ip)
    assert sorted(after) == sorted(before)  # three members again, the same names
    assert after[second.name] != before[second.name]  # the reset node is a new member
    assert {k: v for k, v in after.items() if k != second.name} == {
        k: v for k, v in before.items() if k != second.name
    }
    console = Path(second.console).read_text()
    assert f"reset: left etcd (member {second.name})" in console
    got = c.etcdctl(second, "get", "/faults/kept", "--print-value-only")
    assert got.returncode == 0 and got.stdout.strip() == "before", got.stderr  # synced anew


# A control plane joins while another member is added but not started yet: etcd lists both
# without a name. With strict reconfiguration checks etcd lets that happen only when two nodes
# add themselves at the same moment (a rare race); without them a member added by hand makes it
# certain. The joining node must still start etcd with every member in its initial cluster.
NO_STRICT = '{"cluster": {"etcd": {"extraArgs": {"strict-reconfig-check": "false"}}}}'


@pytest.mark.etcd
@pytest.mark.slow
def test_join_beside_a_member_not_started(tmp_path: Path) -> None:
    with _cluster(
        tmp_path, "--cidr", "10.5.2.0/24", "--config-patch-control-plane", NO_STRICT
    ) as c:
        c.assert_healthy()
        first, second, _ = c.masters()
        # a member nobody starts (its address is in the cluster's network, unused)
        added = c.etcdctl(first, "member", "add", "pending", "--peer-urls=https://10.5.2.99:2380")
        assert added.returncode == 0, added.stderr
        before = c.members(first.ip)
        assert len(before) == 4 and "" in before  # the pending member has no name

        reset = c.api(
            "reset",
            "--graceful",
            "--reboot",
            "--system-labels-to-wipe",
            "EPHEMERAL",
            "--nodes",
            second.ip,
        )
        assert reset.returncode == 0, reset.stderr
        # it joins back beside the unnamed member: named, and etcd has its quorum again

        def back() -> bool:
            if second.name not in c.members(first.ip):
                return False
            return c.etcdctl(second, "get", "x").returncode == 0

        _wait_until(f"{second.name} a started member again", back, 90, c.consoles)
        after = c.members(first.ip)
        assert after[second.name] != before[second.name] and len(after) == 4
        assert "member count is unequal" not in c.api("logs", "etcd", "--nodes", second.ip).stdout

        # health names the member that never started; removed, the cluster is healthy
        down = c.health("2s")
        assert down.returncode == 1 and "added but never started" in down.stdout, down.stdout
        pending = before[""]
        removed = c.etcdctl(first, "member", "remove", f"{int(pending):x}")
        assert removed.returncode == 0, removed.stderr
        c.assert_healthy()


# ------------------------------------------------------------------ faults during create

# a PID 1 that never reports ready (no "ready" line) and stops at once on SIGTERM; its $0 is
# the cluster's name, so that its processes can be found
NEVER_READY = "sh -c 'trap \"exit 0\" TERM; echo booting; while :; do sleep 0.2; done' {name}"


def _assert_nothing_left(env: Env, netns_before: set[str], links_before: object) -> None:
    from talos_cluster import cgroups

    assert netns_list() == netns_before, "network namespaces left behind"
    assert not processes_mentioning(env.name), "node processes left behind"
    assert not env.state_dir.exists(), "the state directory (made by create) left behind"
    for hierarchy in (
        cgroups.CGROUP_ROOT,
        cgroups.CGROUP_ROOT / "cpu",
        cgroups.CGROUP_ROOT / "memory",
    ):
        assert not (hierarchy / cgroups.PARENT / env.name).exists(), f"cgroups left in {hierarchy}"
    assert net_snapshot() == links_before, "addresses, routes or links left behind"


@pytest.mark.parametrize("talosconfig", ["absent", "present"])
def test_create_that_times_out_removes_what_it_made(
    env: Env, capsys: pytest.CaptureFixture[str], talosconfig: str
) -> None:
    from talos_cluster.cli import main

    if talosconfig == "present":
        env.talosconfig.write_text(
            "context: other\ncontexts:\n    other:\n        endpoints: [10.9.0.2]\n"
        )
    kept = env.talosconfig.read_bytes() if talosconfig == "present" else None
    netns_before, links_before = netns_list(), net_snapshot()
    stand_in = NEVER_READY.format(name=env.name)
    code = main(
        env.create_args(
            "--workers",
            "1",
            "--wait-timeout",
            "1",
            "--node-command",
            stand_in,
            "--cidr",
            "10.5.1.0/24",
        )
    )
    err = capsys.readouterr().err
    assert code == 1, err
    # creation had started: namespaces, nodes and limits were made (a negative control for the
    # checks below), then the wait failed and everything was removed
    assert f"creating node {env.name}-worker-1" in err and "--cpus/--memory: " in err
    assert f"nodes not running after 1s: {env.name}-master-1, {env.name}-worker-1" in err
    assert "create failed: removing what was made" in err
    assert f"{env.name}-master-1 console.log, last lines:\n    booting" in err
    _assert_nothing_left(env, netns_before, links_before)
    if kept is None:
        assert not env.talosconfig.exists()
    else:
        assert env.talosconfig.read_bytes() == kept
        assert f"{env.talosconfig}: restored as it was before create" in err


def test_unexpected_error_between_nodes_removes_what_it_made(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error that is not one of the project's (here a ValueError while the second node's
    limits are set) after the first node is running."""
    from talos_cluster import cgroups
    from talos_cluster.cli import main

    real = cgroups.setup
    running: list[int] = []

    def failing(cluster: str, node: str, *args: Any) -> Any:
        if node.endswith("-worker-1"):
            running.extend(processes_mentioning(env.name))
            raise ValueError("injected")
        return real(cluster, node, *args)

    monkeypatch.setattr(cgroups, "setup", failing)
    netns_before, links_before = netns_list(), net_snapshot()
    stand_in = NEVER_READY.format(name=env.name)
    assert (
        main(env.create_args("--workers", "1", "--node-command", stand_in, "--cidr", "10.5.1.0/24"))
        == 1
    )
    err = capsys.readouterr().err
    assert running, "the first node was not running when the error came"
    assert "create failed: removing what was made" in err
    assert "error: internal error (ValueError)" in err
    _assert_nothing_left(env, netns_before, links_before)
    assert not env.talosconfig.exists()
