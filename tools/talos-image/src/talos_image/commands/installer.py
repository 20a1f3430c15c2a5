"""``talos-image installer``: the bundle the install and upgrade steps write to disk."""

from __future__ import annotations

import sys

from talos_image import layout
from talos_image.commands.iso import Epoch, Out, Rootfs, Work, epoch_or_default


def installer(
    out: Out = layout.DEFAULT_OUT,
    work: Work = layout.DEFAULT_WORK,
    epoch: Epoch = None,
    rootfs: Rootfs = None,
) -> None:
    """Build installer-amd64.tar (kernel, initramfs, root squashfs, manifest, SHA256SUMS)."""
    from talos_image import installer as bundle
    from talos_image import pxe
    from talos_image.media import inputs

    when = epoch_or_default(epoch)
    found = inputs(out, work, rootfs=rootfs, epoch=when)
    initrd = pxe.build_initramfs(work / "boot", found, epoch=when)
    sys.stdout.write(f"{bundle.build(out, found, epoch=when, initrd=initrd)}\n")
