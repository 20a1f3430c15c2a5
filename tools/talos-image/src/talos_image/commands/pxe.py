"""``talos-image pxe``: the kernel and initramfs for a network boot, and both in one tarball."""

from __future__ import annotations

import sys

from talos_image import layout
from talos_image.options import Epoch, Out, Rootfs, Work, epoch_or_default


def pxe(
    out: Out = layout.DEFAULT_OUT,
    work: Work = layout.DEFAULT_WORK,
    epoch: Epoch = None,
    rootfs: Rootfs = None,
) -> None:
    """Build vmlinuz-amd64, initramfs-amd64.xz and boot-amd64.tar.gz into OUT."""
    from talos_image import pxe as pxe_files
    from talos_image.media import inputs

    when = epoch_or_default(epoch)
    files = pxe_files.build(out, inputs(out, work, rootfs=rootfs, epoch=when), epoch=when)
    for path in (files.kernel, files.initramfs, files.bundle):
        sys.stdout.write(f"{path}\n")
