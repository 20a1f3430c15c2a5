"""Entry point: ``main(argv) -> int``; ``--version`` answers without importing Typer."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from libtalos.cli import entry, fast_version
from talos_apply import __version__

PROG = "talos-apply"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    code = fast_version(args, PROG, __version__)
    if code is not None:
        return code
    from libtalos.cli import run
    from talos_apply.app import app

    return run(app, args, prog=PROG)


console = entry(main)
