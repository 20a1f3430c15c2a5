"""talos-gen's command line: one Typer app, one module per command.

Exit codes (libtalos.errors.ExitCode): 0 ok; 1 the input is bad or invalid, a file exists, I/O
failed; 2 the command line is wrong (unknown flag, bad endpoint, bad --mode); 130 interrupted.
"""

from __future__ import annotations

import sys

from libtalos.cli import entry, fast_version
from libtalos.fastpath import FLAG, Command
from talos_gen import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

PROG = "talos-gen"


def _config(**values: Any) -> None:
    from libtalos.lazyre import import_deferred

    import_deferred("yaml", "cryptography.x509")  # patterns this command never uses
    from talos_gen.configjob import run

    run(**values)


# The common `config NAME ENDPOINT [-o DIR] [--with-secrets F] [--force]` skips the CLI
# framework (about a third of the command's time); anything else goes through Typer, which
# knows every flag and reports typos (see libtalos.fastpath).
FAST_COMMANDS = {
    "config": Command(
        _config,
        ("name", "endpoint"),
        {
            "-o": ("output_dir", str),
            "--output-dir": ("output_dir", str),
            "--with-secrets": ("with_secrets", str),
            "--force": ("force", FLAG),
        },
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run talos-gen with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    quick = fast_version(argv, PROG, __version__)
    if quick is not None:
        return quick
    from libtalos import fastpath

    args = list(sys.argv[1:] if argv is None else argv)
    code = fastpath.run(FAST_COMMANDS, args)
    if code is not None:
        return code
    from libtalos.cli import run
    from talos_gen.app import app

    return run(app, args, prog=PROG)


console = entry(main)
