"""The Typer app of talos-cluster (imported only when a command runs, never for a lone
``--version``)."""

from __future__ import annotations

from libtalos.cli import make_app, version_option
from talos_cluster import __version__
from talos_cluster.cli import PROG
from talos_cluster.commands.create import create
from talos_cluster.commands.destroy import destroy
from talos_cluster.commands.show import show

app = make_app(
    no_args_is_help=True,
    help="Local Talos clusters: talos-init nodes on a bridge in this network namespace.",
)


@app.callback()
def _root(version: bool = version_option(PROG, __version__)) -> None:
    # the help is the app's; --version with other arguments is answered here (alone, by
    # libtalos.cli.fast_version before Typer is imported)
    pass


app.command()(create)
app.command()(destroy)
app.command()(show)
