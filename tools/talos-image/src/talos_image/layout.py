"""Where the image's artefacts live: the names every ``talos-image`` command agrees on.

Outputs go to an output directory (``_out/`` by default), work trees and the package cache to a
work directory (``_build/``). The root filesystem command writes, in the output directory,
the squashfs, the kernel and the package list; in the work directory it leaves the unpacked
root (``root/``), from which the initramfs takes the kernel modules. The boot media's own names
(the ISO's volume id and where it holds the squashfs) are here too: the initramfs looks for
them.
"""

from __future__ import annotations

from pathlib import Path

ARCH = "amd64"
SUITE = "bookworm"

ROOTFS = f"rootfs-{ARCH}.sqsh"
KERNEL = f"vmlinuz-{ARCH}"
PACKAGES = f"packages-{ARCH}.txt"

ROOT_DIR = "root"
CACHE_DIR = Path("cache") / "debs"
WHEELS_DIR = "wheels"

ISO_VOLUME_ID = "TALOS"
"""The ISO's ISO 9660 volume identifier, by which the ISO's initramfs finds its boot medium."""

ISO_ROOTFS = "boot/rootfs.sqsh"
ISO_GRUB_IMAGES = "boot/talos-grub"
"""GRUB's images for an installed disk (``boot.img``, ``core.img``, ``BOOTX64.EFI``) on the ISO:
a node booted from it installs the very system it runs (talos-init's ``talos_init.bootloader``)."""
BOOTED_DIR = "run/talos-booted"
"""Where the ISO's /init keeps the kernel, its own initramfs and GRUB's images, in the root it
switches to (a tmpfs): what an install of the booted system writes besides the root squashfs."""
"""The root squashfs on the ISO (a file beside the kernel and the initramfs)."""

VERSION_FILE = Path("etc") / "talos-image" / "version.json"
"""The image's version manifest, inside the root: version, commit, kernel, packages' sha256."""

DEFAULT_OUT = Path("_out")
DEFAULT_WORK = Path("_build")


def rootfs(out: Path) -> Path:
    return out / ROOTFS


def kernel(out: Path) -> Path:
    return out / KERNEL


def packages(out: Path) -> Path:
    return out / PACKAGES


def root_dir(work: Path) -> Path:
    return work / ROOT_DIR


def deb_cache(work: Path) -> Path:
    return work / CACHE_DIR


def modules_dir(root: Path, kernel_version: str) -> Path:
    """The kernel modules of ``kernel_version`` in an unpacked root."""
    return root / "lib" / "modules" / kernel_version
