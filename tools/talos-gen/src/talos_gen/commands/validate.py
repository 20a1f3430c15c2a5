"""``talos-gen validate --mode MODE [FILE|-]``: check a machine config as a node would.

Prints ``<file> is valid for <mode> mode`` on success; warnings go to stderr; every error is
reported at once with its key path and line (exit 1).
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum

import typer


class Mode(StrEnum):
    metal = "metal"
    cloud = "cloud"
    container = "container"


def validate_command(
    mode: Mode = typer.Option(..., "--mode", "-m", help="The runtime mode to validate for."),
    file: str | None = typer.Argument(None, help="The config file; '-' for stdin."),
    config: str | None = typer.Option(
        None, "--config", "-c", help="The config file (talosctl's spelling of FILE)."
    ),
    strict: bool = typer.Option(False, "--strict", help="Treat warnings as errors."),
) -> None:
    """Validate a machine config for a runtime mode."""
    from libtalos import config as cfgmod
    from libtalos.errors import UsageError, ValidationError
    from libtalos.fsutil import read_input

    if file is not None and config is not None and file != config:
        raise UsageError("give the config either as FILE or with --config, not both")
    name = config or file
    if name is None:
        raise UsageError(
            "no config given", hint="talos-gen validate --mode metal FILE (or - for stdin)"
        )
    text, source = read_input(name)
    loaded = cfgmod.load(text, source)
    result = cfgmod.validate(loaded.config, mode.value, path_exists=os.path.exists)
    for warning in result.warnings:
        sys.stderr.write(f"warning: {warning.render()}\n")
    problems = list(result.errors) + (list(result.warnings) if strict else [])
    if problems:
        raise ValidationError(problems, summary=f"{source} is not valid for {mode.value} mode:")
    sys.stdout.write(f"{source} is valid for {mode.value} mode\n")
