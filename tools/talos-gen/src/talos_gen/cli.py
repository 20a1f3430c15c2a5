"""talos-gen's command line: one Typer app, one module per command.

Exit codes (libtalos.errors.ExitCode): 0 ok; 1 the input is bad or invalid, a file exists, I/O
failed; 2 the command line is wrong (unknown flag, bad endpoint, bad --mode); 130 interrupted.
"""

from __future__ import annotations

import sys

from libtalos.cli import fast_version
from talos_gen import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

PROG = "talos-gen"


def main(argv: Sequence[str] | None = None) -> int:
    """Run talos-gen with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    quick = fast_version(argv, PROG, __version__)
    if quick is not None:
        return quick
    args = list(sys.argv[1:] if argv is None else argv)
    simple = simple_config_args(args)
    if simple is not None:
        # The common `config NAME ENDPOINT [-o DIR] [--with-secrets F] [--force]` skips the CLI
        # framework (about a third of the command's time); anything else goes through Typer.
        from libtalos.cli import handle
        from libtalos.lazyre import import_deferred

        import_deferred("yaml", "cryptography.x509")  # patterns this command never uses
        from talos_gen.configjob import run as run_config

        try:
            run_config(**simple)
        except BaseException as exc:  # handed to the one exception-to-exit-code mapper
            if isinstance(exc, SystemExit):
                raise
            return handle(exc)
        return 0
    from libtalos.cli import run
    from talos_gen.app import app

    return run(app, argv, prog=PROG)


def simple_config_args(args: list[str]) -> dict[str, Any] | None:
    """``config NAME ENDPOINT`` with only ``-o/--output-dir``, ``--with-secrets`` (each at most
    once, as ``--flag value`` or ``--flag=value``) and ``--force``; None for anything else (help,
    other flags, repeats, typos), which Typer then parses and reports."""
    if len(args) < 3 or args[0] != "config" or any(a.startswith("-") for a in args[1:3]):
        return None
    values: dict[str, Any] = {"name": args[1], "endpoint": args[2]}
    rest = args[3:]
    while rest:
        arg = rest.pop(0)
        if arg == "--force" and "force" not in values:
            values["force"] = True
            continue
        flag, eq, value = arg.partition("=")
        key = {"-o": "output_dir", "--output-dir": "output_dir", "--with-secrets": "with_secrets"}
        if flag not in key or key[flag] in values or (eq and flag == "-o"):
            return None
        if not eq:
            if not rest or (rest[0].startswith("-") and rest[0] != "-"):
                return None
            value = rest.pop(0)
        values[key[flag]] = value
    return values


def entry() -> None:
    sys.exit(main())
