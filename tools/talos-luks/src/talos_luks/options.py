"""Command-line options shared by several commands (Typer ``Annotated`` aliases)."""

from __future__ import annotations

from typing import Annotated

import typer

from talos_luks.jobs import make_pbkdf as pbkdf
from talos_luks.volume import Pbkdf

KeyFile = Annotated[
    str | None,
    typer.Option("--key-file", "-d", help="read the key from FILE ('-' for stdin), bytes as is"),
]
KeyFd = Annotated[int | None, typer.Option("--key-fd", help="read the key from file descriptor N")]
KeySlot = Annotated[int | None, typer.Option("--key-slot", "-S", help="key slot number (0-31)")]
PbkdfType = Annotated[str, typer.Option("--pbkdf", help="argon2id, argon2i or pbkdf2")]
PbkdfMemory = Annotated[
    int, typer.Option("--pbkdf-memory", help="argon2 memory cost in KiB (default 256 MiB)")
]
PbkdfParallel = Annotated[int, typer.Option("--pbkdf-parallel", help="argon2 threads")]
IterTime = Annotated[int, typer.Option("--iter-time", "-i", help="PBKDF unlock time target in ms")]
ForceIterations = Annotated[
    int,
    typer.Option(
        "--pbkdf-force-iterations",
        help="fixed PBKDF cost (pbkdf2 iterations or argon2 time cost), no benchmark",
    ),
]

DEFAULT = Pbkdf()

__all__ = ["DEFAULT", "pbkdf"]
