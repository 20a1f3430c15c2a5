"""The Typer app of ``talos-init`` (imported only when a command runs, never for --version).

Its one command takes the options declared in :mod:`talos_init.options`: each field of
``BootOptions`` becomes a parameter with the field's type, default and help.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Annotated, Any

import typer

from libtalos.cli import make_app
from talos_init.boot import boot_node
from talos_init.options import FIELDS, BootOptions

app = make_app(
    help="PID 1 of a Talos node: boot sequence, service supervisor, zombie reaper.",
)


def boot(**values: Any) -> int:
    return boot_node(BootOptions(**values))


def _parameter(field: dataclasses.Field[Any]) -> inspect.Parameter:
    option = typer.Option(help=field.metadata["help"], hidden=field.metadata["hidden"])
    default = inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default
    return inspect.Parameter(
        field.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[field.type, option],
    )


# Typer reads a command's options from its signature: this one is BootOptions's fields.
boot.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [_parameter(field) for field in FIELDS], return_annotation=int
)
app.command()(boot)
