"""``cluster create`` merges the admin kubeconfig into the user's, as talosctl does.

The target is ``$KUBECONFIG`` (its first entry) or ``~/.kube/config``; a clash is renamed, never
overwritten; the new context becomes current; ``--skip-kubeconfig`` leaves the file alone, and so
does a cluster whose nodes were not bootstrapped (maintenance mode, stand-in nodes).
``cluster destroy`` leaves the entries, as Talos's does. HOME and KUBECONFIG point into the
test's own directory: the real ``~/.kube/config`` is never read or written.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from talos_cluster.cli import main

from .conftest import Env, netns_list

pytestmark = pytest.mark.system

STAND_IN = "sh -c 'echo ready; exec sleep 600'"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("TALOSCONFIG", raising=False)
    return h


def _needs_etcd() -> None:
    if not Path("/usr/bin/etcd").exists():
        pytest.skip("/usr/bin/etcd is not installed (Debian package etcd-server)")


def _other(name: str) -> dict[str, object]:
    """A kubeconfig of someone else's, whose names clash with the new cluster's."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": "https://192.0.2.1:6443"}}],
        "users": [{"name": f"admin@{name}", "user": {"token": "not-a-secret"}}],
        "contexts": [
            {"name": f"admin@{name}", "context": {"cluster": name, "user": f"admin@{name}"}}
        ],
        "current-context": f"admin@{name}",
    }


def _entry(kube: dict[str, list[dict[str, object]]], key: str, name: str) -> dict[str, object]:
    found = [e for e in kube[key] if e["name"] == name]
    assert len(found) == 1, (key, name, kube[key])
    return found[0]


@pytest.mark.etcd
def test_create_merges_into_home_kubeconfig_destroy_leaves_it(
    env: Env, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs_etcd()
    target = home / ".kube" / "config"
    target.parent.mkdir(mode=0o700)
    target.write_text(yaml.safe_dump(_other(env.name)))
    assert main(env.create_args("--workers", "0", "--wait-timeout", "120")) == 0
    err = capsys.readouterr().err
    assert f"merged kubeconfig context admin@{env.name}-1 into {target}" in err
    assert f"renamed context 'admin@{env.name}' -> 'admin@{env.name}-1'" in err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    kube = yaml.safe_load(target.read_text())
    # the entries already there are kept as they were; the new ones are renamed beside them
    before = _other(env.name)
    for key in ("clusters", "users", "contexts"):
        assert before[key][0] in kube[key]  # type: ignore[index]
    assert kube["current-context"] == f"admin@{env.name}-1"
    ctx = _entry(kube, "contexts", f"admin@{env.name}-1")["context"]
    assert ctx["cluster"] == f"{env.name}-1" and ctx["user"] == f"admin@{env.name}-1"  # type: ignore[index]
    cluster = _entry(kube, "clusters", f"{env.name}-1")["cluster"]
    assert cluster["server"] == "https://10.5.0.2:6443"  # type: ignore[index]
    # the same credentials as the copy in the cluster's directory
    copy = yaml.safe_load((env.cluster_dir / "kubeconfig").read_text())
    assert _entry(kube, "users", f"admin@{env.name}-1")["user"] == copy["users"][0]["user"]
    merged = target.read_bytes()
    if shutil.which("kubectl"):  # kubectl reads the merged file (locally: no server is asked)
        view = subprocess.run(
            ["kubectl", "config", "view", "--minify", "-o", "json"],
            env={**os.environ, "KUBECONFIG": str(target)},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert view.returncode == 0, view.stderr
        shown = json.loads(view.stdout)
        assert shown["current-context"] == f"admin@{env.name}-1"
        assert shown["clusters"][0]["cluster"]["server"] == "https://10.5.0.2:6443"

    assert main(["destroy", *env.args()]) == 0
    assert not env.cluster_dir.exists()
    # Talos's destroy leaves the kubeconfig entries: so does ours
    assert target.read_bytes() == merged


@pytest.mark.etcd
def test_kubeconfig_env_first_entry_then_skip(
    env: Env, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs_etcd()
    first, second = home / "first" / "config", home / "second"
    second.write_text(yaml.safe_dump(_other("second")))
    monkeypatch.setenv("KUBECONFIG", f"{first}{os.pathsep}{second}")
    before_second = second.read_bytes()
    assert main(env.create_args("--workers", "0", "--wait-timeout", "120")) == 0
    kube = yaml.safe_load(first.read_text())
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700
    assert kube["current-context"] == f"admin@{env.name}"
    assert [c["cluster"]["server"] for c in kube["clusters"]] == ["https://10.5.0.2:6443"]
    assert second.read_bytes() == before_second
    assert not (home / ".kube").exists()
    assert main(["destroy", *env.args()]) == 0
    capsys.readouterr()

    # --skip-kubeconfig: the same cluster again, and the user's file is not touched
    merged = first.read_bytes()
    assert main(env.create_args("--workers", "0", "--skip-kubeconfig")) == 0
    err = capsys.readouterr().err
    assert "merged kubeconfig" not in err
    assert f"etcd on {env.name}-master-1: member" in err  # bootstrapped: a merge was due
    assert first.read_bytes() == merged
    assert not (env.cluster_dir / "kubeconfig").exists()
    assert main(["destroy", *env.args()]) == 0


def test_bad_kubeconfig_refused_before_anything_is_made(
    env: Env, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = home / ".kube" / "config"
    target.parent.mkdir()
    target.write_text("clusters: 5\n")
    assert main(env.create_args("--workers", "0")) == 1
    err = capsys.readouterr().err
    assert str(target) in err and "not a kubeconfig" in err
    assert not env.cluster_dir.exists()
    assert env.name not in netns_list()
    assert target.read_text() == "clusters: 5\n"


def test_no_merge_without_bootstrap(
    env: Env, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nodes in maintenance mode or stand-in nodes are not a cluster to reach: no merge."""
    assert main(env.create_args("--workers", "0", "--node-command", STAND_IN)) == 0
    assert main(["destroy", *env.args(), "--grace", "1"]) == 0
    assert main(env.create_args("--workers", "0", "--skip-injecting-config")) == 0
    assert main(["destroy", *env.args()]) == 0
    assert main(env.create_args("--workers", "0", "--no-wait")) == 0
    assert main(["destroy", *env.args()]) == 0
    assert "merged kubeconfig" not in capsys.readouterr().err
    assert not (home / ".kube").exists()


def test_default_path(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from talos_cluster.userkube import default_path

    assert default_path() == home / ".kube" / "config"
    monkeypatch.setenv("KUBECONFIG", "")
    assert default_path() == home / ".kube" / "config"
    monkeypatch.setenv("KUBECONFIG", f"{os.pathsep}~/a{os.pathsep}/b")
    assert default_path() == home / "a"
