"""``SystemDisk.coldplug``: the drivers of the devices present, dm_crypt and xfs, in one
``modprobe`` run (each run costs a process start and a read of the module indexes)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from talos_init.disks import MODULES, SystemDisk
from talos_init.logring import Console
from talos_init.reaper import Reaper

pytestmark = pytest.mark.timeout(60)

FAKE_MODPROBE = """#!/bin/sh
printf '%s\\n' "$*" >> "{calls}"
echo "modprobe: ERROR: could not insert 'xfs': Exec format error" >&2
exit 1
"""


def _aliases() -> set[str]:
    found = set()
    for bus in ("pci", "virtio", "scsi", "nvme", "usb"):
        for alias in Path("/sys/bus", bus, "devices").glob("*/modalias"):
            found.add(alias.read_text().strip())
    return found


def _coldplug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loaded: list[str]) -> list[str]:
    """Run coldplug with a fake ``modprobe`` first on PATH and ``loaded`` in a fake
    /sys/module; returns its console lines (the fake's calls are in ``tmp_path/calls``)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "modprobe"
    fake.write_text(FAKE_MODPROBE.format(calls=tmp_path / "calls"))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    sys_module = tmp_path / "sys-module"
    for name in loaded:
        (sys_module / name).mkdir(parents=True)
    read, write = os.pipe()
    try:
        disk = SystemDisk(Console(fd=write), Reaper(reap_orphans=False), {})
        asyncio.run(disk.coldplug(sys_module=sys_module))
        asyncio.run(disk.coldplug(sys_module=sys_module))  # once per boot: no second run
    finally:
        os.close(write)
    with os.fdopen(read) as lines:
        return [line.rstrip("\n") for line in lines]


def test_one_modprobe_loads_the_devices_drivers_and_the_filesystem_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _coldplug(tmp_path, monkeypatch, loaded=list(MODULES))
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 1, calls
    words = calls[0].split()
    assert words[:2] == ["-q", "-a"]
    assert words[2:4] == list(MODULES)
    assert set(words[4:]) == _aliases()
    # its failure status (devices without a module) is no problem when the modules are there
    assert not [line for line in lines if "not loaded" in line], lines


def test_a_module_that_did_not_load_is_reported_with_modprobes_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _coldplug(tmp_path, monkeypatch, loaded=["dm_crypt"])
    assert (
        "[talos] modprobe: xfs: not loaded as a module "
        "(modprobe: ERROR: could not insert 'xfs': Exec format error)"
    ) in lines
