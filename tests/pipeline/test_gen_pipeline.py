"""Pipelines through the installed console scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent


pytestmark = pytest.mark.pipeline
ENDPOINT = "https://10.5.0.2:6443"


def test_pki_secrets_piped_into_gen_config(run_script):
    secrets = run_script("talos-pki", "secrets", check=True).stdout
    a = run_script(
        "talos-gen",
        "config",
        "demo",
        ENDPOINT,
        "--with-secrets",
        "-",
        "-o",
        "-",
        stdin=secrets,
        check=True,
    )
    b = run_script(
        "talos-gen",
        "config",
        "demo",
        ENDPOINT,
        "--with-secrets",
        "-",
        "-o",
        "-",
        stdin=secrets,
        check=True,
    )
    docs_a = list(yaml.safe_load_all(a.stdout))
    docs_b = list(yaml.safe_load_all(b.stdout))
    assert len(docs_a) == 4
    # the same secrets give the same CAs (and tokens); the admin client cert is new each time
    for i in range(3):
        assert docs_a[i]["cluster"]["ca"] == docs_b[i]["cluster"]["ca"]
        assert docs_a[i]["machine"]["token"] == docs_b[i]["machine"]["token"]
    assert docs_a[0]["machine"]["ca"] == docs_b[0]["machine"]["ca"]
    bundle = yaml.safe_load(secrets)
    assert docs_a[0]["cluster"]["etcd"]["ca"] == bundle["certs"]["etcd"]
    # and a fresh bundle gives other CAs (negative control)
    c = run_script("talos-gen", "config", "demo", ENDPOINT, "-o", "-", check=True)
    assert next(iter(yaml.safe_load_all(c.stdout)))["machine"]["ca"] != docs_a[0]["machine"]["ca"]


def test_gen_stream_through_patch_and_validate(run_script, tmp_path):
    stream = run_script("talos-gen", "config", "demo", ENDPOINT, "-o", "-", check=True).stdout
    patched = run_script(
        "talos-gen",
        "patch",
        "-p",
        '{"machine": {"install": {"disk": "/dev/vda"}}}',
        stdin=stream,
        check=True,
    ).stdout
    docs = list(yaml.safe_load_all(patched))
    assert [d.get("machine", {}).get("install", {}).get("disk") for d in docs[:3]] == [
        "/dev/vda"
    ] * 3
    assert docs[3] == list(yaml.safe_load_all(stream))[3]  # talosconfig passes through
    one = patched.split("\n---\n")[1]
    res = run_script("talos-gen", "validate", "--mode", "container", "-", stdin=one)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "<stdin> is valid for container mode\n"


def test_talosctl_front_end(run_script, tmp_path):
    res = run_script("talosctl", "gen", "secrets", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    res = run_script(
        "talosctl",
        "gen",
        "config",
        "demo",
        ENDPOINT,
        "--with-secrets",
        "secrets.yaml",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    for name in ("init.yaml", "controlplane.yaml", "join.yaml", "talosconfig"):
        assert (tmp_path / name).exists()
        assert (
            f"created {name}" in res.stderr
            or f"created ./{name}" in res.stderr
            or name in res.stderr
        )
    res = run_script(
        "talosctl", "validate", "--config", "join.yaml", "--mode", "container", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert "join.yaml is valid for container mode" in res.stdout
    res = run_script("talosctl", "gen", "config", "demo", ENDPOINT, cwd=tmp_path)
    assert res.returncode == 1 and "file exists" in res.stderr
    res = run_script("talosctl", "frobnicate")
    assert res.returncode == 2


def test_read_only_output_dir_leaves_nothing(tmp_path):
    """As root, permissions do not stop writes: make the directory a read-only bind mount."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is required")
    out = tmp_path / "ro"
    out.mkdir()
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace: {probe.stderr.decode().strip()}")
    cmd = f"mount --bind {out} {out} && mount -o remount,bind,ro {out} && exec {BIN / 'talos-gen'} config demo {ENDPOINT} -o {out}"
    res = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1, res.stderr
    assert "Read-only file system" in res.stderr
    assert os.listdir(out) == []


def test_gen_config_help_and_version(run_script):
    res = run_script("talos-gen", "config", "--help")
    assert res.returncode == 0
    assert "--with-secrets" in res.stdout and "--config-patch-worker" in res.stdout
    assert run_script("talos-gen", "--version").stdout.startswith("talos-gen ")


def test_full_disk_leaves_nothing_partial(tmp_path):
    """A 16 KiB tmpfs fills up during gen config: exit 1, a clear message, no file at all."""
    out = tmp_path / "full"
    out.mkdir()
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace: {probe.stderr.decode().strip()}")
    cmd = (
        f"mount -t tmpfs -o size=16k tmpfs {out} && "
        f"{BIN / 'talos-gen'} config demo {ENDPOINT} -o {out}; rc=$?; "
        f"ls -A {out}; exit $rc"
    )
    res = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1, res.stderr
    assert "No space left on device" in res.stderr
    assert res.stdout.split() == []  # all or nothing: no config, no temp file left behind
