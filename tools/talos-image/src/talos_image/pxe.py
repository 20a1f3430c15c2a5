"""PXE boot files: the kernel, the initramfs (holding the root squashfs) and both in one
``boot-amd64.tar.gz``, as Talos ships them.

The kernel command line is the bootloader's (iPXE, pxelinux): Talos's parameters
(:data:`talos_image.iso.CMDLINE`), with ``talos.config=URL`` for a config to fetch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from talos_image import initramfs, layout, tarball
from talos_image.media import Inputs, copy

KERNEL = f"vmlinuz-{layout.ARCH}"
INITRAMFS = f"initramfs-{layout.ARCH}.xz"
BUNDLE = f"boot-{layout.ARCH}.tar.gz"


@dataclass(frozen=True)
class PxeFiles:
    kernel: Path
    initramfs: Path
    bundle: Path


def build_initramfs(out: Path, inputs: Inputs, *, epoch: int) -> Path:
    """``initramfs-amd64.xz`` in ``out``, holding the squashfs (the installer takes it too)."""
    out.mkdir(parents=True, exist_ok=True)
    return initramfs.build(out / INITRAMFS, inputs.modules_dir, inputs.squashfs, epoch=epoch)


def build(out: Path, inputs: Inputs, *, epoch: int) -> PxeFiles:
    """Write the kernel, the initramfs and the tarball holding both to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    kernel = copy(inputs.kernel, out / KERNEL)
    initrd = build_initramfs(out, inputs, epoch=epoch)
    bundle = tarball.write(
        out / BUNDLE, [(KERNEL, kernel), (INITRAMFS, initrd)], epoch=epoch, compress=True
    )
    return PxeFiles(kernel, initrd, bundle)
