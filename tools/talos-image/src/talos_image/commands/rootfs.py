"""``talos-image rootfs``: the read-only root (squashfs), the kernel and the package list."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from talos_image import layout
from talos_image.options import Epoch, Out, Work, epoch_or_default


def rootfs(
    out: Out = layout.DEFAULT_OUT,
    work: Work = layout.DEFAULT_WORK,
    epoch: Epoch = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="where downloaded .debs are kept between builds [default: WORK/cache/debs]"
        ),
    ] = None,
) -> None:
    """Build rootfs-amd64.sqsh, vmlinuz-amd64 and packages-amd64.txt into OUT."""
    from talos_image.rootfs import build

    image = build(out, work, epoch=epoch_or_default(epoch), cache=cache)
    for path in (image.squashfs, image.kernel, image.packages):
        sys.stdout.write(f"{path}\n")
