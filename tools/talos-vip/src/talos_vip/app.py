"""The Typer app of talos-vip (imported only when a command runs, never for a lone
``--version``)."""

from __future__ import annotations

from libtalos.cli import make_app, version_option
from talos_vip import __version__
from talos_vip.cli import PROG
from talos_vip.commands.run import run
from talos_vip.commands.status import status

HELP = "Shared (virtual) IP held by one node at a time: etcd election, netlink, GARP/NA."

app = make_app(name=PROG, help=HELP, no_args_is_help=True)
app.command("run")(run)
app.command("status")(status)


@app.callback(help=HELP)
def _root(version: bool = version_option(PROG, __version__)) -> None:
    pass
