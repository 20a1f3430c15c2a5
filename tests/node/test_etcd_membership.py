"""``etcd leave``, ``etcd remove-member`` and ``etcd forfeit-leadership`` against the real etcd
the nodes run: refused on a single member (FAILED_PRECONDITION, NOT_FOUND, INVALID_ARGUMENT
named), and done on a cluster of two control planes made by ``talos-cluster create``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Material, api
from .test_cluster_etcd import _api, _consoles, cluster  # noqa: F401 - cluster is a fixture
from .test_node_api_methods import MTLS

pytestmark = [pytest.mark.system, pytest.mark.etcd]
BOUND = 90.0  # fails a broken cluster instead of hanging; measures nothing


def _members_of(run: Any) -> set[str]:
    """The member names of an ``etcd members`` table (None-safe: empty on failure)."""
    res = run("etcd", "members")
    if res.returncode != 0:
        return set()
    return {line.split()[2] for line in res.stdout.splitlines()[1:] if len(line.split()) > 2}


def _wait_members(run: Any, want: set[str], where: str = "") -> None:
    deadline = time.monotonic() + BOUND
    while (got := _members_of(run)) != want:
        assert time.monotonic() < deadline, f"members {got}, wanted {want}\n{where}"
        time.sleep(0.5)


def test_single_member_refuses_to_shrink(start_node: Any, material: Material) -> None:
    if not Path("/usr/bin/etcd").exists():
        pytest.skip("/usr/bin/etcd is not installed (Debian package etcd-server)")
    node, _state = start_node("--cmdline", "talos.hostname=cp-1", config=material.controlplane)
    node.expect(MTLS)
    tc = ["--talosconfig", str(material.talosconfig)]

    def run(*args: str) -> Any:
        return api(node, *tc, *args)

    before = run("etcd", "leave")
    assert before.returncode == 1 and "not running" in before.stderr, before.stderr
    assert run("bootstrap").returncode == 0
    _wait_members(run, {"cp-1"}, node.transcript())

    left = run("etcd", "leave")
    assert left.returncode == 1, left.stderr
    assert "FAILED_PRECONDITION" in left.stderr and "only etcd member" in left.stderr
    unknown = run("etcd", "remove-member", "no-such-node")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr, unknown.stderr
    assert "'no-such-node' not found (members: cp-1)" in unknown.stderr
    last = run("etcd", "remove-member", "cp-1")
    assert last.returncode == 1 and "FAILED_PRECONDITION" in last.stderr, last.stderr
    long = run("etcd", "remove-member", "x" * 10_000)
    assert long.returncode == 1 and "INVALID_ARGUMENT" in long.stderr, long.stderr
    forfeit = run("etcd", "forfeit-leadership")
    assert forfeit.returncode == 1 and "only etcd member" in forfeit.stderr, forfeit.stderr
    # negative control: nothing was removed
    assert _members_of(run) == {"cp-1"}


def test_two_control_planes_forfeit_leave_rejoin_remove(
    cluster: tuple[str, Path, Path],  # noqa: F811 - the fixture imported above
    capsys: pytest.CaptureFixture[str],
) -> None:
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
            "2",
            "--workers",
            "0",
            "--wait-timeout",
            "120",
        ]
    )
    masters = [f"{name}-master-1", f"{name}-master-2"]
    ips = ["10.5.0.2", "10.5.0.3"]
    consoles = [state_dir / name / m / "console.log" for m in masters]
    assert code == 0, capsys.readouterr().err + _consoles(state_dir / name, masters)

    def on(i: int) -> Any:
        return lambda *a: _api(name, talosconfig, *a, "--nodes", ips[i])

    def moves() -> int:
        return sum(c.read_text().count("etcd: leadership moved from") for c in consoles)

    _wait_members(on(0), set(masters), _consoles(state_dir / name, masters))

    # forfeit-leadership: the leader hands it over; a member that does not lead does nothing
    res = on(0)("etcd", "forfeit-leadership")
    assert res.returncode == 0, res.stderr
    if moves() == 0:  # master-1 did not lead: master-2 does
        res = on(1)("etcd", "forfeit-leadership")
        assert res.returncode == 0, res.stderr
    assert moves() == 1
    leader_now = 0 if f"moved from {masters[1]} to {masters[0]}" in consoles[1].read_text() else 1
    res = on(1 - leader_now)("etcd", "forfeit-leadership")  # not the leader any more
    assert res.returncode == 0 and moves() == 1, res.stderr

    # leave: master-2's member goes, its etcd stops and its data is removed
    res = on(1)("etcd", "leave")
    assert res.returncode == 0, res.stderr
    _wait_members(on(0), {masters[0]})
    assert "left the cluster" in consoles[1].read_text()
    gone = on(1)("etcd", "members")
    assert gone.returncode == 1 and "not running" in gone.stderr, gone.stderr
    alone = on(0)("etcd", "leave")
    assert alone.returncode == 1 and "only etcd member" in alone.stderr, alone.stderr

    # a reboot makes master-2 join again (it has no data); remove-member removes it for good
    res = on(1)("reboot")
    assert res.returncode == 0, res.stderr
    _wait_members(on(0), set(masters), _consoles(state_dir / name, masters))
    missing = on(0)("etcd", "remove-member", f"{name}-master-9")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr, missing.stderr
    assert _members_of(on(0)) == set(masters)  # negative control: nothing removed
    res = on(0)("etcd", "remove-member", masters[1])
    assert res.returncode == 0, res.stderr
    _wait_members(on(0), {masters[0]})

    assert main(["destroy", *args]) == 0
