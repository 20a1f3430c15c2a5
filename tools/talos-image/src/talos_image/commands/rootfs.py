"""``talos-image rootfs``: the read-only root (squashfs), the kernel and the package list."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from talos_image import layout


def rootfs(
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = layout.DEFAULT_OUT,
    work: Annotated[
        Path, typer.Option(help="work directory: the unpacked root and the .deb cache")
    ] = layout.DEFAULT_WORK,
    epoch: Annotated[
        int | None,
        typer.Option(help="SOURCE_DATE_EPOCH of the build [default: the commit time of HEAD]"),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="where downloaded .debs are kept between builds [default: WORK/cache/debs]"
        ),
    ] = None,
) -> None:
    """Build rootfs-amd64.sqsh, vmlinuz-amd64 and packages-amd64.txt into OUT."""
    from talos_image.rootfs import build, default_epoch

    image = build(
        out,
        work,
        epoch=default_epoch() if epoch is None else epoch,
        cache=cache,
    )
    for path in (image.squashfs, image.kernel, image.packages):
        sys.stdout.write(f"{path}\n")
