"""The Typer app of talos-cluster (imported only when a command runs, never for --version)."""

from __future__ import annotations

import typer

from talos_cluster.cmd_create import create
from talos_cluster.cmd_destroy import destroy
from talos_cluster.cmd_show import show

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Local Talos clusters: talos-init nodes on a bridge in this network namespace.",
)
app.command()(create)
app.command()(destroy)
app.command()(show)
