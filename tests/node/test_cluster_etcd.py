"""``talos-cluster create`` with real talos-init nodes reaches "etcd healthy on every control
plane": its bootstrap step runs for real over the machine API (inside the cluster's network
namespace), workers get their API certificate from trustd, and destroy leaves nothing."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster.conftest import _probe, netns_list, processes_mentioning

pytestmark = [pytest.mark.system, pytest.mark.etcd]

TALOS_APPLY = str(Path(sys.executable).parent / "talos-apply")
_counter = itertools.count(1)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """(name, state dir, talosconfig); whatever the test left is removed afterwards."""
    reason = _probe()
    if reason is not None:
        pytest.skip(reason)
    if not Path("/usr/bin/etcd").exists():
        pytest.skip("/usr/bin/etcd is not installed (Debian package etcd-server)")
    name = f"tn{os.getpid() % 100000}x{next(_counter)}"
    state_dir, talosconfig = tmp_path / "clusters", tmp_path / "talosconfig"
    try:
        yield name, state_dir, talosconfig
    finally:
        from talos_cluster import state
        from talos_cluster.commands.destroy import destroy_record
        from talos_cluster.netlab import processes_in

        with contextlib.suppress(Exception):
            record = state.load(state_dir / name)
            if record is not None:
                destroy_record(record, grace=2)
        ours = [ns for ns in netns_list() if ns == name or ns.startswith(f"{name}-")]
        for pid in {*processes_mentioning(str(state_dir)), *processes_in(ours)}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        for ns in ours:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def _api(netns: str, talosconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TALOS_APPLY, "--talosconfig", str(talosconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_create_bootstraps_etcd_then_destroy(
    cluster: tuple[str, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from talos_cluster import state
    from talos_cluster.cli import main

    name, state_dir, talosconfig = cluster
    args = ["--name", name, "--state-dir", str(state_dir)]
    code = main(["create", *args, "--talosconfig", str(talosconfig), "--wait-timeout", "120"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"bootstrap: {name}-master-1 (10.5.0.2)" in err
    assert f"etcd on {name}-master-1: member" in err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows[f"{name}-master-1"][-1] == "member"
    record = state.load(state_dir / name)
    assert record is not None

    # the context create merged reaches the master over mutual TLS inside the cluster's netns
    members = _api(name, talosconfig, "etcd", "members", "--nodes", "10.5.0.2")
    assert members.returncode == 0, members.stderr
    assert f"{name}-master-1" in members.stdout and "https://10.5.0.2:2380" in members.stdout
    # the worker serves mutual TLS with a certificate from the master's trustd
    master_console = Path(record.nodes[0].console)
    worker_console = Path(record.nodes[1].console)
    assert "machine API listening on :50000 (mutual TLS)" in master_console.read_text()
    services = _api(name, talosconfig, "services", "--nodes", "10.5.0.3")
    assert services.returncode == 0, services.stderr + worker_console.read_text()[-2000:]
    assert "kubelet" in services.stdout and "Skipped" in services.stdout
    assert "trustd: certificate issued" in worker_console.read_text()
    # a worker refuses bootstrap and has no etcd
    refused = _api(name, talosconfig, "bootstrap", "--nodes", "10.5.0.3")
    assert refused.returncode != 0 and "workers" in refused.stderr, refused.stderr

    assert main(["destroy", *args]) == 0
    capsys.readouterr()
    assert not {name, *(n.name for n in record.nodes)} & netns_list()
    assert not processes_mentioning(str(state_dir))
    assert not (state_dir / name).exists()
    # safe to run twice
    main(["destroy", *args])


@pytest.mark.slow
def test_three_control_planes_join_etcd(
    cluster: tuple[str, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The bootstrap node starts a new cluster; the two others join it (member add, then etcd
    with initial-cluster-state=existing), whichever order they get there in."""
    from talos_cluster.cli import main

    name, state_dir, talosconfig = cluster
    args = ["--name", name, "--state-dir", str(state_dir)]
    code = main(
        [
            "create",
            *args,
            "--talosconfig",
            str(talosconfig),
            "--masters",
            "3",
            "--workers",
            "0",
            "--wait-timeout",
            "120",
        ]
    )
    out, err = capsys.readouterr()
    masters = [f"{name}-master-{i}" for i in (1, 2, 3)]
    assert code == 0, err + _consoles(state_dir / name, masters)
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert all(rows[m][-1] == "member" for m in masters), out
    for ip in ("10.5.0.2", "10.5.0.3", "10.5.0.4"):  # every member sees the same three
        members = _api(name, talosconfig, "etcd", "members", "--nodes", ip)
        assert members.returncode == 0, members.stderr
        assert all(m in members.stdout for m in masters), members.stdout
    joined = (state_dir / name / masters[1] / "console.log").read_text()
    assert f"etcd: joining as {masters[1]}" in joined
    assert main(["destroy", *args]) == 0
    assert not {name, *masters} & netns_list()


def _consoles(cluster_dir: Path, nodes: list[str]) -> str:
    """The tail of each node's console, for a failure message."""
    parts = []
    for node in nodes:
        path = cluster_dir / node / "console.log"
        text = path.read_text(errors="replace") if path.exists() else "(no console)"
        parts.append(f"--- {node} ---\n{text[-4000:]}")
    return "\n".join(parts)


def _addresses(netns: str, interface: str) -> str:
    return subprocess.run(
        ["ip", "-n", netns, "-4", "addr", "show", "dev", interface],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def test_vip_from_config_patch_is_held_once_etcd_is_up(
    cluster: tuple[str, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A config patch puts a shared IP on the master's eth0: after bootstrap, talos-init runs
    talos-vip, which wins the election in the node's etcd and puts the /32 on the interface."""
    import time

    from talos_cluster.cli import main

    name, state_dir, talosconfig = cluster
    patch = '{"machine": {"network": {"interfaces": [{"interface": "eth0", "vip": {"ip": "10.5.0.100"}}]}}}'
    args = ["--name", name, "--state-dir", str(state_dir)]
    code = main(
        [
            "create",
            *args,
            "--talosconfig",
            str(talosconfig),
            "--workers",
            "0",
            "--wait-timeout",
            "120",
            "--config-patch-control-plane",
            patch,
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    master = f"{name}-master-1"
    deadline = time.monotonic() + 60
    while "10.5.0.100/32" not in _addresses(master, "eth0"):
        assert time.monotonic() < deadline, (state_dir / name / master / "console.log").read_text()[
            -3000:
        ]
        time.sleep(0.2)
    services = _api(name, talosconfig, "services", "--nodes", "10.5.0.2")
    assert services.returncode == 0, services.stderr
    assert "vip" in services.stdout and "etcd" in services.stdout

    # negative control: a bad patch fails create before anything is made
    code = main(
        [
            "create",
            "--name",
            f"{name}b",
            "--state-dir",
            str(state_dir),
            "--talosconfig",
            str(talosconfig),
            "--config-patch",
            '{"machine": {"bogus": 1}}',
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "machine.bogus: unknown key" in err, err
    assert f"{name}b" not in netns_list()

    assert main(["destroy", *args]) == 0
    assert name not in netns_list()
