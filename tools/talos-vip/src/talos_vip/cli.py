"""The ``talos-vip`` command line: ``run`` (the daemon) and ``status``."""

from __future__ import annotations

from collections.abc import Sequence

from libtalos.cli import entry, fast_version
from talos_vip import __version__

PROG = "talos-vip"


def main(argv: Sequence[str] | None = None) -> int:
    fast = fast_version(argv, PROG, __version__)
    if fast is not None:
        return fast
    from libtalos.cli import run
    from talos_vip.app import app

    return run(app, argv, prog=PROG)


console = entry(main)
