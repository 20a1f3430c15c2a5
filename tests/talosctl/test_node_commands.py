"""talosctl's aliases and flags against a real API server: service ID [status], version
--short, kubeconfig --force-context-name, processes --watch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from talosctl.cli import main


@pytest.fixture
def talosctl(capsys: pytest.CaptureFixture[str]):
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_service_id_and_service_id_status_show_the_one_service(
    configured: Any, talosconfig_for: Any, talosctl: Any
):
    s, _node = configured()
    tc = str(talosconfig_for([s.endpoint], [s.endpoint]))
    code, bare, err = talosctl("--talosconfig", tc, "service", "etcd")
    assert code == 0, err
    code, status, err = talosctl("--talosconfig", tc, "service", "etcd", "status")
    assert code == 0, err
    assert "ID       etcd" in bare and "STATE    Running" in bare
    assert [line for line in status.splitlines() if "ago" not in line] == [
        line for line in bare.splitlines() if "ago" not in line
    ]
    assert "ID       apid" not in status  # the one service, not the list
    code, listing, err = talosctl("--talosconfig", tc, "service")
    assert code == 0, err
    assert listing.splitlines()[0].split()[:3] == ["NODE", "SERVICE", "STATE"]
    assert {"etcd", "apid"} <= {line.split()[1] for line in listing.splitlines()[1:]}
    code, _, err = talosctl("--talosconfig", tc, "service", "etcd", "frobnicate")
    assert code == 2 and "frobnicate" in err


def test_memory_aliases_and_version_short(configured: Any, talosconfig_for: Any, talosctl: Any):
    from talos_apply import __version__

    s, _node = configured()
    tc = str(talosconfig_for([s.endpoint], [s.endpoint]))
    for word in ("memory", "m", "free"):
        code, out, err = talosctl("--talosconfig", tc, word)
        assert code == 0, err
        assert out.splitlines()[0].split() == [
            "NODE",
            "TOTAL",
            "USED",
            "FREE",
            "SHARED",
            "BUFFERS",
            "CACHE",
            "AVAILABLE",
        ]
    code, out, err = talosctl("--talosconfig", tc, "version", "--short")
    assert code == 0, err
    assert out.startswith(f"Client:\nClient {__version__}\nServer:\n")
    assert "\tTag:" in out.split("Server:\n", 1)[1]  # the server's part stays long


def test_kubeconfig_force_context_name(
    configured: Any, talosconfig_for: Any, talosctl: Any, tmp_path: Path
):
    s, _node = configured("init")
    tc = str(talosconfig_for([s.endpoint], [s.endpoint]))
    out = tmp_path / "kube" / "config"
    code, _, err = talosctl(
        "--talosconfig", tc, "kubeconfig", str(out), "--force-context-name", "lab"
    )
    assert code == 0, err
    data = yaml.safe_load(out.read_text())
    assert [c["name"] for c in data["contexts"]] == ["lab"]
    assert data["current-context"] == "lab"
    assert data["contexts"][0]["context"]["user"] == "admin@demo"  # cluster and user keep names
    assert os.stat(out).st_mode & 0o777 == 0o600
    code, _, err = talosctl(
        "--talosconfig", tc, "kubeconfig", str(out), "--force-context-name", "lab"
    )
    assert code == 0, err
    data = yaml.safe_load(out.read_text())
    assert [c["name"] for c in data["contexts"]] == ["lab", "lab-1"]
    assert data["current-context"] == "lab-1"
    code, _, err = talosctl(
        "--talosconfig", tc, "kubeconfig", str(out), "--force-context-name", "lab", "--force"
    )
    assert code == 0, err
    data = yaml.safe_load(out.read_text())
    assert sorted(c["name"] for c in data["contexts"]) == ["lab", "lab-1"]
    assert data["current-context"] == "lab"
    code, _, err = talosctl(
        "--talosconfig", tc, "kubeconfig", str(out), "--force-context-name", " "
    )
    assert code == 2 and "--force-context-name" in err


def test_processes_watch_refreshes_until_interrupted(configured: Any, talosconfig_for: Any):
    """``processes -w`` in a subprocess: read until the table has been printed twice, then
    Ctrl-C (SIGINT): exit 130. The subprocess's timeout only bounds a hang."""
    s, _node = configured()
    tc = str(talosconfig_for([s.endpoint], [s.endpoint]))
    command = [sys.executable, "-m", "talosctl", "--talosconfig", tc, "p", "-w"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        headers = 0
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if line.startswith("NODE") and "COMMAND" in line:
                    headers += 1
                    if headers == 2:
                        break
            proc.send_signal(signal.SIGINT)
            _rest, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert headers == 2, err
    assert proc.returncode == 130, err
