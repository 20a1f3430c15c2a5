"""The work of the common commands, with no CLI framework: format, open, close, status, dump,
test-key and apply.

Both command lines run these functions: the Typer commands (``talos_luks.commands``) after Click
parsed the arguments, and the fast path (``fastpath.py``: a table for :mod:`libtalos.fastpath`)
that parses the common forms itself, so the two paths print, write and fail alike by
construction. Data goes to stdout, progress to stderr, as
``typer.echo`` would write them (one line, flushed).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from talos_luks.volume import Pbkdf

DEFAULT_CIPHER = "aes-xts-plain64"


def _out(text: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text)
    stream.flush()


# cryptsetup's bounds for the PBKDF options (it refuses the same values with exit 1).
PBKDF_MEMORY_KB = (32, 4 * 1024 * 1024)  # argon2 memory cost: 32 KiB to 4 GiB
PBKDF_PARALLEL = (1, 4)  # argon2 threads
UINT32_MAX = 2**32 - 1  # --iter-time and --pbkdf-force-iterations are 32-bit in libcryptsetup


def make_pbkdf(kind: str, memory: int, parallel: int, iter_time: int, iterations: int) -> Pbkdf:
    """The PBKDF of the options, each checked against cryptsetup's bounds first."""
    from talos_luks.errors import LuksError
    from talos_luks.volume import Pbkdf

    checks = [
        ("--pbkdf-memory", memory, *PBKDF_MEMORY_KB, " KiB"),
        ("--pbkdf-parallel", parallel, *PBKDF_PARALLEL, ""),
        ("--iter-time", iter_time, 0, UINT32_MAX, " ms"),
        ("--pbkdf-force-iterations", iterations, 0, UINT32_MAX, ""),
    ]
    for option, value, low, high, unit in checks:
        if not low <= value <= high:
            raise LuksError(f"{option}: {value} is out of range ({low} to {high}{unit})")
    return Pbkdf(
        type=kind, time_ms=iter_time, iterations=iterations, memory_kb=memory, parallel=parallel
    )


def default_pbkdf() -> Pbkdf:
    from talos_luks.volume import Pbkdf

    return Pbkdf()


def format_job(
    device: str,
    key_file: str | None = None,
    key_fd: int | None = None,
    key_slot: int | None = None,
    cipher: str = DEFAULT_CIPHER,
    key_size: int = 0,
    sector_size: int = 512,
    label: str | None = None,
    pbkdf: Pbkdf | None = None,
    force: bool = False,
) -> None:
    from talos_luks.errors import WrongDeviceError
    from talos_luks.keys import read_key
    from talos_luks.volume import FormatOptions, Volume, is_empty

    key = read_key(key_file, key_fd)
    if not force and not is_empty(device):
        raise WrongDeviceError(
            f"{device}: not empty (its first MiB holds data); refusing to format it",
            hint="pass --force to destroy what it holds",
        )
    opts = FormatOptions(
        cipher=cipher,
        key_size=key_size,
        sector_size=sector_size,
        label=label,
        pbkdf=pbkdf or default_pbkdf(),
    )
    with Volume.handle(device) as vol:
        slot = vol.format(key, 0 if key_slot is None else key_slot, opts)
    _out(f"{device}: formatted LUKS2, key slot {slot}\n", err=True)


def dump_job(device: str) -> None:
    from libtalos.yamlio import dump as dump_yaml
    from talos_luks.volume import Volume

    with Volume.load(device) as vol:
        data = vol.describe()
    _out(dump_yaml(data))


def test_key_job(
    device: str, key_file: str | None = None, key_fd: int | None = None, key_slot: int | None = None
) -> None:
    from talos_luks.keys import read_key
    from talos_luks.volume import Volume

    key = read_key(key_file, key_fd)
    with Volume.load(device) as vol:
        slot = vol.test_key(key, -1 if key_slot is None else key_slot)
    _out(f"{device}: key opens slot {slot}\n", err=True)


def open_job(
    device: str,
    name: str,
    key_file: str | None = None,
    key_fd: int | None = None,
    key_slot: int | None = None,
    readonly: bool = False,
    allow_discards: bool = False,
) -> None:
    from talos_luks.binding import lib
    from talos_luks.keys import read_key
    from talos_luks.volume import Volume

    key = read_key(key_file, key_fd)
    flags = (lib.CRYPT_ACTIVATE_READONLY if readonly else 0) | (
        lib.CRYPT_ACTIVATE_ALLOW_DISCARDS if allow_discards else 0
    )
    with Volume.load(device) as vol:
        vol.activate(name, key, -1 if key_slot is None else key_slot, flags)
    _out(f"/dev/mapper/{name}\n")


def close_job(name: str) -> None:
    from talos_luks.volume import deactivate

    deactivate(name)


def status_job(name: str) -> None:
    from libtalos.yamlio import dump
    from talos_luks.volume import mapping_status

    _out(dump(mapping_status(name)))


def apply_job(
    partition: str,
    device: str,
    config: str = "-",
    name: str | None = None,
    uuid: str | None = None,
    no_activate: bool = False,
    pbkdf: Pbkdf | None = None,
) -> None:
    from libtalos.fsutil import read_input
    from talos_luks.apply import apply
    from talos_luks.config import read_encryption
    from talos_luks.errors import LuksError

    if partition not in ("STATE", "EPHEMERAL"):
        raise LuksError(f"--partition: must be STATE or EPHEMERAL, not {partition!r}")
    text, source = read_input(config)
    spec = read_encryption(text, source, partition)
    if spec is None:
        raise LuksError(
            f"{source}: machine.systemDiskEncryption.{partition.lower()} is not set;"
            " nothing to encrypt"
        )
    result = apply(
        device,
        spec,
        partition=partition,
        system_uuid=uuid,
        name=name,
        pbkdf=pbkdf or default_pbkdf(),
        activate=not no_activate,
    )
    if result.path:
        _out(f"{result.path}\n")
