"""Entry point: ``main(argv) -> int``.

Three answers skip the CLI framework entirely, because they are the ones run in loops and while
a node waits: ``--version`` (:func:`libtalos.cli.fast_version`), ``fingerprint FILE``
(:mod:`talos_pki.spki`, standard library only) and ``secrets`` with its common options, both
from the table :data:`FAST_COMMANDS` (:mod:`libtalos.fastpath`). Everything else goes through
the Typer app in :mod:`talos_pki.app` and the one exception-to-exit-code runner,
:func:`libtalos.cli.run`.
"""

from __future__ import annotations

import sys

from libtalos.cli import entry, fast_version
from libtalos.fastpath import FLAG, Command
from talos_pki import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

PROG = "talos-pki"


def _fingerprint(file: str) -> None:
    from talos_pki.spki import fingerprint_input

    sys.stdout.write(fingerprint_input(file) + "\n")


def _secrets(**values: Any) -> None:
    from libtalos.lazyre import import_deferred

    import_deferred("yaml", "cryptography.x509")  # patterns this command never uses
    from talos_pki.outputs import write_secrets

    write_secrets(**values)


# The fast forms, with the option names and defaults of the Typer commands.
FAST_COMMANDS = {
    "fingerprint": Command(_fingerprint, ("file",)),
    "secrets": Command(
        _secrets,
        options={
            "-o": ("output", str),
            "--output": ("output", str),
            "--talos-version": ("talos_version", str),
            "--force": ("force", FLAG),
        },
        defaults={"talos_version": "", "output": "-", "force": False},
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    code = fast_version(args, PROG, __version__)
    if code is not None:
        return code
    from libtalos import fastpath

    code = fastpath.run(FAST_COMMANDS, args)
    if code is not None:
        return code
    from libtalos.cli import run
    from talos_pki.app import app

    return run(app, args, prog=PROG)


console = entry(main)
