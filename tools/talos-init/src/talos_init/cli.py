"""``talos-init``: run the node as PID 1.

    talos-init --mode container --state-dir DIR [--services-dir DIR] [--config FILE|URL]
               [--cmdline "talos.config=URL talos.hostname=NAME"]

Exit codes: see :mod:`talos_init.shutdown` (0 shutdown, 1 fatal boot error, 2 usage,
128+N stopped by signal N after an orderly stop).

The common command line is parsed by :mod:`libtalos.fastpath` from the options declared in
:mod:`talos_init.options`, without Typer and click: they would stay resident in PID 1 once
imported (about 1.5 MiB of its 40 MiB budget). Anything unusual (``--help``, a missing or bad
value) goes to the Typer command of :mod:`talos_init.app`, built from the same declaration.
"""

from __future__ import annotations

import sys

from libtalos.cli import entry, fast_version
from talos_init import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: `--version` imports nothing more than the interpreter
    from collections.abc import Sequence
    from typing import Any

    from libtalos.fastpath import Command


def main(argv: Sequence[str] | None = None) -> int:
    fast = fast_version(argv, "talos-init", __version__)
    if fast is not None:
        return fast
    from libtalos import fastpath

    args = list(sys.argv[1:] if argv is None else argv)
    code = fastpath.run(command_line(), args)
    if code is not None:
        return code
    from libtalos.cli import run
    from talos_init.app import app

    return run(app, args, prog="talos-init")


def command_line() -> Command:
    """The common command line, one option per field of :class:`talos_init.options.BootOptions`
    with its type and default (``--mode`` and ``--state-dir`` required)."""
    import dataclasses

    from libtalos.fastpath import FLAG, OFF, Command
    from talos_init.options import FIELDS, flag, value_type

    options: dict[str, tuple[str, Any]] = {}
    defaults: dict[str, Any] = {}
    for field in FIELDS:
        kind = value_type(field)
        if kind is bool:
            options[flag(field)] = (field.name, FLAG)
            options["--no-" + flag(field)[2:]] = (field.name, OFF)
        else:
            options[flag(field)] = (field.name, kind)
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
    required = tuple(f.name for f in FIELDS if f.name not in defaults)
    return Command(_boot, options=options, required=required, defaults=defaults)


def _boot(**values: Any) -> int:
    from talos_init.boot import boot_node
    from talos_init.options import BootOptions

    return boot_node(BootOptions(**values))


console = entry(main)
