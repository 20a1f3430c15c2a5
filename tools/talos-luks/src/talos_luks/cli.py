"""The ``talos-luks`` command line.

Exit codes are cryptsetup's (see ``talos_luks.errors``): command-line usage errors exit 1, as
cryptsetup's do, not Click's 2 -- 2 means a wrong passphrase here.

The common forms of format, open, close, status, dump, test-key and apply are parsed by
``talos_luks.fastpath`` without importing Typer; everything else goes through the Typer app.
Both run the functions of ``talos_luks.jobs``.
"""

from __future__ import annotations

import sys

from libtalos.cli import entry, fast_version
from talos_luks import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # `--version` imports nothing beyond the interpreter's own start
    import logging
    from collections.abc import Sequence
    from typing import Any

PROG = "talos-luks"
HELP = (
    "LUKS2 volumes for Talos's STATE and EPHEMERAL partitions, through libcryptsetup. "
    "Exit codes (cryptsetup's): 0 ok; 1 bad parameters (usage errors too) or failure, and "
    "open/status without device-mapper; 2 bad passphrase; 3 out of memory; 4 wrong device, "
    "close/status of an inactive name, close without device-mapper; 5 busy or exists."
)


def _app() -> Any:
    import typer

    from talos_luks.cmd_apply import apply_cmd
    from talos_luks.cmd_derive import derive_nodeid
    from talos_luks.cmd_header import add_key, dump, format_, remove_key, test_key
    from talos_luks.cmd_map import close, open_, status

    app = typer.Typer(
        name=PROG,
        help=HELP,
        pretty_exceptions_enable=False,
        add_completion=False,
        no_args_is_help=True,
    )
    app.command("format")(format_)
    app.command("open")(open_)
    app.command("close")(close)
    app.command("status")(status)
    app.command("dump")(dump)
    app.command("add-key")(add_key)
    app.command("remove-key")(remove_key)
    app.command("test-key")(test_key)
    derive = typer.Typer(help="Derive a key from the node's identity.", no_args_is_help=True)
    derive.command("nodeid")(derive_nodeid)
    app.add_typer(derive, name="derive-key")
    app.command("apply")(apply_cmd)

    def version_callback(value: bool) -> None:
        if value:
            typer.echo(f"{PROG} {__version__}")
            raise typer.Exit

    @app.callback()
    def _root(
        verbose: bool = typer.Option(
            False, "--verbose", "-v", help="show libcryptsetup's messages"
        ),
        debug: bool = typer.Option(False, "--debug", help="show libcryptsetup's debug log"),
        version: bool = typer.Option(
            False, "--version", callback=version_callback, is_eager=True, help="print the version"
        ),
    ) -> None:
        _setup_logging(verbose, debug)

    return app


def _stderr_handler() -> logging.Handler:
    """A handler writing to whatever ``sys.stderr`` is now (in-process callers may swap it)."""
    import logging

    class StderrHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                sys.stderr.write(self.format(record) + "\n")
            except Exception:  # noqa: BLE001 - logging must never raise into the command
                self.handleError(record)

    return StderrHandler()


def _setup_logging(verbose: bool, debug: bool) -> None:
    """Our progress at INFO on stderr; libcryptsetup's messages only with -v/--debug."""
    import logging

    root = logging.getLogger("talos_luks")
    if not root.handlers:
        handler = _stderr_handler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    lib_level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.getLogger("talos_luks.libcryptsetup").setLevel(lib_level)
    if debug:
        from talos_luks.binding import set_debug

        set_debug(True)


def main(argv: Sequence[str] | None = None) -> int:
    fast = fast_version(argv, PROG, __version__)
    if fast is not None:
        return fast
    from libtalos.cli import handle
    from talos_luks.fastpath import parse

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        job = parse(args)
    except Exception as exc:  # noqa: BLE001 - a bad option value of a common form
        return handle(exc)
    if job is not None:
        # The common forms skip Typer (see talos_luks.fastpath); same jobs, same exit codes.
        _setup_logging(False, False)
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - exceptions become exit codes in handle()
            if isinstance(exc, SystemExit):
                return int(exc.code) if isinstance(exc.code, int) else 1
            return handle(exc)
        return 0
    import typer.main

    try:
        from click.exceptions import Abort, ClickException, Exit, UsageError
    except ImportError:  # typer 0.27 vendors click as typer._click (as in libtalos.cli.run)
        from typer._click.exceptions import ClickException, UsageError  # type: ignore[no-redef,unused-ignore]
        from typer.exceptions import Abort, Exit  # type: ignore[no-redef,assignment,unused-ignore]

    from libtalos.cli import go_booleans

    command = typer.main.get_command(_app())
    try:
        args = go_booleans(command, args)
        result = command.main(args=args, prog_name=PROG, standalone_mode=False)
    except UsageError as exc:
        exc.show()
        return 1  # cryptsetup's "wrong parameters"
    except Abort:
        sys.stderr.write("interrupted\n")
        return 130
    except Exit as exc:
        return int(exc.exit_code)
    except ClickException as exc:
        exc.show()
        return 1
    except BaseException as exc:  # noqa: BLE001 - exceptions become exit codes in handle()
        if isinstance(exc, SystemExit):
            return int(exc.code) if isinstance(exc.code, int) else 1
        return handle(exc)
    return int(result) if isinstance(result, int) else 0


console = entry(main)
