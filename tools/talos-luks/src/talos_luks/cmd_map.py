"""Mapping commands (need device-mapper with dm-crypt): open, close, status."""

from __future__ import annotations

from typing import Annotated

import typer

from talos_luks.keys import read_key
from talos_luks.options import KeyFd, KeyFile, KeySlot
from talos_luks.volume import Volume, deactivate, mapping_status

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
    from talos_luks.binding import lib

    key = read_key(key_file, key_fd)
    flags = (lib.CRYPT_ACTIVATE_READONLY if readonly else 0) | (
        lib.CRYPT_ACTIVATE_ALLOW_DISCARDS if allow_discards else 0
    )
    with Volume.load(device) as vol:
        vol.activate(name, key, -1 if key_slot is None else key_slot, flags)
    typer.echo(f"/dev/mapper/{name}")


def close(name: Name) -> None:
    """Remove the mapping NAME."""
    deactivate(name)


def status(name: Name) -> None:
    """Print the mapping NAME as YAML (exit 4 when it is not active, 1 without device-mapper)."""
    from libtalos.yamlio import dump

    typer.echo(dump(mapping_status(name)), nl=False)
