"""The options the ``talos-image`` commands share, and the inputs of the boot media."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from talos_image.media import Inputs

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


def media_inputs(
    out: Path, work: Path, epoch: int | None, rootfs: Path | None
) -> tuple[int, Inputs]:
    """The build's epoch and the root, kernel and modules (the root built when missing or
    stale)."""
    from talos_image.media import inputs

    when = epoch_or_default(epoch)
    return when, inputs(out, work, rootfs=rootfs, epoch=when)


def boot_inputs(
    out: Path, work: Path, epoch: int | None, rootfs: Path | None
) -> tuple[int, Inputs, Path]:
    """:func:`media_inputs`, and the initramfs holding the squashfs (the PXE one) made from
    them."""
    from talos_image import pxe

    when, found = media_inputs(out, work, epoch, rootfs)
    return when, found, pxe.build_initramfs(work / "boot", found, epoch=when)
