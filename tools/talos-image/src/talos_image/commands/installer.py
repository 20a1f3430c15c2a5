"""``talos-image installer``: the bundle the install and upgrade steps write to disk."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from talos_image import layout
from talos_image.options import Epoch, Out, Rootfs, Work, boot_inputs, media_inputs


def installer(
    out: Out = layout.DEFAULT_OUT,
    work: Work = layout.DEFAULT_WORK,
    epoch: Epoch = None,
    rootfs: Rootfs = None,
    version: Annotated[
        str | None,
        typer.Option(
            help="the version the bundle's root names [default: the build's]; its root is"
            " packed again from the build's unpacked root (a second bundle to upgrade to)"
        ),
    ] = None,
) -> None:
    """Build installer-amd64.tar (kernel, initramfs, root squashfs, manifest, GRUB, SHA256SUMS)."""
    from talos_image import installer as bundle
    from talos_image import pxe

    if version is None:
        when, found, initrd = boot_inputs(out, work, epoch, rootfs)
    else:
        when, base = media_inputs(out, work, epoch, rootfs)
        versioned = work / "versioned"
        found = bundle.reversioned(base, layout.root_dir(work), versioned, version, epoch=when)
        initrd = pxe.build_initramfs(versioned, found, epoch=when)
    sys.stdout.write(f"{bundle.build(out, found, epoch=when, initrd=initrd)}\n")
