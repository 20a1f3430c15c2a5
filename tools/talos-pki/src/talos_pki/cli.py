"""Entry point: ``main(argv) -> int``.

Two answers skip the CLI framework entirely, because they are the ones run in loops and while a
node waits: ``--version`` (:func:`libtalos.cli.fast_version`) and ``fingerprint FILE``
(:mod:`talos_pki.spki`, standard library only). Everything else goes through the Typer app in
:mod:`talos_pki.app` and the one exception-to-exit-code runner, :func:`libtalos.cli.run`.
"""

from __future__ import annotations

import sys

from libtalos.cli import fast_version, handle
from talos_pki import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

PROG = "talos-pki"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    code = fast_version(args, PROG, __version__)
    if code is not None:
        return code
    from libtalos.errors import TalosError

    if len(args) == 2 and args[0] == "fingerprint" and (args[1] == "-" or args[1][:1] != "-"):
        from talos_pki.spki import fingerprint_input

        try:
            sys.stdout.write(fingerprint_input(args[1]) + "\n")
        except (TalosError, BrokenPipeError) as exc:
            return handle(exc)
        return 0

    secrets_args = _simple_secrets_args(args)
    if secrets_args is not None:
        from libtalos.lazyre import import_deferred

        import_deferred("yaml", "cryptography.x509")  # patterns this command never uses
        from talos_pki.outputs import write_secrets

        try:
            write_secrets(**secrets_args)
        except (TalosError, BrokenPipeError) as exc:
            return handle(exc)
        return 0

    from libtalos.cli import run
    from talos_pki.app import app

    return run(app, args, prog=PROG)


def _simple_secrets_args(args: list[str]) -> dict[str, Any] | None:
    """``secrets`` with only -o/--output, --talos-version and --force, each at most once, parsed
    as Click would; ``None`` for anything else (help, typos, repeats), which Typer then handles."""
    if not args or args[0] != "secrets":
        return None
    values: dict[str, Any] = {"talos_version": "", "output": "-", "force": False}
    seen: set[str] = set()
    rest = args[1:]
    while rest:
        arg = rest.pop(0)
        name, eq, value = arg.partition("=")
        setting: str | bool
        if arg == "--force":
            key, setting = "force", True
        elif name in ("-o", "--output", "--talos-version") and not (eq and name == "-o"):
            if not eq:
                if not rest or (rest[0].startswith("-") and rest[0] != "-"):
                    return None
                value = rest.pop(0)
            key = "talos_version" if name == "--talos-version" else "output"
            setting = value
        else:
            return None
        if key in seen:
            return None
        seen.add(key)
        values[key] = setting
    return values


def console() -> None:
    """The ``talos-pki`` console script."""
    sys.exit(main())
