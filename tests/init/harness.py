"""Helpers for running talos-init as a real PID 1 under `unshare`, black-box.

A node's console (stderr) is read line by line in a thread; tests wait for lines (handshakes),
never for time. Helper services print "ready pid N" (and each signal they get); the node copies
their output to the console with --echo-services.
"""

from __future__ import annotations

import copy
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

HELPERS = Path(__file__).parent / "helpers"
PYTHON = sys.executable
TALOS_INIT = str(Path(sys.executable).parent / "talos-init")
UNSHARE_NODE = ("unshare", "--pid", "--fork", "--mount-proc", "--uts", "--net")
WAIT = 60.0  # bound on any one handshake, so a broken node fails the test instead of hanging it

_BASE: dict[str, dict[str, Any]] = {}


def base_config(kind: str) -> dict[str, Any]:
    """A generated v1alpha1 config (``init``, ``controlplane`` or ``join``) as data, made once."""
    if not _BASE:
        from libtalos.config import GenerateInput, generate, to_data
        from libtalos.pki import generate_secrets

        configs = generate(GenerateInput("test", "https://10.5.0.2:6443"), generate_secrets())
        _BASE.update({k: to_data(v) for k, v in configs.items()})
    return copy.deepcopy(_BASE[kind])


def probe_pid_namespace() -> str | None:
    """Why a PID-1 test cannot run here, or None."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if os.geteuid() != 0:
        return "PID/mount namespaces need root (CAP_SYS_ADMIN)"
    probe = subprocess.run(
        [*UNSHARE_NODE, "true"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        return f"unshare --pid --fork --mount-proc --uts --net failed: {probe.stderr.strip()}"
    return None


class NodeRun:
    """One talos-init process (under unshare) and its console transcript."""

    def __init__(self, argv: Sequence[str], wrap: Sequence[str] = UNSHARE_NODE) -> None:
        self.argv = [*wrap, *argv]
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cursor = 0
        self._pid1: int | None = None
        self.wrapped = bool(wrap)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for raw in self.proc.stdout:
                self._queue.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._queue.put(None)

    def _pull(self, timeout: float) -> bool:
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            return False
        if line is None:
            self._queue.put(None)  # keep reporting EOF
            return False
        self.lines.append(line)
        return True

    def transcript(self) -> str:
        return "\n".join(self.lines[-80:])

    def expect(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """Wait for the next console line matching ``pattern`` (after the last match)."""
        rx = re.compile(pattern)
        while True:
            while self._cursor < len(self.lines):
                line = self.lines[self._cursor]
                self._cursor += 1
                m = rx.search(line)
                if m:
                    return m
            if not self._pull(timeout):
                raise AssertionError(f"no line matching {pattern!r}; console:\n{self.transcript()}")

    def seen(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """Wait until any console line so far matches ``pattern`` (order-free; cursor unchanged)."""
        rx = re.compile(pattern)
        checked = 0
        while True:
            for line in self.lines[checked:]:
                m = rx.search(line)
                if m:
                    return m
            checked = len(self.lines)
            if not self._pull(timeout):
                raise AssertionError(f"no line matching {pattern!r}; console:\n{self.transcript()}")

    def drain(self, timeout: float = WAIT) -> list[str]:
        """Read the console to its end (the node has exited)."""
        while self._pull(timeout):
            pass
        return self.lines

    def matching(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        return [line for line in self.lines if rx.search(line)]

    @property
    def pid1(self) -> int:
        """Host pid of the node's PID 1: the talos-init below us that is pid 1 in its namespace."""
        if self._pid1 is None:
            if not self.wrapped:
                self._pid1 = self.proc.pid
            else:
                self._pid1 = _find_pid1(self.proc.pid)
        return self._pid1

    def signal(self, signum: int) -> None:
        os.kill(self.pid1, signum)

    def wait(self, timeout: float = WAIT) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the node did not exit within {timeout:g}s\n{self._where()}\n"
                f"console:\n{self.transcript()}"
            ) from None
        self.drain(5)
        return code

    def _where(self) -> str:
        """What PID 1's threads are doing (kernel side), for a failure message."""
        out = []
        try:
            for task in sorted(Path(f"/proc/{self.pid1}/task").iterdir()):
                comm = (task / "comm").read_text().strip()
                wchan = (task / "wchan").read_text().strip()
                syscall = (task / "syscall").read_text().split()[0]
                out.append(f"thread {task.name} {comm}: wchan {wchan}, syscall {syscall}")
            kids = Path(f"/proc/{self.pid1}/task/{self.pid1}/children").read_text().split()
            out.append(f"children: {kids}")
        except (OSError, AssertionError) as exc:
            out.append(f"(cannot inspect PID 1: {exc})")
        return "\n".join(out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.pid1, signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                self.proc.kill()
            self.proc.wait(timeout=WAIT)
        self.drain(5)


def _find_pid1(root: int) -> int:
    todo = [root]
    while todo:
        pid = todo.pop(0)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            continue
        nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
        if pid != root and nspid.split()[-1] == "1":
            return pid
        todo += [int(c) for c in children]
    raise AssertionError(f"no PID 1 below {root}")


def write_service(directory: Path, name: str, **fields: Any) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **fields}, sort_keys=False))
    return path


def helper(name: str) -> str:
    return str(HELPERS / name)


def write_config(
    path: Path, machine_type: str = "init", hostname: str = "node-1", **machine: Any
) -> Path:
    """A complete generated config with ``hostname`` and extra ``machine`` keys, written out."""
    from libtalos.yamlio import dump

    data = base_config(machine_type)
    network = machine.pop("network", {})
    data["machine"]["network"] = {"hostname": hostname, **network}
    data["machine"].update(machine)
    path.write_text(dump(data))
    return path
