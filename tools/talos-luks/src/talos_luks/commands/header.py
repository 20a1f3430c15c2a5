"""Header commands (no device-mapper needed): format, dump, add-key, remove-key, test-key."""

from __future__ import annotations

from typing import Annotated

import typer

from talos_luks.errors import LuksError
from talos_luks.jobs import DEFAULT_CIPHER, dump_job, format_job, test_key_job
from talos_luks.keys import read_key
from talos_luks.options import (
    DEFAULT,
    ForceIterations,
    IterTime,
    KeyFd,
    KeyFile,
    KeySlot,
    PbkdfMemory,
    PbkdfParallel,
    PbkdfType,
    pbkdf,
)
from talos_luks.volume import Volume

Device = Annotated[str, typer.Argument(help="block device or image file")]


def format_(
    device: Device,
    key_file: KeyFile = None,
    key_fd: KeyFd = None,
    key_slot: KeySlot = None,
    cipher: Annotated[
        str, typer.Option("--cipher", "-c", help="aes-xts-plain64 or an adiantum cipher")
    ] = DEFAULT_CIPHER,
    key_size: Annotated[
        int,
        typer.Option(
            "--key-size", "-s", help="volume key size in bits (512 for XTS, 256 adiantum)"
        ),
    ] = 0,
    sector_size: Annotated[
        int, typer.Option("--sector-size", help="encryption sector size in bytes")
    ] = 512,
    label: Annotated[str | None, typer.Option("--label", help="LUKS2 header label")] = None,
    pbkdf_type: PbkdfType = DEFAULT.type,
    pbkdf_memory: PbkdfMemory = DEFAULT.memory_kb,
    pbkdf_parallel: PbkdfParallel = DEFAULT.parallel,
    iter_time: IterTime = DEFAULT.time_ms,
    force_iterations: ForceIterations = 0,
    force: Annotated[
        bool, typer.Option("--force", help="overwrite a device that holds data")
    ] = False,
) -> None:
    """Write a new LUKS2 header to DEVICE and put the key in a slot (0 unless --key-slot)."""
    format_job(
        device,
        key_file,
        key_fd,
        key_slot,
        cipher=cipher,
        key_size=key_size,
        sector_size=sector_size,
        label=label,
        pbkdf=pbkdf(pbkdf_type, pbkdf_memory, pbkdf_parallel, iter_time, force_iterations),
        force=force,
    )


def dump(device: Device) -> None:
    """Print DEVICE's LUKS2 header as YAML: cipher, key size, sector size, key slots, tokens."""
    dump_job(device)


def add_key(
    device: Device,
    key_file: KeyFile = None,
    key_fd: KeyFd = None,
    new_key_file: Annotated[
        str | None, typer.Option("--new-key-file", help="the key to add, from FILE ('-' for stdin)")
    ] = None,
    new_key_fd: Annotated[
        int | None, typer.Option("--new-key-fd", help="the key to add, from file descriptor N")
    ] = None,
    key_slot: KeySlot = None,
    pbkdf_type: PbkdfType = DEFAULT.type,
    pbkdf_memory: PbkdfMemory = DEFAULT.memory_kb,
    pbkdf_parallel: PbkdfParallel = DEFAULT.parallel,
    iter_time: IterTime = DEFAULT.time_ms,
    force_iterations: ForceIterations = 0,
) -> None:
    """Add a key to DEVICE, authorised by an existing key (--key-file/--key-fd)."""
    if key_file == "-" and new_key_file == "-":
        raise LuksError("--key-file and --new-key-file cannot both read stdin")
    existing = read_key(key_file, key_fd)
    new = read_key(new_key_file, new_key_fd, option="--new-key-file")
    with Volume.load(device) as vol:
        vol.set_pbkdf(pbkdf(pbkdf_type, pbkdf_memory, pbkdf_parallel, iter_time, force_iterations))
        slot = vol.add_key(existing, new, -1 if key_slot is None else key_slot)
    typer.echo(f"{device}: key added in slot {slot}", err=True)


def remove_key(
    device: Device,
    key_file: KeyFile = None,
    key_fd: KeyFd = None,
    key_slot: KeySlot = None,
    force: Annotated[
        bool, typer.Option("--force", help="allow removing the last key slot")
    ] = False,
) -> None:
    """Remove a key slot: the one given by --key-slot, or the one the given key opens."""
    with Volume.load(device) as vol:
        if key_slot is None:
            slot = vol.test_key(read_key(key_file, key_fd))
        else:
            if key_file is not None or key_fd is not None:
                read_key(key_file, key_fd)  # consumed so that stdin is not left unread
            slot = key_slot
        active = vol.active_slots()
        if active == [slot] and not force:
            raise LuksError(
                f"{device}: key slot {slot} is the last one; removing it loses the data",
                hint="pass --force to remove it anyway",
            )
        vol.destroy_slot(slot)
    typer.echo(f"{device}: key slot {slot} removed", err=True)


def test_key(
    device: Device,
    key_file: KeyFile = None,
    key_fd: KeyFd = None,
    key_slot: KeySlot = None,
) -> None:
    """Exit 0 when the key opens DEVICE (in --key-slot if given), 2 when it does not."""
    test_key_job(device, key_file, key_fd, key_slot)
