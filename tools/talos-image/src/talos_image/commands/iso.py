"""``talos-image iso``: the bootable ISO (BIOS and UEFI), running the node from RAM."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from talos_image import layout

Out = Annotated[Path, typer.Option("--out", "-o", help="output directory")]
Work = Annotated[Path, typer.Option(help="work directory: the unpacked root and the .deb cache")]
Epoch = Annotated[
    int | None,
    typer.Option(help="SOURCE_DATE_EPOCH of the build [default: the commit time of HEAD]"),
]
Rootfs = Annotated[
    Path | None,
    typer.Option(
        help="the root squashfs [default: OUT/rootfs-amd64.sqsh, built when missing or stale]"
    ),
]


def epoch_or_default(epoch: int | None) -> int:
    from talos_image.rootfs import default_epoch

    return default_epoch() if epoch is None else epoch


def iso(
    out: Out = layout.DEFAULT_OUT,
    work: Work = layout.DEFAULT_WORK,
    epoch: Epoch = None,
    rootfs: Rootfs = None,
) -> None:
    """Build talos-amd64.iso into OUT."""
    from talos_image import iso as iso_image
    from talos_image import pxe
    from talos_image.media import inputs

    when = epoch_or_default(epoch)
    found = inputs(out, work, rootfs=rootfs, epoch=when)
    initrd = pxe.build_initramfs(work / "boot", found, epoch=when)
    target = iso_image.build(out / iso_image.ISO_NAME, found.kernel, initrd, epoch=when)
    sys.stdout.write(f"{target}\n")
