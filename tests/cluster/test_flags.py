"""Bad command lines: exit 2, a message naming the flag and its value, and nothing created.

"Nothing" is checked three ways: no state directory (not even the ``--state-dir`` above it), no
talosconfig written, and the host's list of network namespaces unchanged. Every create here runs
under a name of its own with a stand-in PID 1 and ``--no-wait``, so that a flag let through by
mistake makes a small cluster that the fixture removes, instead of a real one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from talos_cluster.cli import main

from .conftest import netns_list, processes_mentioning

_counter = itertools.count(1)


@dataclass
class Guard:
    name: str
    state: Path
    talosconfig: Path

    def create(self, *args: str) -> int:
        return main(
            [
                "create",
                "--name",
                self.name,
                "--state-dir",
                str(self.state),
                "--talosconfig",
                str(self.talosconfig),
                "--node-command",
                "sleep 600",
                "--no-wait",
                *args,
            ]
        )


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[Guard]:
    g = Guard(f"tg{os.getpid() % 100000}x{next(_counter)}", tmp_path / "clusters", tmp_path / "tc")
    before = netns_list()
    try:
        yield g
    finally:
        # what a create that should have been refused made, removed (the test fails anyway)
        from talos_cluster import state
        from talos_cluster.commands.destroy import destroy_record

        with contextlib.suppress(Exception):
            record = state.load(g.state / g.name)
            if record is not None:
                destroy_record(record, grace=1)
        for pid in processes_mentioning(str(g.state)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for ns in netns_list() - before:
            if ns == g.name or ns.startswith(f"{g.name}-"):
                subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def _nothing_made(g: Guard, netns_before: set[str]) -> None:
    assert not g.state.exists(), "a state directory was made"
    assert not g.talosconfig.exists(), "a talosconfig was written"
    assert netns_list() == netns_before, "network namespaces were made"


BAD_FLAGS = [
    (["--cidr", "10.5.0.0/33"], "--cidr: '10.5.0.0/33' is not a network"),
    (["--cidr", "nonsense"], "--cidr: 'nonsense' is not a network"),
    (["--cidr", "fd00::/64"], "--cidr: fd00::/64: only IPv4"),
    (["--cidr", "127.0.0.0/24"], "--cidr: 127.0.0.0/24: loopback"),
    (["--cidr", "224.0.0.0/24"], "--cidr: 224.0.0.0/24: multicast"),
    (["--cidr", "240.0.0.0/24"], "--cidr: 240.0.0.0/24: reserved"),
    (["--cidr", "0.0.0.0/24"], "--cidr: 0.0.0.0/24: 'this network'"),
    (["--cidr", "10.5.0.0/30", "--workers", "1"], "--cidr: 10.5.0.0/30 has room for 1 nodes, 2"),
    (["--masters", "0"], "--masters: 0: a cluster needs at least one"),
    (["--controlplanes", "-1"], "--masters: -1: a cluster needs at least one"),
    (["--workers", "-1"], "--workers: -1: must not be negative"),
    (["--workers", "999", "--cidr", "10.0.0.0/8"], "--masters/--workers: 1000 nodes, at most 999"),
    (["--name", "Bad_Name"], "--name: 'Bad_Name' is not a valid cluster name"),
    (["--name", "x" * 41], f"--name: '{'x' * 41}' is not a valid cluster name"),
    (["--name", ""], "--name: '' is not a valid cluster name"),
    (["--cpus", "nan"], "--cpus: nan: not a finite number of CPUs"),
    (["--cpus", "inf"], "--cpus: inf: not a finite number of CPUs"),
    (["--cpus", "1e400"], "--cpus: inf: not a finite number of CPUs"),
    (["--cpus", "-1"], "--cpus: -1: must be greater than zero"),
    (["--cpus", "0"], "--cpus: 0: must be greater than zero"),
    (["--cpus", "0.001"], "--cpus: 0.001: must be from 0.01 to 1024 CPUs"),
    (["--cpus", "5000"], "--cpus: 5000: must be from 0.01 to 1024 CPUs"),
    (["--cpus-workers", "nan"], "--cpus-workers: nan: not a finite number of CPUs"),
    (["--cpus-workers", "0"], "--cpus-workers: 0: must be greater than zero"),
    (["--memory", "0"], "--memory: 0: must be greater than zero"),
    (["--memory", "-5"], "--memory: -5: must be greater than zero"),
    (["--memory", str(1 << 31)], f"--memory: {1 << 31}: at most {1 << 30} MiB"),
    (["--memory-workers", "0"], "--memory-workers: 0: must be greater than zero"),
    (["--wait-timeout", "soon"], "--wait-timeout: 'soon' is not a duration"),
    (["--wait-timeout", "0"], "--wait-timeout: '0': must be greater than zero"),
    (["--wait-timeout", "-5"], "--wait-timeout: '-5': must be greater than zero"),
    (["--wait-timeout", "nan"], "--wait-timeout: 'nan' is not a duration"),
    (["--wait-timeout", "inf"], "--wait-timeout: 'inf' is not a duration"),
    (["--wait-timeout", "99999999999999999h"], "'99999999999999999h' is not a duration"),
    (["--wait-timeout", "800h"], "--wait-timeout: '800h': at most 30 days"),
    (["--kubernetes-version", "1.2"], "--kubernetes-version: '1.2' is not a Kubernetes version"),
    (["--kubernetes-version", "latest"], "--kubernetes-version: 'latest' is not"),
    (["--kubernetes-version", "1.20.0;x"], "--kubernetes-version: '1.20.0;x' is not"),
    (["--kubernetes-version", ""], "--kubernetes-version: '' is not"),
    (["--skip-injecting-config", "--with-apply-config"], "exclude each other"),
    (["--node-command", ""], "--node-command: empty"),
    (["--node-command", "sh -c 'echo"], '--node-command: "sh -c \'echo": No closing quotation'),
    (["--node-command", "/nonexistent/node"], "--node-command: '/nonexistent/node' is not an"),
    (["--cpus", "abc"], "'abc' is not a valid float"),
    (["--bogus"], "No such option"),
]


def test_node_command_not_executable(guard: Guard, capsys: pytest.CaptureFixture[str]) -> None:
    script = guard.state.parent / "node.sh"
    script.write_text("#!/bin/sh\necho ready\nexec sleep 600\n")
    script.chmod(0o644)
    before = netns_list()
    assert guard.create("--node-command", str(script)) == 2
    assert f"--node-command: '{script}' is not an executable file" in capsys.readouterr().err
    _nothing_made(guard, before)


@pytest.mark.parametrize(("args", "message"), BAD_FLAGS)
def test_bad_create_flags(
    guard: Guard, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = netns_list()
    assert guard.create(*args) == 2
    assert message in capsys.readouterr().err
    _nothing_made(guard, before)


def test_good_flags_are_accepted(tmp_path: Path) -> None:
    """Negative control for the bounds: the edge values pass the checks."""
    from talos_cluster.options import check_kubernetes_version
    from talos_cluster.plan import make_plan, parse_duration

    p = make_plan(
        name="a",
        cidr="10.0.0.0/8",
        masters=1,
        workers=998,
        cpus=0.01,
        memory_mib=1 << 30,
        cpus_workers=1024,
        memory_workers_mib=1,
    )
    assert len(p.nodes) == 999
    assert parse_duration("720h", "--wait-timeout") == 30 * 86400
    for version in ("1.20.4", "v1.20.4", "1.21.0-rc.0"):
        check_kubernetes_version(version)


@pytest.mark.parametrize("where", ["file", "below-file"])
def test_state_dir_that_cannot_be_one(
    guard: Guard, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    guard.state.parent.mkdir(parents=True, exist_ok=True)
    blocker = guard.state.parent / "blocker"
    blocker.write_text("a file\n")
    guard.state = blocker if where == "file" else blocker / "clusters"
    before = netns_list()
    assert guard.create() == 2
    err = capsys.readouterr().err
    if where == "file":
        assert f"--state-dir: {blocker}: not a directory" in err
    else:
        assert f"--state-dir: {blocker / 'clusters'}: {blocker} is not a directory" in err
    assert blocker.read_text() == "a file\n"
    assert netns_list() == before and not guard.talosconfig.exists()


@pytest.mark.parametrize("where", ["directory", "below-file"])
def test_talosconfig_that_cannot_be_one(
    guard: Guard, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    if where == "directory":
        guard.talosconfig.mkdir(parents=True)
        expected = f"--talosconfig: {guard.talosconfig}: is a directory"
    else:
        guard.talosconfig.parent.mkdir(parents=True, exist_ok=True)
        (guard.talosconfig.parent / "f").write_text("")
        guard.talosconfig = guard.talosconfig.parent / "f" / "talosconfig"
        expected = f"{guard.talosconfig}: {guard.talosconfig.parent} is not a directory"
    before = netns_list()
    assert guard.create() == 2
    assert expected in capsys.readouterr().err
    assert not guard.state.exists() and netns_list() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config-patch", "a: [\n"], "--config-patch:"),
        # well-formed, but it does not apply: patches are applied before anything is made
        (["--config-patch", '[{"op": "remove", "path": "/machine/nonexistent"}]'], "nonexistent"),
        (["--config-patch-worker", "@/nonexistent/patch.yaml"], "/nonexistent/patch.yaml"),
    ],
)
def test_bad_patch_fails_before_anything_is_made(
    guard: Guard, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = netns_list()
    assert guard.create(*args) == 1
    assert message in capsys.readouterr().err
    _nothing_made(guard, before)


def test_unusable_talosconfig_fails_before_anything_is_made(
    guard: Guard, capsys: pytest.CaptureFixture[str]
) -> None:
    guard.talosconfig.parent.mkdir(parents=True, exist_ok=True)
    guard.talosconfig.write_bytes(b"\x00\xff binary")
    before = netns_list()
    assert guard.create() == 1
    assert f"{guard.talosconfig}: not a text file" in capsys.readouterr().err
    assert guard.talosconfig.read_bytes() == b"\x00\xff binary"
    assert not guard.state.exists() and netns_list() == before


@pytest.mark.parametrize(
    ("value", "message"), [("nan", "--grace: nan"), ("-1", "--grace: -1"), ("inf", "--grace: inf")]
)
def test_bad_grace_for_destroy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    assert main(["destroy", "--name", "c1", "--state-dir", str(tmp_path), "--grace", value]) == 2
    assert message in capsys.readouterr().err


def test_bad_name_for_destroy_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["destroy", "--name", "../etc", "--state-dir", str(tmp_path)]) == 2
    assert main(["show", "--name", "A", "--state-dir", str(tmp_path)]) == 2
    assert "not a valid cluster name" in capsys.readouterr().err


def test_destroy_of_nothing_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["destroy", "--name", "none", "--state-dir", str(tmp_path)]) == 0
    assert "nothing to destroy" in capsys.readouterr().err


def test_corrupt_record_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "cluster.yaml").write_text("kind: Something\n")
    assert main(["destroy", "--name", "c1", "--state-dir", str(tmp_path)]) == 1
    assert "not a talos-cluster record" in capsys.readouterr().err


def test_version_and_help() -> None:
    assert main(["--version"]) == 0
    assert main(["--help"]) == 0


def test_version_with_other_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """Not the fast path (``--version`` alone): the app's own option answers, before the
    command runs."""
    from talos_cluster import __version__

    assert main(["--version", "create", "--bogus"]) == 0
    assert capsys.readouterr().out == f"talos-cluster {__version__}\n"


def _record(cdir: Path, **fields: object) -> Path:
    """A cluster record in ``cdir`` with ``fields`` replaced (written as destroy reads it)."""
    from dataclasses import asdict

    from talos_cluster import state

    from libtalos import yamlio

    rec = state.ClusterRecord(name=cdir.name, cidr="10.5.0.0/24", dir=str(cdir), netns=cdir.name)
    data = {"apiVersion": "v1alpha1", "kind": state.KIND, **asdict(rec), **fields}
    cdir.mkdir(parents=True, exist_ok=True)
    path = cdir / state.STATE_FILE
    path.write_text(yamlio.dump(data))
    return path


@pytest.mark.parametrize("how", ["absolute", "relative", "symlink-in-state-dir", "parent"])
def test_destroy_refuses_a_record_naming_a_directory_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    root = tmp_path / "clusters"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("must survive\n")
    cdir = root / "c1"
    named = {
        "absolute": str(outside),
        "relative": "../outside",
        "symlink-in-state-dir": str(root / "link"),
        "parent": str(root),
    }[how]
    record = _record(cdir, dir=named)
    root.joinpath("link").symlink_to(outside)
    assert main(["destroy", "--name", "c1", "--state-dir", str(root)]) == 1
    err = capsys.readouterr().err
    assert f"{record}: the record names the directory {named}" in err
    assert "refusing to remove it" in err
    assert (outside / "keep.txt").read_text() == "must survive\n"
    assert record.exists()  # nothing removed: the record is kept for the user to look at


def test_destroy_refuses_a_cluster_directory_that_is_a_symlink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "clusters"
    outside = tmp_path / "outside"
    root.mkdir()
    (root / "c1").symlink_to(outside)
    record = _record(outside, name="c1", netns="c1", dir=str(root / "c1"))
    (outside / "keep.txt").write_text("must survive\n")
    assert main(["destroy", "--name", "c1", "--state-dir", str(root)]) == 1
    err = capsys.readouterr().err
    assert f"the cluster directory resolves to {outside}, outside the state directory" in err
    assert (outside / "keep.txt").exists() and record.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"namespaces": ["c1", "other"]}, "network namespace 'other' is not cluster c1's"),
        ({"namespaces": ["c1-master-x"]}, "network namespace 'c1-master-x' is not"),
        ({"netns": "other"}, "netns 'other' is not cluster c1's"),
        ({"cgroup_roots": ["/sys/fs/cgroup/cpu/system.slice"]}, "cgroup /sys/fs/cgroup/cpu/sys"),
        ({"cgroup_roots": ["/sys/fs/cgroup/talos-cluster/c2"]}, "is not cluster c1's"),
        ({"cgroup_roots": ["/sys/fs/cgroup/talos-cluster/c1/../../x"]}, "is not cluster c1's"),
        ({"cgroup_roots": ["/tmp/talos-cluster/c1"]}, "cgroup /tmp/talos-cluster/c1 is not"),
    ],
)
def test_destroy_refuses_a_record_naming_what_is_not_the_clusters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fields: dict[str, object], message: str
) -> None:
    record = _record(tmp_path / "c1", **fields)
    assert main(["destroy", "--name", "c1", "--state-dir", str(tmp_path)]) == 1
    assert message in capsys.readouterr().err
    assert record.exists()


def test_destroy_of_a_record_of_its_own_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Negative control: the same records with the cluster's own names are destroyed."""
    root = tmp_path / "clusters"
    root.mkdir()
    (tmp_path / "real").mkdir()
    (root / "link").symlink_to(tmp_path / "real")  # a state directory reached by a symlink
    cdir = root / "link" / "c1"
    _record(cdir, cgroup_roots=["/sys/fs/cgroup/talos-cluster/c1-nonexistent-test-group"])
    assert main(["destroy", "--name", "c1", "--state-dir", str(root / "link")]) == 1
    assert "is not cluster c1's" in capsys.readouterr().err
    _record(cdir, cgroup_roots=["/sys/fs/cgroup/cpu/talos-cluster/c1"])  # not made: skipped
    (cdir / "node").mkdir()
    (cdir / "node" / "console.log").write_text("x\n")
    assert main(["destroy", "--name", "c1", "--state-dir", str(root / "link")]) == 0
    assert not cdir.exists() and (tmp_path / "real").is_dir()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"\xff\xfe\x80binary",
            "not a talos-cluster record: not UTF-8 text (bad byte at offset 0)",
        ),
        (b"\x7fELF\x02\x01\x01\x00\x00", "not a talos-cluster record: not a text file"),
        (b"kind: [\n", "not a talos-cluster record: line 2: malformed YAML"),
    ],
)
def test_show_of_an_unreadable_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    (tmp_path / "c1").mkdir()
    path = tmp_path / "c1" / "cluster.yaml"
    path.write_bytes(content)
    for command in ("show", "destroy"):
        assert main([command, "--name", "c1", "--state-dir", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert f"error: {path}: {message}" in err, err
        assert "internal error" not in err
    assert path.read_bytes() == content
