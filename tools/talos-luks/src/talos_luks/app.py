"""The Typer app of talos-luks (imported only when a command line is not one of the fast forms
of :mod:`talos_luks.fastpath`)."""

from __future__ import annotations

import typer

from libtalos.cli import make_app, version_option
from talos_luks import __version__
from talos_luks.cli import HELP, PROG
from talos_luks.commands.apply import apply_cmd
from talos_luks.commands.derive import derive_nodeid
from talos_luks.commands.header import add_key, dump, format_, remove_key, test_key
from talos_luks.commands.map import close, open_, status
from talos_luks.logs import setup_logging

app = make_app(name=PROG, help=HELP, no_args_is_help=True)
app.command("format")(format_)
app.command("open")(open_)
app.command("close")(close)
app.command("status")(status)
app.command("dump")(dump)
app.command("add-key")(add_key)
app.command("remove-key")(remove_key)
app.command("test-key")(test_key)
derive = make_app(help="Derive a key from the node's identity.", no_args_is_help=True)
derive.command("nodeid")(derive_nodeid)
app.add_typer(derive, name="derive-key")
app.command("apply")(apply_cmd)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show libcryptsetup's messages"),
    debug: bool = typer.Option(False, "--debug", help="show libcryptsetup's debug log"),
    version: bool = version_option(PROG, __version__),
) -> None:
    setup_logging(verbose, debug)
