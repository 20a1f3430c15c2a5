"""Install to disk, then boot the disk alone: GRUB for BIOS and UEFI, slot A, boot counting.

One empty sparse virtio disk and the test network (tests/image/netlab.py) inside the pytest
session's private network namespace; one guest at a time (QEMU under TCG, ``-no-reboot``):

1. the PXE kernel and initramfs with ``talos.config=`` (a metal control plane whose
   ``machine.install`` names ``/dev/vda`` and an extra kernel argument, and whose
   ``machine.install.image`` is the generated container reference): the node partitions the
   disk, writes slot A with the system it booted over the network (the PXE initramfs keeps the
   kernel and GRUB's images) and GRUB, saves its config to STATE and reboots, which ends QEMU
   (a bundle URL as ``machine.install.image`` is the qemu provisioner's install:
   tests/cluster/test_qemu_vm.py);
2. the disk alone (no ``-kernel``, no ISO) with SeaBIOS: GRUB's menu shows slots A and B and
   boots A, whose command line carries the extra argument; the node loads its config from
   STATE (no maintenance mode, no fetch) and answers ``talosctl version`` over mutual TLS with
   the image's Tag and SHA; the console shows the first boot as GRUB's trial of A (``tries``
   counted down to 0 by GRUB's ``save_env``) and talos-init marking A good (a control plane
   not bootstrapped: after 30 s with no etcd). After QEMU stops,
   the grubenv read from the disk image holds ``default=A`` and no pending try;
3. the same disk with OVMF (UEFI, ``EFI/BOOT/BOOTX64.EFI``): the node comes up again, its
   grubenv has nothing left to mark.

Boot times are kept in :data:`BOOT_SECONDS` and printed; nothing asserts on them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from talos_image import iso, pxe
from talos_image.media import Inputs

from .netlab import NetLab
from .vm import (
    BOOT_SECONDS,
    OVMF_VARS,
    TALOS_GEN,
    Guest,
    configured,
    grubenv,
    skip_without_tools,
    uefi_args,
    version,
)

pytestmark = [pytest.mark.image, pytest.mark.vm, pytest.mark.timeout(2400)]

DISK_SIZE = 2 << 30
INSTALL_TIMEOUT = 900.0
EXTRA_ARG = "talos.installprobe=1"


@pytest.fixture(scope="module", autouse=True)
def _need_tools() -> None:
    skip_without_tools(("grub-editenv", "grub-common"))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetLab]:
    with NetLab(tmp_path / "net", guests=1) as net:
        yield net


@pytest.fixture
def guests() -> Iterator[list[Guest]]:
    started: list[Guest] = []
    yield started
    for g in started:
        g.stop()


def _configs(out: Path, endpoint: str) -> Path:
    patch = out.parent / "install.yaml"
    patch.write_text(json.dumps({"machine": {"install": {"extraKernelArgs": [EXTRA_ARG]}}}))
    argv = [
        TALOS_GEN,
        "config",
        "installed",
        f"https://{endpoint}:6443",
        "-o",
        str(out),
        "--install-disk",
        "/dev/vda",
        "--config-patch",
        f"@{patch}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return out


def test_install_to_disk_then_the_disk_boots_with_seabios_and_ovmf(
    boot_media: Path, image_inputs: Inputs, lab: NetLab, guests: list[Guest], tmp_path: Path
) -> None:
    nic = lab.nics[0]
    configs = _configs(tmp_path / "gen", nic.address)
    config_url = lab.serve("/c.yaml", (configs / "controlplane.yaml").read_bytes())
    disk = tmp_path / "disk.img"
    with disk.open("wb") as fh:
        fh.truncate(DISK_SIZE)  # sparse and empty: a blank disk
    drive = ["-drive", f"file={disk},format=raw,if=virtio"]
    manifest = json.loads(image_inputs.manifest.read_text())
    expected = {"Tag": f"v{manifest['version']}", "SHA": manifest["commit"]}

    # 1. PXE boot with the config: install, then the reboot ends QEMU (-no-reboot)
    pxe_boot = [
        "-kernel",
        str(boot_media / pxe.KERNEL),
        "-initrd",
        str(boot_media / pxe.INITRAMFS),
        "-append",
        f"{iso.CMDLINE} talos.config={config_url}",
        *drive,
    ]
    g = Guest("pxe-install", tmp_path, nic, pxe_boot)
    guests.append(g)
    g.wait_exit(INSTALL_TIMEOUT, "installed")
    text = g.text()
    for line in (
        "[talos] install: partitioning /dev/vda",
        "is not a bundle: writing slot A with the system this node booted",
        "[talos] install: slot A written from the booted system",
        "[talos] install: GRUB installed on /dev/vda",
        "[talos] config saved to /system/state/config.yaml",
        "[talos] install: done; rebooting from the installed disk",
    ):
        assert line in text, f"{line!r} not on the console:\n{text[-6000:]}"
    assert "[talos] boot sequence" not in text  # the installing boot does not go on
    assert "/installer-amd64.tar" not in lab.requests()  # no bundle: the booted system

    # 2. the disk alone, SeaBIOS: GRUB's menu, slot A, configured from STATE
    g = Guest("disk-seabios", tmp_path, nic, drive)
    guests.append(g)
    configured(g)
    text = g.text()
    assert "Talos (slot A)" in text and "Talos (slot B)" in text  # GRUB's menu
    assert "Talos: booting slot A" in text
    cmdline = re.search(r"Command line: (.*)$", text, re.M)
    assert cmdline is not None and f"{EXTRA_ARG} talos.slot=A" in cmdline.group(1), text[:6000]
    assert "talos.config=" not in cmdline.group(1)
    assert "[talos] config loaded from STATE" in text
    assert "maintenance" not in text
    # GRUB counted the trial down (its save_env on xfs); talos-init then marked A good
    assert "[talos] bootloader: booted slot A; grubenv: default=A next=A tries=0 failed=" in text
    # a control plane marks its slot good once etcd is healthy, or 30 s without an etcd
    # service: this one is not bootstrapped
    g.wait(r"^\[talos\] bootloader: this control plane runs no etcd \(not bootstrapped\)", 300)
    g.wait(
        r"^\[talos\] bootloader: slot A marked good; grubenv: default=A next= tries= failed=\r?$",
        300,
    )
    assert version(configs / "talosconfig", g, nic.address) == expected
    fetched = lab.requests()
    g.stop()
    assert fetched.count("/c.yaml") == 1  # the installed node did not fetch its config again
    assert grubenv(disk, tmp_path) == ["default=A", "next=", "tries=", "failed="]

    # 3. the same disk, OVMF (UEFI): GRUB from EFI/BOOT/BOOTX64.EFI, slot A again
    vars_copy = tmp_path / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, vars_copy)
    uefi = [*uefi_args(vars_copy), *drive]
    g = Guest("disk-ovmf", tmp_path, nic, uefi)
    guests.append(g)
    configured(g)
    text = g.text()
    assert "Talos: booting slot A" in text and "[talos] config loaded from STATE" in text
    assert "[talos] bootloader: booted slot A; grubenv: default=A next= tries= failed=" in text
    assert "marked good" not in text  # nothing was pending
    assert version(configs / "talosconfig", g, nic.address) == expected
    g.stop()
    assert grubenv(disk, tmp_path) == ["default=A", "next=", "tries=", "failed="]
    print(f"boot times: {BOOT_SECONDS}")
