"""The installed console scripts against a server: stdin config, exit codes, stdout/stderr."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.pipeline


def test_apply_config_from_stdin(run_script, maintenance, cluster):
    s, node, cert = maintenance()
    res = run_script(
        "talos-apply",
        "apply-config",
        "--insecure",
        "--nodes",
        s.endpoint,
        "--cert-fingerprint",
        cert.fingerprint,
        "--file",
        "-",
        stdin=cluster.configs["init"],
    )
    assert res.returncode == 0, res.stderr
    assert node.accepted.get_nowait() == cluster.configs["init"]


def test_talosctl_version_json_and_failure_exit(run_script, configured, talosconfig_for):
    s, _node = configured()
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    res = run_script("talosctl", "version", "--talosconfig", str(tc), "-o", "json")
    assert res.returncode == 0, res.stderr
    (reply,) = json.loads(res.stdout)
    assert reply["metadata"]["hostname"] == s.endpoint and res.stderr == ""
    bad = run_script("talosctl", "version", "--talosconfig", str(tc), "-n", "127.0.0.1:1")
    assert bad.returncode == 1
    assert bad.stdout.startswith("Client:") and "127.0.0.1:1" in bad.stderr
