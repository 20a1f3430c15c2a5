"""The ISO: GRUB (BIOS and UEFI, through ``grub-mkrescue``), the kernel, the initramfs and the
root squashfs.

GRUB boots the one entry at once (``timeout=0``) on the serial console and the screen, with the
kernel command line of Talos's ISO (docs/talos-facts.md#kernel-parameters). The squashfs is a
file of its own, ``/boot/rootfs.sqsh``, and the initramfs holds none (:func:`build_image`):
the firmware and GRUB load only the kernel and a small initramfs (reads through the BIOS are
slow), and the initramfs's ``/init`` finds the medium by its volume id (``TALOS``), copies the
squashfs to RAM and unmounts the medium (:mod:`talos_image.initramfs`). The machine runs from
RAM until a config installs it to disk: ``/init`` also keeps the kernel, its initramfs and
GRUB's images for an installed disk (``boot/talos-grub/``, made as the installer bundle's) in
RAM, so that the node can install the system it booted. :func:`build` also takes an initramfs
that holds the squashfs itself (the PXE one), for an ISO without the separate file.

The image is reproducible: ``SOURCE_DATE_EPOCH`` is the build's epoch (mtools, which makes
grub-mkrescue's FAT image for UEFI, and xorriso both read it), xorriso is told the volume
dates, the file dates and the volume UUID explicitly, and ``mformat`` is run through a wrapper
that gives the FAT image a fixed serial number instead of a random one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from libtalos.errors import TalosError
from talos_image import initramfs as initrd
from talos_image import layout
from talos_image.media import Inputs

CMDLINE = (
    "init_on_alloc=1 slab_nomerge pti=on panic=0 consoleblank=0 printk.devkmsg=on"
    " earlyprintk=ttyS0 console=tty0 console=ttyS0 talos.platform=metal"
)
"""The kernel command line of Talos's ISO (docs/talos-facts.md#kernel-parameters)."""

ISO_NAME = f"talos-{layout.ARCH}.iso"
VOLUME_ID = layout.ISO_VOLUME_ID
ROOTFS_PATH = layout.ISO_ROOTFS
MAX_SIZE = 100_000_000
"""The size the ISO stays within (bytes)."""
GRUB_PLATFORMS = {"i386-pc": "grub-pc-bin", "x86_64-efi": "grub-efi-amd64-bin"}
"""GRUB's platforms on the ISO (BIOS, UEFI) and the Debian packages holding them."""

GRUB_MKRESCUE_OPTIONS = ("--locales=", "--fonts=", "--themes=", "--compress=xz")
"""No translations, fonts or themes (about 11 MB): GRUB shows no menu, on a text console. GRUB's
modules on the ISO are xz-compressed (2.8 MB less; GRUB decompresses the few it loads)."""

GRUB_CFG = """\
set timeout=0
set default=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
menuentry "Talos" {{
    linux /boot/vmlinuz {cmdline}
    initrd /boot/initramfs.xz
}}
"""


class IsoError(TalosError):
    """grub-mkrescue failed or is missing (the message says which)."""


def grub_cfg(cmdline: str = CMDLINE) -> str:
    return GRUB_CFG.format(cmdline=cmdline)


def missing() -> str | None:
    """The first tool or GRUB platform the ISO needs that is not installed, or ``None``."""
    for tool, package in (
        ("grub-mkrescue", "grub-common"),
        ("xorriso", "xorriso"),
        ("mformat", "mtools"),
    ):
        if shutil.which(tool) is None:
            return f"{tool} (Debian package {package})"
    for platform, package in GRUB_PLATFORMS.items():
        if not Path("/usr/lib/grub", platform).is_dir():
            return f"/usr/lib/grub/{platform} (Debian package {package})"
    return None


def xorriso_dates(epoch: int) -> list[str]:
    """xorriso's options for fixed volume dates, file dates and volume UUID."""
    stamp = time.strftime("%Y%m%d%H%M%S00", time.gmtime(epoch))
    return [
        "-volid",
        VOLUME_ID,
        "-volume_date",
        "uuid",
        stamp,
        "-volume_date",
        "all_file_dates",
        f"={epoch}",
        "-volume_date",
        "c",
        f"={epoch}",
        "-volume_date",
        "m",
        f"={epoch}",
        "-volume_date",
        "x",
        "default",
        "-volume_date",
        "f",
        "default",
    ]


def build(
    out: Path,
    kernel: Path,
    initramfs: Path,
    *,
    epoch: int,
    cmdline: str = CMDLINE,
    rootfs: Path | None = None,
) -> Path:
    """Write the ISO to ``out`` from ``kernel`` and ``initramfs``, with ``rootfs`` as the file
    :data:`ROOTFS_PATH` (for an initramfs made by :func:`build_initramfs`)."""
    reason = missing()
    if reason is not None:
        raise IsoError(f"cannot build the ISO: missing {reason}")
    with tempfile.TemporaryDirectory(prefix="talos-iso-") as tmp:
        tree = Path(tmp, "iso")
        (tree / "boot" / "grub").mkdir(parents=True)
        (tree / "boot" / "grub" / "grub.cfg").write_text(grub_cfg(cmdline))
        shutil.copyfile(kernel, tree / "boot" / "vmlinuz")
        shutil.copyfile(initramfs, tree / "boot" / "initramfs.xz")
        if rootfs is not None:
            shutil.copyfile(rootfs, tree / ROOTFS_PATH)
            _grub_images(tree / layout.ISO_GRUB_IMAGES, Path(tmp, "grub-images"))
        for path in sorted(tree.rglob("*")):
            os.utime(path, (epoch, epoch), follow_symlinks=False)
        os.utime(tree, (epoch, epoch))
        partial = out.with_name(f".{out.name}.tmp")
        wrappers = Path(tmp, "bin")
        _mformat_wrapper(wrappers, serial=epoch & 0xFFFFFFFF)
        env = {
            **os.environ,
            "SOURCE_DATE_EPOCH": str(epoch),
            "TZ": "UTC",
            "PATH": f"{wrappers}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        }
        result = subprocess.run(
            [
                "grub-mkrescue",
                "-o",
                str(partial),
                *GRUB_MKRESCUE_OPTIONS,
                str(tree),
                "--",
                *xorriso_dates(epoch),
            ],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            raise IsoError(f"grub-mkrescue exited {result.returncode}: {result.stderr.strip()}")
    partial.replace(out)
    return out


def _grub_images(target: Path, work: Path) -> None:
    """GRUB's images for an installed disk, as the installer bundle has them, in ``target``."""
    from talos_image import installer

    work.mkdir()
    target.mkdir(parents=True)
    for name, path in installer.grub_images(work):
        shutil.copyfile(path, target / Path(name).name)


def medium(inputs: Inputs) -> initrd.Medium:
    """Where the ISO's initramfs finds the root: :data:`ROOTFS_PATH` on the volume
    :data:`VOLUME_ID`, of the squashfs's size."""
    return initrd.Medium(VOLUME_ID, ROOTFS_PATH, inputs.squashfs.stat().st_size)


def build_initramfs(out: Path, inputs: Inputs, *, epoch: int) -> Path:
    """The ISO's initramfs, ``initramfs-iso-amd64.xz`` in ``out``: no squashfs, ``/init``
    copies it from the medium."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"initramfs-iso-{layout.ARCH}.xz"
    return initrd.build(target, inputs.modules_dir, None, epoch=epoch, medium=medium(inputs))


def build_image(out: Path, inputs: Inputs, *, epoch: int, cmdline: str = CMDLINE) -> Path:
    """Write the ISO to ``out``: the kernel, the ISO's initramfs and the squashfs as a file."""
    with tempfile.TemporaryDirectory(prefix="talos-iso-initramfs-") as tmp:
        initramfs = build_initramfs(Path(tmp), inputs, epoch=epoch)
        return build(
            out, inputs.kernel, initramfs, epoch=epoch, cmdline=cmdline, rootfs=inputs.squashfs
        )


def _mformat_wrapper(directory: Path, *, serial: int) -> None:
    """An ``mformat`` first on PATH that passes ``-N serial`` (grub-mkrescue has no option
    for the FAT image's serial number, which mformat otherwise draws at random)."""
    real = shutil.which("mformat")
    if real is None:
        raise IsoError("cannot build the ISO: missing mformat (Debian package mtools)")
    directory.mkdir()
    wrapper = directory / "mformat"
    wrapper.write_text(f'#!/bin/sh\nexec {real} -N {serial:08X} "$@"\n')
    wrapper.chmod(0o755)
