"""The ``talos-luks`` command line.

Exit codes are cryptsetup's (see ``talos_luks.errors``): command-line usage errors exit 1, as
cryptsetup's do, not Click's 2 -- 2 means a wrong passphrase here.

The common forms of format, open, close, status, dump, test-key and apply are parsed by
``libtalos.fastpath`` from the table in ``talos_luks.fastpath``, without importing Typer;
everything else goes through the Typer app and ``libtalos.cli.run`` with :data:`EXIT_CODES`.
Both run the functions of ``talos_luks.jobs``.
"""

from __future__ import annotations

import sys

from libtalos.cli import entry, fast_version
from talos_luks import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # `--version` imports nothing beyond the interpreter's own start
    from collections.abc import Sequence

PROG = "talos-luks"
HELP = (
    "LUKS2 volumes for Talos's STATE and EPHEMERAL partitions, through libcryptsetup. "
    "Exit codes (cryptsetup's): 0 ok; 1 bad parameters (usage errors too) or failure, and "
    "open/status without device-mapper; 2 bad passphrase; 3 out of memory; 4 wrong device, "
    "close/status of an inactive name, close without device-mapper; 5 busy or exists."
)
# Where the exit codes differ from libtalos's (cryptsetup's table: talos_luks.errors.LuksExit).
EXIT_CODES = {"usage": 1}  # cryptsetup's "wrong parameters"; 2 means a wrong passphrase here


def main(argv: Sequence[str] | None = None) -> int:
    fast = fast_version(argv, PROG, __version__)
    if fast is not None:
        return fast
    from libtalos import fastpath as fast_forms
    from talos_luks import fastpath
    from talos_luks.logs import setup_logging

    args = list(sys.argv[1:] if argv is None else argv)
    # The common forms skip Typer; same jobs, same exit codes.
    code = fast_forms.run(fastpath.COMMANDS, args, setup=lambda: setup_logging(False, False))
    if code is not None:
        return code
    from libtalos.cli import run
    from talos_luks.app import app

    return run(app, args, prog=PROG, exit_codes=EXIT_CODES)


console = entry(main)
