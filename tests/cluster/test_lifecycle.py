"""create -> show -> destroy with real talos-init nodes; interrupted creates; crashed nodes.

Marked ``system``: each test makes its own cluster (network namespaces, a bridge, veth pairs,
PID namespaces) under a unique name and checks that destroy leaves nothing behind: no
namespace, no process, no cgroup, no state directory, and no address, route or link in the
namespace create ran in (the test session's private one): ``ip -j addr``, ``ip -j route`` and
``ip -j link`` read the same before create and after destroy.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from talos_cluster import state
from talos_cluster.cli import main
from talos_cluster.nodes import alive

from .conftest import Env, forwarding, net_snapshot, netns_list, processes_mentioning

# a trivial PID 1 with the stand-in handshake: "ready" once up
STAND_IN = "sh -c 'echo ready; exec sleep 600'"

pytestmark = pytest.mark.system

BIN = Path(sys.executable).parent


def _links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True)
    return {link["ifname"] for link in json.loads(out.stdout)}


def _ip_json(*argv: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, check=True)
    return json.loads(out.stdout or "[]")  # type: ignore[no-any-return]


def _refused(ip: str, argv_prefix: tuple[str, ...] = ()) -> str:
    """A TCP connect to a closed port of ``ip``: ``refused`` (an RST came back: the address
    answers), else the error; from here or, with ``argv_prefix``, from inside a namespace."""
    probe = subprocess.run(
        [
            *argv_prefix,
            sys.executable,
            "-c",
            "import socket\n"
            f"try:\n socket.create_connection(({ip!r}, 1), timeout=3)\n"
            "except ConnectionRefusedError:\n print('refused')\n"
            "except OSError as e:\n print(type(e).__name__)\n",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return probe.stdout.strip() or probe.stderr.strip()


def test_session_is_in_a_private_network_namespace() -> None:
    """tests/conftest.py moved the session out of the namespace it was started in (as root)."""
    if os.geteuid() != 0:
        pytest.skip("root is needed to enter a network namespace")
    assert os.readlink("/proc/self/ns/net") != os.readlink(f"/proc/{os.getppid()}/ns/net")
    assert {link["ifname"] for link in _ip_json("link")} >= {"lo"}
    assert [a["ifname"] for a in _ip_json("-4", "addr") if a.get("addr_info")] in ([], ["lo"])


def _in_ns(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", "--", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def assert_nothing_left(env: Env, record: state.ClusterRecord, before: dict[str, object]) -> None:
    names = {record.netns, *(n.name for n in record.nodes)}
    assert not names & netns_list(), "network namespaces left behind"
    assert not processes_mentioning(str(env.state_dir)), "node processes left behind"
    for n in record.nodes:
        # gone, or a zombie waiting for the host's init to collect it (its parent, create, was
        # killed): not running either way
        assert not alive(n.pid, n.start_time), f"launcher of {n.name} still running"
        for group in n.cgroups:
            assert not Path(group).exists(), f"cgroup {group} left behind"
    assert not env.cluster_dir.exists(), "state directory left behind"
    # the namespace create ran in is as it was: no bridge, veth end, address or route left
    assert net_snapshot() == before


def test_create_show_destroy(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    before, switches = net_snapshot(), forwarding()
    assert main(env.create_args("--wait-timeout", "120")) == 0
    out, err = capsys.readouterr()
    record = state.load(env.cluster_dir)
    assert record is not None and record.complete
    master, worker = record.nodes
    assert (master.name, master.role, master.ip) == (
        f"{env.name}-master-1",
        "controlplane",
        "10.5.0.2",
    )
    assert (worker.name, worker.role, worker.ip) == (f"{env.name}-worker-1", "worker", "10.5.0.3")
    # progress on stderr, the status table on stdout
    assert "creating node" in err and "creating node" not in out
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][:4] == ["NODE", "ROLE", "ADDRESS", "STATE"]
    assert rows[1][:4] == [master.name, "controlplane", "10.5.0.2", "running"]
    assert rows[2][:4] == [worker.name, "worker", "10.5.0.3", "running"]
    # namespaces: one per node; the bridge, named after the cluster, is here
    assert {master.name, worker.name} <= netns_list() and env.name not in netns_list()
    assert (record.layout, record.bridge, record.netns) == ("shared", env.name, "")
    addr = _in_ns(master.name, "ip", "-o", "-4", "addr", "show", "eth0")
    assert "10.5.0.2/24" in addr.stdout
    (bridge,) = _ip_json("addr", "show", "dev", env.name)
    assert [(a["local"], a["prefixlen"]) for a in bridge["addr_info"] if a["family"] == "inet"] == [
        ("10.5.0.1", 24)
    ]
    ends = {master.veth, worker.veth}
    old: list[object] = before["link"]  # type: ignore[assignment]
    new = {str(link["ifname"]): link for link in _ip_json("link") if link not in old}
    assert set(new) == {env.name, *ends} and all(len(n) <= 15 for n in new)
    assert {str(link.get("ifalias")) for link in new.values()} == {f"talos-cluster:{env.name}"}
    # what changed here: the bridge and the veth ends, one connected route, no default route,
    # no forwarding switch; the bridge itself forwards nothing
    added = [r for r in _ip_json("route") if r not in before["route"]]  # type: ignore[operator]
    assert [(r["dst"], r["dev"]) for r in added] == [("10.5.0.0/24", env.name)]
    assert forwarding() == switches
    assert Path(f"/proc/sys/net/ipv4/conf/{env.name}/forwarding").read_text().strip() == "0"
    # from here (the shell that ran create) both nodes answer: an RST from each
    assert _refused("10.5.0.2") == "refused" and _refused("10.5.0.3") == "refused"
    assert _refused("10.5.0.9") != "refused"  # negative control: no node there
    # the bridge carries traffic between the nodes: a TCP connect from the worker to a closed
    # port of the master is refused (RST from 10.5.0.2), not timed out
    assert _refused("10.5.0.2", ("nsenter", f"--net=/run/netns/{worker.name}", "--")) == "refused"
    # each node is PID 1 of its own PID namespace, with its hostname and STATE
    console = Path(master.console).read_text()
    assert "talos-init mode container, pid 1" in console
    assert f"hostname set to {master.name}" in console
    assert (Path(master.dir) / "state" / "config.yaml").exists()
    # configs and keys are private; the talosconfig has the cluster's context
    for fname in ("secrets.yaml", "controlplane.yaml", "join.yaml", "kubeconfig", "cluster.yaml"):
        mode = stat.S_IMODE((env.cluster_dir / fname).stat().st_mode)
        assert mode == 0o600, fname
    tc = yaml.safe_load(env.talosconfig.read_text())
    assert tc["context"] == env.name
    assert tc["contexts"][env.name]["endpoints"] == ["10.5.0.2"]
    kube = yaml.safe_load((env.cluster_dir / "kubeconfig").read_text())
    assert kube["clusters"][0]["cluster"]["server"] == "https://10.5.0.2:6443"

    assert main(["show", *env.args()]) == 0
    shown, said = capsys.readouterr()
    assert shown.splitlines()[1].split()[:4] == rows[1][:4]
    assert f"on bridge {env.name}, layout shared (in this network namespace)" in said

    assert main(["destroy", *env.args()]) == 0
    assert_nothing_left(env, record, before)
    # destroy again: nothing to do, still success
    assert main(["destroy", *env.args()]) == 0
    assert "nothing to destroy" in capsys.readouterr().err
    # show now reports there is no such cluster
    assert main(["show", *env.args()]) == 1


def test_maintenance_mode_without_config(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(env.create_args("--workers", "0", "--skip-injecting-config", "--skip-kubeconfig")) == 0
    )
    out, _ = capsys.readouterr()
    assert out.splitlines()[1].split()[3] == "maintenance"
    assert not (env.cluster_dir / "kubeconfig").exists()
    record = state.load(env.cluster_dir)
    assert record is not None
    assert "waiting for a machine config" in Path(record.nodes[0].console).read_text()
    assert main(["destroy", *env.args()]) == 0
    assert not env.cluster_dir.exists()


def test_crashed_node_then_destroy(env: Env) -> None:
    before = net_snapshot()
    assert main(env.create_args("--workers", "1")) == 0
    record = state.load(env.cluster_dir)
    assert record is not None
    from talos_cluster.nodes import node_pid1

    pid1 = node_pid1(record.nodes[1].pid)
    assert pid1 is not None
    os.kill(pid1, signal.SIGKILL)  # the worker crashes
    assert main(["destroy", *env.args()]) == 0
    assert_nothing_left(env, record, before)


def test_destroy_after_a_kill_between_making_a_veth_and_marking_it(env: Env) -> None:
    """create killed after a node's veth pair was made but before its host end was marked:
    destroy removes the node's namespace first, and the unmarked end goes with its peer."""
    before = net_snapshot()
    assert main(env.create_args("--workers", "1")) == 0
    record = state.load(env.cluster_dir)
    assert record is not None
    veth = record.nodes[1].veth
    assert veth
    subprocess.run(["ip", "link", "set", "dev", veth, "alias", ""], check=True)  # as if killed
    assert (
        f"talos-cluster:{env.name}"
        not in subprocess.run(
            ["ip", "-d", "link", "show", veth], capture_output=True, text=True, check=True
        ).stdout
    )
    assert main(["destroy", *env.args()]) == 0
    assert_nothing_left(env, record, before)


def test_destroy_leaves_an_unmarked_link_that_is_not_the_clusters(env: Env) -> None:
    """The negative control: a link of a node's veth name that is not a veth into the node's
    namespace (a user's) stays, named, and the record is kept."""
    assert main(env.create_args("--workers", "1")) == 0
    record = state.load(env.cluster_dir)
    assert record is not None
    veth = record.nodes[1].veth
    subprocess.run(["ip", "link", "delete", veth], check=True)
    subprocess.run(["ip", "link", "add", veth, "type", "bridge"], check=True)
    try:
        assert main(["destroy", *env.args()]) == 1
        assert state.load(env.cluster_dir) is not None
    finally:
        subprocess.run(["ip", "link", "delete", veth], check=False)
    assert main(["destroy", *env.args()]) == 0


def _wait_for(predicate, bound: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_create_then_destroy(env: Env, sig: signal.Signals) -> None:
    before = net_snapshot()
    # the stand-in PID 1 never reports ready, so create is certain to be still waiting when it
    # is stopped (with real nodes a fast machine can finish before the signal lands)
    # stderr goes to a file, not a pipe: a node started before the signal may still hold an
    # inherited descriptor, and reading a pipe to EOF would then wait for that node
    err_path = env.talosconfig.with_name("create.err")
    with err_path.open("w") as err_file:
        proc = subprocess.Popen(
            [
                str(BIN / "talos-cluster"),
                *env.create_args("--masters", "1", "--workers", "2", "--node-command", "sleep 600"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            text=True,
        )

    def first_node_started() -> bool:
        try:
            rec = state.load(env.cluster_dir)
        except Exception:  # noqa: BLE001 - the record may be mid-rename
            return False
        return rec is not None and bool(rec.nodes) and rec.nodes[0].pid > 0

    _wait_for(first_node_started)
    proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        wchan = Path(f"/proc/{proc.pid}/wchan").read_text()
        proc.kill()
        proc.wait()
        signals = [x for x in status.splitlines() if x.startswith(("State", "Sig", "Threads"))]
        pytest.fail(
            f"create did not exit after {sig.name}: {signals}, wchan {wchan}; "
            f"its stderr:\n{err_path.read_text()}"
        )
    err = err_path.read_text()
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "talos-cluster destroy --name" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    record = state.load(env.cluster_dir)
    assert record is not None and record.nodes[0].pid > 0
    assert env.name in _links()  # the bridge, made before the nodes, is there
    done = subprocess.run(
        [str(BIN / "talos-cluster"), "destroy", *env.args()],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert_nothing_left(env, record, before)


def test_second_create_refused_first_intact(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(env.create_args("--workers", "0")) == 0
    assert main(env.create_args("--workers", "0")) == 1
    assert f"cluster {env.name} exists" in capsys.readouterr().err
    record = state.load(env.cluster_dir)
    assert record is not None
    assert alive(record.nodes[0].pid, record.nodes[0].start_time)
    assert main(["destroy", *env.args()]) == 0


def test_stand_in_node_command_and_limits(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The launcher with a trivial PID 1 (hidden --node-command): namespaces and cgroups."""
    before = net_snapshot()
    args = env.create_args(
        "--workers",
        "1",
        "--cpus",
        "1.5",
        "--memory",
        "256",
        "--memory-workers",
        "128",
        "--node-command",
        STAND_IN,
    )
    assert main(args) == 0
    record = state.load(env.cluster_dir)
    assert record is not None
    from talos_cluster.nodes import node_pid1

    master = record.nodes[0]
    pid1 = node_pid1(master.pid)
    assert pid1 is not None
    # PID 1 of its own PID namespace, inside the node's network namespace
    nspid = Path(f"/proc/{pid1}/status").read_text().split("NSpid:")[1].split("\n")[0].split()
    assert nspid[-1] == "1"
    assert os.stat(f"/proc/{pid1}/ns/net").st_ino == os.stat(f"/run/netns/{master.name}").st_ino
    assert os.stat(f"/proc/{pid1}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
    if master.limits.startswith("cgroup v1"):
        cpu = next(g for g in master.cgroups if "/cpu/" in g)
        mem = next(g for g in master.cgroups if "/memory/" in g)
        assert Path(cpu, "cpu.cfs_quota_us").read_text().strip() == "150000"
        assert Path(mem, "memory.limit_in_bytes").read_text().strip() == str(256 << 20)
        assert str(pid1) in Path(cpu, "cgroup.procs").read_text().split()
    elif master.limits.startswith("cgroup v2"):
        (group,) = master.cgroups
        assert Path(group, "cpu.max").read_text().split() == ["150000", "100000"]
        assert Path(group, "memory.max").read_text().strip() == str(256 << 20)
        assert str(pid1) in Path(group, "cgroup.procs").read_text().split()
    else:
        assert master.limits.startswith("not enforced: ")
    assert main(["destroy", *env.args(), "--grace", "1"]) == 0
    assert_nothing_left(env, record, before)


def test_node_that_exits_fails_create_and_cleans_up(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    before = net_snapshot()
    assert main(env.create_args("--workers", "0", "--node-command", "false")) == 1
    err = capsys.readouterr().err
    assert f"node {env.name}-master-1 exited while starting" in err
    assert "removing what was made" in err
    assert not env.cluster_dir.exists()
    assert not {env.name, f"{env.name}-master-1"} & netns_list()
    assert net_snapshot() == before


def test_talosctl_routes_cluster_commands(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    from talosctl.cli import main as talosctl

    assert (
        talosctl(["cluster", *env.create_args("--workers", "0", "--node-command", STAND_IN)]) == 0
    )
    assert talosctl(["cluster", "show", *env.args()]) == 0
    out = capsys.readouterr().out
    assert f"{env.name}-master-1" in out
    assert talosctl(["cluster", "destroy", *env.args(), "--grace", "1"]) == 0
    assert not env.cluster_dir.exists()
