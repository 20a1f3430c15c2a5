"""The Typer app: one module per command under :mod:`talos_gen.commands`, registered here."""

from __future__ import annotations

from libtalos.cli import make_app, version_option
from talos_gen import __version__
from talos_gen.commands import config, patch, validate

app = make_app(
    name="talos-gen",
    help="Generate, validate and patch Talos v1alpha1 machine configs (YAML in, YAML out).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    version: bool = version_option("talos-gen", __version__, "Print the version and exit."),
) -> None:
    """Generate, validate and patch Talos v1alpha1 machine configs."""


app.command("config")(config.config_command)
app.command("patch")(patch.patch_command)
app.command("validate")(validate.validate_command)
