"""talos-gen's command line: one Typer app, one module per command.

Exit codes (libtalos.errors.ExitCode): 0 ok; 1 the input is bad or invalid, a file exists, I/O
failed; 2 the command line is wrong (unknown flag, bad endpoint, bad --mode); 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from libtalos.cli import fast_version
from talos_gen import __version__

PROG = "talos-gen"


def main(argv: Sequence[str] | None = None) -> int:
    """Run talos-gen with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    quick = fast_version(argv, PROG, __version__)
    if quick is not None:
        return quick
    from libtalos.cli import run
    from talos_gen.app import app

    return run(app, argv, prog=PROG)


def entry() -> None:
    sys.exit(main())
