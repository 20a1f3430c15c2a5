"""Choices and option types shared by several commands."""

from __future__ import annotations

import enum
from typing import Annotated

import typer


class Algorithm(enum.StrEnum):
    ecdsa = "ecdsa"
    ed25519 = "ed25519"
    rsa = "rsa"


class Hash(enum.StrEnum):
    sha512 = "sha512"
    sha256 = "sha256"


class Kind(enum.StrEnum):
    server = "server"
    client = "client"
    peer = "peer"


Output = Annotated[
    str,
    typer.Option("--output", "-o", help="Write here instead of stdout ('-'); written 0600."),
]
Force = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]
