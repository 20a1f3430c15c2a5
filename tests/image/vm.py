"""A QEMU guest of the image tests: its console in a file, waits on console lines, its exit.

Shared by the install and upgrade tests (tests/image/test_install.py, test_upgrade.py): QEMU
under TCG, one vCPU, 1 GiB, ``-no-reboot`` (a reboot ends QEMU, and the test starts the next
boot itself), the NIC of tests/image/netlab.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .netlab import Nic, missing

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
BIN = Path(sys.executable).parent
TALOSCTL = str(BIN / "talosctl")
TALOS_GEN = str(BIN / "talos-gen")
BOOT_TIMEOUT = 600.0
ENV_HEADER = b"# GRUB Environment Block\n"
BOOT_SECONDS: dict[str, float] = {}
"""Seconds from QEMU's start to the reboot (install) or to the configured node, per boot."""


class Guest:
    def __init__(self, name: str, work: Path, nic: Nic, machine: list[str]) -> None:
        self.name = name
        self.serial = work / f"{name}.serial"
        cmd = [
            QEMU,
            "-nodefaults",
            "-nographic",
            "-monitor",
            "none",
            "-no-reboot",
            "-accel",
            "tcg,tb-size=64",
            "-smp",
            "1",
            "-m",
            "1024",
            "-serial",
            f"file:{self.serial}",
            *nic.qemu_args(),
            *machine,
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.started = time.monotonic()
        self._err: str | None = None

    def text(self) -> str:
        raw = self.serial.read_bytes() if self.serial.exists() else b""
        return raw.decode("utf-8", "replace")

    def stop(self) -> str:
        """Kill QEMU (once); its stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        if self._err is None:
            _, err = self.proc.communicate()
            self._err = err.decode("utf-8", "replace")
        return self._err

    def fail(self, what: str) -> None:
        err = self.stop()
        pytest.fail(
            f"{self.name}: {what}\n--- console (end) ---\n{self.text()[-8000:]}"
            f"\n--- qemu ---\n{err[-2000:]}"
        )

    def wait(self, pattern: str, timeout: float, key: str = "") -> re.Match[str]:
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = regex.search(self.text())
            if match is not None:
                if key:
                    BOOT_SECONDS[f"{self.name} {key}"] = round(time.monotonic() - self.started, 1)
                return match
            if self.proc.poll() is not None:
                self.fail(f"QEMU exited before {pattern!r}")
            time.sleep(0.25)
        self.fail(f"no match for {pattern!r} within {timeout:.0f} s")
        raise AssertionError  # pragma: no cover - fail() raised

    def wait_exit(self, timeout: float, key: str) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"still running after {timeout:.0f} s")
        BOOT_SECONDS[f"{self.name} {key}"] = round(time.monotonic() - self.started, 1)


def version(talosconfig: Path, g: Guest, address: str) -> dict[str, str]:
    done = subprocess.run(
        [TALOSCTL, "--talosconfig", str(talosconfig), "version", "-e", address, "-n", address],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        g.fail(f"talosctl version: {done.stdout}{done.stderr}")
    server = done.stdout.split("Server:", 1)[1]
    return dict(re.findall(r"^\s*(Tag|SHA):\s*(\S*)\s*$", server, re.M))


def grubenv(disk: Path, work: Path) -> list[str]:
    """``grub-editenv list`` of the environment block on BOOT, read from the stopped disk."""
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(disk)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    (boot,) = [p for p in table["partitions"] if p.get("name") == "BOOT"]
    with disk.open("rb") as fh:
        fh.seek(int(boot["start"]) * 512)
        data = fh.read(int(boot["size"]) * 512)
    at = data.find(ENV_HEADER)
    assert at >= 0 and data.find(ENV_HEADER, at + 1) < 0, "one grubenv on BOOT"
    block = work / "grubenv"
    block.write_bytes(data[at : at + 1024])
    return subprocess.run(
        ["grub-editenv", str(block), "list"], capture_output=True, text=True, check=True
    ).stdout.splitlines()


CONFIGURED = r"^\[talos\] boot sequence: done"
API = r"^\[talos\] machine API listening on :50000 \(mutual TLS\)"


def configured(g: Guest) -> None:
    g.wait(CONFIGURED, BOOT_TIMEOUT, key="configured")
    g.wait(API, BOOT_TIMEOUT)


def uefi_args(vars_copy: Path) -> list[str]:
    """OVMF (UEFI) with its variable store in ``vars_copy`` (a copy the guest may write)."""
    return [
        "-machine",
        "q35",
        "-drive",
        f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
        "-drive",
        f"if=pflash,format=raw,file={vars_copy}",
    ]


def skip_without_tools(*tools: tuple[str, str]) -> None:
    """Skip, naming what is missing: QEMU, OVMF, the test network's tools, GRUB's images, and
    ``tools`` (command, Debian package)."""
    from talos_image import installer

    for tool, package in ((QEMU, "qemu-system-x86"), *tools):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian package {package})")
    if not OVMF_CODE.exists():
        pytest.skip(f"{OVMF_CODE} is missing (Debian package ovmf)")
    reason = missing() or installer.grub_missing()
    if reason is not None:
        pytest.skip(reason)
