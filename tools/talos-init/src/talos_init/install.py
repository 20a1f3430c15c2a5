"""Installing the system disk: Talos's partition layout on a blank ``machine.install.disk``.

The layout of docs/talos-facts.md#partition-layout (v0.9), GPT, partition names equal to the labels:

====  =========  ==========  ==============  =============================================
 #    label      size        GPT type        filesystem made here
====  =========  ==========  ==============  =============================================
 1    EFI        100 MiB     EFI System      vfat, label EFI
 2    BIOS       1 MiB       BIOS boot       none (legacy-BIOS-bootable attribute)
 3    BOOT       300 MiB     Linux data      xfs, label BOOT
 4    META       1 MiB       Linux data      none (raw)
 5    STATE      100 MiB     Linux data      none: made at first mount (after LUKS)
 6    EPHEMERAL  the rest    Linux data      none: made at first mount (after LUKS)
====  =========  ==========  ==============  =============================================

A disk is *blank* when its first and last MiB are all zero bytes (no partition table, primary or
backup, and no filesystem signature). A disk that already has STATE and EPHEMERAL is installed
and left alone. Any other disk, blank or not, is zeroed first when ``machine.install.wipe`` is
true, as Talos's installer zeroes it: the whole disk, with the kernel's BLKZEROOUT, which
devices that support it do without writing every block. Without ``wipe``, a disk that is not
blank is refused and left untouched. The partition table is written by ``sfdisk`` (util-linux,
Debian package fdisk), which also asks the kernel to re-read it.

Then, with ``machine.install.bootloader`` and a ``machine.install.image`` naming an installer
bundle (an http(s) URL or a path), :mod:`talos_init.bootloader` writes the bundle's kernel and
initramfs to slot A on BOOT and installs GRUB for BIOS and UEFI (:func:`install_system`): the
node then reboots from the disk. BOOT's xfs is made without the ``bigtime`` and ``inobtcount``
features, which GRUB's xfs reader may not know.
"""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from talos_init.disks import (
    MIB,
    XFS_SMALL_ENV,
    DiskError,
    Result,
    disk_size,
    find,
    install_disk,
    install_section,
    run,
    wait_for,
)

if TYPE_CHECKING:
    from talos_init.configsource import NodeConfig
    from talos_init.logring import Console
    from talos_init.reaper import Reaper

EFI_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_TYPE = "21686148-6449-6E6F-744E-656564454649"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


@dataclass(frozen=True)
class PartSpec:
    label: str
    size_mib: int  # 0: the rest of the disk
    type_guid: str
    attrs: str = ""


LAYOUT = (
    PartSpec("EFI", 100, EFI_TYPE),
    PartSpec("BIOS", 1, BIOS_TYPE, "LegacyBIOSBootable"),
    PartSpec("BOOT", 300, LINUX_TYPE),
    PartSpec("META", 1, LINUX_TYPE),
    PartSpec("STATE", 100, LINUX_TYPE),
    PartSpec("EPHEMERAL", 0, LINUX_TYPE),
)
FIXED_MIB = sum(p.size_mib for p in LAYOUT) + 2  # + the GPT and 1 MiB alignment at the start
MIN_EPHEMERAL_MIB = 100
BLKZEROOUT = 0x127F  # _IO(0x12, 127): zero a byte range of a block device


def sfdisk_script() -> str:
    lines = ["label: gpt"]
    for p in LAYOUT:
        fields = [f"size={p.size_mib}MiB"] if p.size_mib else []
        fields += [f"type={p.type_guid}", f'name="{p.label}"']
        if p.attrs:
            fields.append(f'attrs="{p.attrs}"')
        lines.append(", ".join(fields))
    return "\n".join(lines) + "\n"


def is_blank(path: str) -> bool:
    """First and last MiB all zeros: no partition table (primary or backup), no signature."""
    size = disk_size(path)
    with open(path, "rb") as fh:
        head = fh.read(MIB)
        fh.seek(max(0, size - MIB))
        tail = fh.read(MIB)
    return not head.strip(b"\0") and not tail.strip(b"\0")


def zero(path: str) -> int:
    """Zero the whole of ``path`` (a block device; a regular file is emptied to the same size,
    for tests); returns its size."""
    import fcntl
    import struct

    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if stat.S_ISBLK(os.fstat(fd).st_mode):
            fcntl.ioctl(fd, BLKZEROOUT, struct.pack("=QQ", 0, size))
        else:
            os.ftruncate(fd, 0)
            os.ftruncate(fd, size)
        os.fsync(fd)
        return size
    finally:
        os.close(fd)


def wipe_requested(config: NodeConfig) -> bool:
    """``machine.install.wipe`` (false unless set true, as gen config writes it)."""
    install = install_section(config)
    return install is not None and install.wipe


async def install(console: Console, reaper: Reaper, config: NodeConfig) -> bool:
    """Partition and format ``machine.install.disk`` when it is blank, or zeroed first with
    ``machine.install.wipe``; True when it did.

    Without ``wipe``, a disk that holds other data is refused with a message, and nothing is
    written to it: the node goes on without a system disk (STATE and EPHEMERAL stay where they
    were).
    """
    disk = install_disk(config)
    if disk is None:
        console.log("install: machine.install.disk is not set; nothing to install")
        return False
    if not await wait_for(disk):
        raise DiskError(f"install: machine.install.disk {disk} does not exist")
    if find("STATE", disk) is not None and find("EPHEMERAL", disk) is not None:
        console.log(f"install: {disk} is installed already (STATE and EPHEMERAL found)")
        return False
    try:
        blank = is_blank(disk)
        size = disk_size(disk)
    except OSError as exc:
        raise DiskError(f"install: {disk}: cannot read: {exc.strerror}") from None
    if size < (FIXED_MIB + MIN_EPHEMERAL_MIB) * MIB:
        console.log(
            f"install: {disk} is {size // MIB} MiB; Talos's layout needs at least"
            f" {FIXED_MIB + MIN_EPHEMERAL_MIB} MiB: refusing to install"
        )
        return False
    if wipe_requested(config):
        console.log(f"install: zeroing {disk} ({size // MIB} MiB): machine.install.wipe is true")
        try:
            await asyncio.to_thread(zero, disk)
        except OSError as exc:
            raise DiskError(f"install: {disk}: cannot zero it: {exc.strerror}") from None
        blank = True
    if not blank:
        console.log(
            f"install: {disk} holds data (a partition table or a filesystem) and no Talos"
            " partitions: refusing to touch it; set machine.install.wipe: true to zero"
            " it and install"
        )
        return False
    console.log(
        f"install: partitioning {disk} ({size // MIB} MiB): " + ", ".join(p.label for p in LAYOUT)
    )
    script = sfdisk_script()
    result = await _sfdisk(reaper, disk, script)
    if result.code != 0:
        tail = result.err.strip().splitlines()[-1:] or [""]
        raise DiskError(f"install: sfdisk {disk} exited {result.code}: {tail[0]}")
    parts = {}
    for p in LAYOUT:
        found = None
        for _ in range(200):  # the kernel re-read the table; sysfs and /dev follow at once
            found = find(p.label, disk)
            if found is not None and await wait_for(found.device):
                break
            await _pause()
        if found is None:
            raise DiskError(f"install: {disk}: partition {p.label} did not appear after sfdisk")
        parts[p.label] = found
    efi, boot = parts["EFI"].device, parts["BOOT"].device
    for argv, env in (
        (["mkfs.vfat", "-F", "32", "-n", "EFI", efi], None),
        (
            ["mkfs.xfs", "-f", "-q", "-m", "bigtime=0,inobtcount=0", "-L", "BOOT", boot],
            {**os.environ, **XFS_SMALL_ENV},
        ),
    ):
        made = await run(reaper, argv, env=env)
        if made.code != 0:
            raise DiskError(f"install: {argv[0]} {argv[-1]} exited {made.code}")
    console.log(f"install: {disk}: partitions written; EFI (vfat) and BOOT (xfs) formatted")
    return True


async def install_system(console: Console, reaper: Reaper, config: NodeConfig) -> bool:
    """The install step: the partition layout (:func:`install`), then slot A and GRUB
    (:func:`talos_init.bootloader.install`); True when the disk now boots the system, so the
    node saves its config to STATE and reboots from it."""
    from talos_init import bootloader

    if not await install(console, reaper, config):
        return False
    disk = install_disk(config)
    assert disk is not None  # noqa: S101 - install() partitioned it
    return await bootloader.install(console, reaper, config, disk)


async def _sfdisk(reaper: Reaper, disk: str, script: str) -> Result:
    return await run(reaper, ["sfdisk", "--quiet", "--wipe", "always", disk], stdin=script)


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.05)
