"""The ``talos-vip`` command line: ``run`` (the daemon) and ``status``."""

from __future__ import annotations

from collections.abc import Sequence

from libtalos.cli import entry, fast_version
from talos_vip import __version__

PROG = "talos-vip"


def _app() -> object:
    import typer

    from talos_vip.cmd_run import run
    from talos_vip.cmd_status import status

    app = typer.Typer(
        name=PROG,
        help="Shared (virtual) IP held by one node at a time: etcd election, netlink, GARP/NA.",
        pretty_exceptions_enable=False,
        add_completion=False,
        no_args_is_help=True,
    )
    app.command("run")(run)
    app.command("status")(status)

    def version_callback(value: bool) -> None:
        if value:
            typer.echo(f"{PROG} {__version__}")
            raise typer.Exit

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=version_callback, is_eager=True, help="print the version"
        ),
    ) -> None:
        """Shared (virtual) IP held by one node at a time: etcd election, netlink, GARP/NA."""

    return app


def main(argv: Sequence[str] | None = None) -> int:
    fast = fast_version(argv, PROG, __version__)
    if fast is not None:
        return fast
    from libtalos.cli import run

    return run(_app(), argv, prog=PROG)


console = entry(main)
