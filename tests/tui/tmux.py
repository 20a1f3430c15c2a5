"""A tmux session driving a full-screen command, read with ``capture-pane`` (plain text, no
attributes): the installer's tests (tests/tui/test_installer.py against a container-mode node,
tests/image/test_interactive_install.py against a VM booted from the ISO) use it.

The command runs under the default tmux server, which may have been started outside the pytest
session's network namespace: a command that dials a node names its namespace itself (``nsenter
--net=...``).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

BOUND = 60.0  # fails a stuck screen; nothing is timed
# TALOS_TUI_CAPTURES=DIR keeps a text capture of each screen (the ones in docs/tui.md)
CAPTURES = os.environ.get("TALOS_TUI_CAPTURES")


class Tmux:
    """One detached tmux session running a command; the screen is read with capture-pane."""

    def __init__(self, command: str, cwd: Path, width: int = 100, height: int = 40) -> None:
        self.name = f"tui-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-x",
                str(width),
                "-y",
                str(height),
                "-s",
                self.name,
                "-c",
                str(cwd),
                command,
            ],
            check=True,
            env={**os.environ, "TERM": "xterm-256color"},
        )

    def screen(self) -> str:
        res = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=False,
        )
        return res.stdout

    def wait_for(self, text: str, bound: float = BOUND) -> str:
        """The screen once it shows ``text`` (polled; the bound only fails a stuck screen)."""
        deadline = time.monotonic() + bound
        while True:
            shown = self.screen()
            if text in shown:
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen:\n{shown}")
            time.sleep(0.1)

    def wait_gone(self, text: str, bound: float = BOUND) -> str:
        deadline = time.monotonic() + bound
        while True:
            shown = self.screen()
            if text not in shown:
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} stayed; the screen:\n{shown}")
            time.sleep(0.1)

    def wait_row(self, label: str, ok: Callable[[str], bool], bound: float = BOUND) -> str:
        """The screen line holding ``label`` once ``ok`` accepts it."""
        deadline = time.monotonic() + bound
        while True:
            shown = self.screen()
            rows = [ln for ln in shown.splitlines() if label in ln]
            if rows and ok(rows[0]):
                return rows[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"the {label!r} row never passed; the screen:\n{shown}")
            time.sleep(0.1)

    def snap(self, name: str) -> None:
        if CAPTURES:
            lines = [ln.rstrip() for ln in self.screen().splitlines()]
            Path(CAPTURES, f"{name}.txt").write_text("\n".join(lines).rstrip() + "\n")

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)

    def alive(self) -> bool:
        return (
            subprocess.run(
                ["tmux", "has-session", "-t", self.name], capture_output=True, check=False
            ).returncode
            == 0
        )

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True, check=False)
