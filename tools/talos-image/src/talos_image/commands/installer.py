"""``talos-image installer``: the bundle the install and upgrade steps write to disk."""

from __future__ import annotations

import sys

from talos_image import layout
from talos_image.options import Epoch, Out, Rootfs, Work, boot_inputs


def installer(
    out: Out = layout.DEFAULT_OUT,
    work: Work = layout.DEFAULT_WORK,
    epoch: Epoch = None,
    rootfs: Rootfs = None,
) -> None:
    """Build installer-amd64.tar (kernel, initramfs, root squashfs, manifest, GRUB, SHA256SUMS)."""
    from talos_image import installer as bundle

    when, found, initrd = boot_inputs(out, work, epoch, rootfs)
    sys.stdout.write(f"{bundle.build(out, found, epoch=when, initrd=initrd)}\n")
