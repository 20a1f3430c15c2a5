"""The file commands, mounts, edit and patch end to end: the installed talos-apply, run inside
the node's own network namespace, against a real talos-init PID 1 (container mode) whose root
is its own mount namespace's: ``/var`` is its EPHEMERAL (DIR/ephemeral on the host) and
``/system/state`` its STATE, and nothing of the host outside what the node's root shows."""

from __future__ import annotations

import gzip
import io
import shlex
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Material, api
from .test_node_api_methods import BOOT_DONE, MTLS

pytestmark = pytest.mark.system

CONFIG = "/system/state/config.yaml"
RENAME = r"""
import sys, yaml
path = sys.argv[-1]
text = open(path).read()
data = yaml.safe_load("".join(l for l in text.splitlines(True) if not l.startswith("#")))
data["cluster"]["clusterName"] = "edited-in-place"
open(path, "w").write(yaml.safe_dump(data))
"""


def _ok(res: Any) -> str:
    assert res.returncode == 0, res.stderr
    return str(res.stdout)


def test_node_files_mounts_edit_patch(
    start_node: Any, material: Material, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, state = start_node("--cmdline", "talos.hostname=cp-1", config=material.controlplane)
    node.expect(MTLS)
    node.seen(BOOT_DONE)
    tc = ["--talosconfig", str(material.talosconfig)]
    (state / "ephemeral" / "marker.txt").write_text("from EPHEMERAL\n")
    host_only = tmp_path / "host-only.txt"
    host_only.write_text("the host's file\n")

    # -- ls: the node's /var is its EPHEMERAL ----------------------------------------------
    names = [line.split()[-1] for line in _ok(api(node, *tc, "ls", "/var")).splitlines()[1:]]
    assert "marker.txt" in names, names
    long = _ok(api(node, *tc, "ls", "-l", "/system/state"))
    row = next(line for line in long.splitlines() if line.endswith(" config.yaml"))
    assert row.split()[:2] == ["127.0.0.1", "-rw-------"], row

    # -- read: the node's config file, logged; the host's files are not the node's ----------
    text = _ok(api(node, *tc, "read", CONFIG))
    assert yaml.safe_load(text) == yaml.safe_load(material.controlplane.read_text())
    node.seen(r"read of /system/state/config\.yaml by ")
    missing = api(node, *tc, "read", str(host_only))  # the node's /tmp is its own
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr, missing.stderr
    assert "the host's file" not in missing.stdout
    escape = api(node, *tc, "read", "/var/../../etc/passwd")
    assert escape.returncode == 1 and "INVALID_ARGUMENT" in escape.stderr, escape.stderr
    # the host's software, which a container node's root shares read-only, is not served:
    # not by its path, not through a top-level symlink, not by a walk of /
    for shared in ("/etc/passwd", "/usr/bin/python3", "/bin/sh"):
        refused = api(node, *tc, "read", shared)
        assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr, refused.stderr
    listed = _ok(api(node, *tc, "ls", "-r", "-d", "2", "/"))
    assert "passwd" not in listed and "state" in listed, listed

    # -- copy: a .tar.gz of /var -------------------------------------------------------------
    res = subprocess_bytes(node, *tc, "cp", "/var", "-")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(res))) as tar:
        member = tar.extractfile("marker.txt")
        assert member is not None and member.read() == b"from EPHEMERAL\n"
    out = tmp_path / "copied"
    _ok(api(node, *tc, "copy", "/var", str(out)))
    assert (out / "marker.txt").read_text() == "from EPHEMERAL\n"

    # -- usage and mounts ----------------------------------------------------------------
    rows = [line.split() for line in _ok(api(node, *tc, "du", "-a", "/var")).splitlines()]
    assert rows[0] == ["NODE", "SIZE", "NAME"] and ["127.0.0.1", "15", "marker.txt"] in rows
    mounted = {line.split()[-1] for line in _ok(api(node, *tc, "mounts")).splitlines()[1:]}
    assert {"/system/state", "/var", "/tmp"} <= mounted, mounted
    assert str(state) not in mounted  # the node's own view, not the host's

    # -- edit: a scripted editor renames the cluster; applied without a reboot ---------------
    script = tmp_path / "rename.py"
    script.write_text(RENAME)
    monkeypatch.setenv("TALOS_EDITOR", f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}")
    _ok(api(node, *tc, "edit", "machineconfig", "--immediate"))
    edited = yaml.safe_load(_ok(api(node, *tc, "read", CONFIG)))
    assert edited["cluster"]["clusterName"] == "edited-in-place"

    # -- patch: JSON 6902, then the same patch again changes nothing -------------------------
    op = '[{"op": "replace", "path": "/cluster/clusterName", "value": "patched"}]'
    out_text = _ok(api(node, *tc, "patch", "machineconfig", "-p", op, "--immediate"))
    assert "patched machineconfig at the node 127.0.0.1" in out_text, out_text
    patched = yaml.safe_load(_ok(api(node, *tc, "read", CONFIG)))
    assert patched["cluster"]["clusterName"] == "patched"
    again = _ok(api(node, *tc, "patch", "machineconfig", "-p", op))
    assert again == "Apply was skipped: no changes detected.\n"


def subprocess_bytes(node: Any, *args: str) -> bytes:
    """talos-apply in the node's network namespace, its stdout as bytes."""
    import subprocess

    from .conftest import TALOS_APPLY

    res = subprocess.run(
        ["nsenter", f"--net=/proc/{node.pid1}/ns/net", "--", TALOS_APPLY, *args],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout
