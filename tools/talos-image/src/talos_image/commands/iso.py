"""``talos-image iso``: the bootable ISO (BIOS and UEFI), running the node from RAM."""

from __future__ import annotations

import sys

from talos_image import layout
from talos_image.options import Epoch, Out, Rootfs, Work, media_inputs


def iso(
    out: Out = layout.DEFAULT_OUT,
    work: Work = layout.DEFAULT_WORK,
    epoch: Epoch = None,
    rootfs: Rootfs = None,
) -> None:
    """Build talos-amd64.iso into OUT."""
    from talos_image import iso as iso_image

    when, found = media_inputs(out, work, epoch, rootfs)
    target = iso_image.build_image(out / iso_image.ISO_NAME, found, epoch=when)
    sys.stdout.write(f"{target}\n")
