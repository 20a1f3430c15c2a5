"""Mapping commands (need device-mapper with dm-crypt): open, close, status."""

from __future__ import annotations

from typing import Annotated

import typer

from talos_luks.jobs import close_job, open_job, status_job
from talos_luks.options import KeyFd, KeyFile, KeySlot

Name = Annotated[str, typer.Argument(help="mapping name (/dev/mapper/NAME)")]


def open_(
    device: Annotated[str, typer.Argument(help="block device or image file")],
    name: Name,
    key_file: KeyFile = None,
    key_fd: KeyFd = None,
    key_slot: KeySlot = None,
    readonly: Annotated[bool, typer.Option("--readonly", help="map read-only")] = False,
    allow_discards: Annotated[
        bool, typer.Option("--allow-discards", help="pass TRIM through")
    ] = False,
) -> None:
    """Map DEVICE as /dev/mapper/NAME and print that path."""
    open_job(device, name, key_file, key_fd, key_slot, readonly, allow_discards)


def close(name: Name) -> None:
    """Remove the mapping NAME (exit 4 when it is not active or device-mapper is missing)."""
    close_job(name)


def status(name: Name) -> None:
    """Print the mapping NAME as YAML (exit 4 when it is not active, 1 without device-mapper)."""
    status_job(name)
