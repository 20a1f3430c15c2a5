"""The ``talos-image`` command line: one command per artefact of the image."""

from __future__ import annotations

from collections.abc import Sequence

from libtalos.cli import entry, fast_version
from talos_image import __version__

PROG = "talos-image"


def main(argv: Sequence[str] | None = None) -> int:
    fast = fast_version(argv, PROG, __version__)
    if fast is not None:
        return fast
    from libtalos.cli import run
    from talos_image.app import app

    return run(app, argv, prog=PROG)


console = entry(main)
