"""PXE boot files: the kernel, the initramfs (holding the root squashfs, and the kernel and
GRUB's images again for an install of the booted system) and both in one
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
    """``initramfs-amd64.xz`` in ``out``, holding the squashfs (the installer takes it too),
    and the kernel and GRUB's images for an installed disk under ``/booted``: a node booted
    over the network installs the system it booted (talos-init's ``talos_init.bootloader``)."""
    import tempfile

    from talos_image import installer

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="talos-pxe-grub-") as tmp:
        booted = [("vmlinuz", inputs.kernel)]
        if installer.grub_missing() is None:
            booted += installer.grub_images(Path(tmp))
        return initramfs.build(
            out / INITRAMFS, inputs.modules_dir, inputs.squashfs, epoch=epoch, booted=booted
        )


def build(out: Path, inputs: Inputs, *, epoch: int) -> PxeFiles:
    """Write the kernel, the initramfs and the tarball holding both to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    kernel = copy(inputs.kernel, out / KERNEL)
    initrd = build_initramfs(out, inputs, epoch=epoch)
    bundle = tarball.write(
        out / BUNDLE, [(KERNEL, kernel), (INITRAMFS, initrd)], epoch=epoch, compress=True
    )
    return PxeFiles(kernel, initrd, bundle)
