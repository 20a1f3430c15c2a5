"""The Typer app; each command lives in its own module and registers itself here."""

from __future__ import annotations

import typer

from talos_gen import __version__

app = typer.Typer(
    name="talos-gen",
    help="Generate, validate and patch Talos v1alpha1 machine configs (YAML in, YAML out).",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"talos-gen {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Generate, validate and patch Talos v1alpha1 machine configs."""


from talos_gen import cmd_config, cmd_patch, cmd_validate  # noqa: E402  (commands register on app)

__all__ = ["app", "cmd_config", "cmd_patch", "cmd_validate"]
