"""talosctl accepts its global flags before the command words, as the Talos docs write them."""

from __future__ import annotations

import pytest

from libtalos import talosconfig
from talosctl.cli import resolve

pytestmark = pytest.mark.pipeline


def test_global_flags_before_the_command_are_moved_after_it():
    route, argv = resolve(
        ["--talosconfig=./tc", "-n", "10.5.0.2", "config", "endpoint", "10.5.0.2"]
    )
    assert route.module == "talos_apply.cli"
    assert argv == ["config", "endpoint", "10.5.0.2", "--talosconfig=./tc", "-n", "10.5.0.2"]
    assert resolve(["--frobnicate", "config"]) is None  # only talosctl's globals are hoisted


def test_seed_line_config_endpoint(run_script, tmp_path):
    gen = run_script("talosctl", "gen", "config", "demo", "https://10.5.0.2:6443", cwd=tmp_path)
    assert gen.returncode == 0, gen.stderr
    res = run_script(
        "talosctl",
        "--talosconfig=./talosconfig",
        "config",
        "endpoint",
        "10.5.0.2",
        "10.5.0.3",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    cfg = talosconfig.load(tmp_path / "talosconfig")
    assert cfg.contexts["demo"].endpoints == ["10.5.0.2", "10.5.0.3"]
    assert (tmp_path / "talosconfig").stat().st_mode & 0o777 == 0o600
