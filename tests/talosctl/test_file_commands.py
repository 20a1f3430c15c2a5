"""talosctl's file and mount words (list/ls, read, copy/cp, usage/du, mounts/mount, edit,
patch) reach talos-apply's commands, against a real API server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from talos_init.api.files import FileAccess
from talosctl.cli import main


def test_file_words_and_aliases(
    configured: Any, talosconfig_for: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s, node = configured()
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/motd").write_text("hello\n")
    (root / "proc").symlink_to("/proc")
    node.file_access = lambda: FileAccess(str(root), lambda _line: None)
    tc = str(talosconfig_for([s.endpoint], [s.endpoint]))
    for words in (["list", "/etc"], ["ls", "/etc"]):
        assert main(["--talosconfig", tc, *words]) == 0
        assert "motd" in capsys.readouterr().out
    assert main(["--talosconfig", tc, "read", "/etc/motd"]) == 0
    assert capsys.readouterr().out == "hello\n"
    for word in ("usage", "du"):
        assert main(["--talosconfig", tc, word, "/etc"]) == 0
        assert capsys.readouterr().out.splitlines()[0].split() == ["NODE", "SIZE", "NAME"]
    for word in ("mounts", "mount"):
        assert main(["--talosconfig", tc, word]) == 0
        assert "MOUNTED ON" in capsys.readouterr().out
    for word in ("copy", "cp"):
        dest = tmp_path / word
        assert main(["--talosconfig", tc, word, "/etc", str(dest)]) == 0
        assert (dest / "motd").read_text() == "hello\n"
    assert main(["--talosconfig", tc, "edit", "pods"]) == 2
    assert main(["--talosconfig", tc, "patch", "pods", "-p", "[]"]) == 2
    assert "only the machineconfig resource" in capsys.readouterr().err
