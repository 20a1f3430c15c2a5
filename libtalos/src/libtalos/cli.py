"""The one place where exceptions become a message on stderr and an exit code.

Every tool's ``main(argv)`` is ``run(app, argv, prog=...)`` around its Typer app, after its fast
paths (:func:`fast_version`, :mod:`libtalos.fastpath`), which map exceptions with the same
:func:`handle`. Typer and click are imported only when a tool actually runs a command through
the framework, so that a tool's ``--version`` fast path stays fast.
"""

from __future__ import annotations

import os
import sys

# Nothing else is imported at module level: a tool's `--version` goes through this module and
# must cost no more than the interpreter's own start (typing, dataclasses and the error classes
# are loaded only by the functions that need them).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    import typer


def error(message: str, hint: str | None = None) -> None:
    """Print an error (and an optional hint) to stderr."""
    sys.stderr.write(f"error: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")


def handle(exc: BaseException) -> int:
    """Map one exception to its exit code, printing what the user needs to know
    (``SystemExit`` keeps its integer code, silently)."""
    from libtalos.errors import ExitCode, TalosError

    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else int(ExitCode.FAILURE)
    if isinstance(exc, TalosError):
        error(exc.message, exc.hint)
        return int(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        return int(ExitCode.INTERRUPTED)
    if isinstance(exc, BrokenPipeError):
        # The reader went away (e.g. `| head`): not an error of ours; silence the flush at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return int(ExitCode.FAILURE)
    if os.environ.get("TALOS_DEBUG"):
        import traceback  # imported on use: it costs start-up time on every fast path

        traceback.print_exception(exc)
    # Only the type: the message of an unexpected exception might quote input (keys included).
    error(f"internal error ({type(exc).__name__}); rerun with TALOS_DEBUG=1 for a traceback")
    return int(ExitCode.FAILURE)


def run(
    app: Any,
    argv: Sequence[str] | None,
    *,
    prog: str,
    exit_codes: Mapping[str, int] | None = None,
) -> int:
    """Run a Typer app on ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    ``exit_codes`` is the tool's table where it differs from :class:`libtalos.errors.ExitCode`,
    by the lower-case names ``usage`` and ``interrupted``: talos-luks passes
    ``{"usage": 1}`` (cryptsetup's "wrong parameters"). Exceptions of the command itself carry
    their own code (``TalosError.exit_code``) and are mapped by :func:`handle`.
    """
    import typer.main

    from libtalos.errors import ExitCode

    codes = {"usage": int(ExitCode.USAGE), "interrupted": int(ExitCode.INTERRUPTED)}
    codes.update(exit_codes or {})

    # The exception classes of the click that typer itself runs on: typer 0.27 vendors it as
    # typer._click (and a separately installed click would be a different, unused copy).
    try:
        from typer._click.exceptions import ClickException, UsageError
        from typer.exceptions import Abort, Exit
    except ImportError:  # typer releases that depend on click instead
        from click.exceptions import (  # type: ignore[no-redef,assignment,unused-ignore]
            Abort,
            ClickException,
            Exit,
            UsageError,
        )

    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    from libtalos.completion import add_completion_command

    add_completion_command(command, prog)  # every tool's `completion bash|zsh|fish`
    try:
        args = go_booleans(command, args)
        result = command.main(args=args, prog_name=prog, standalone_mode=False)
    except UsageError as exc:
        exc.show()  # click's own "Usage: ... Error: ..." names the argument
        return int(codes["usage"])
    except Abort:
        sys.stderr.write("interrupted\n")
        return int(codes["interrupted"])
    except Exit as exc:
        return int(exc.exit_code)
    except ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except BaseException as exc:  # noqa: BLE001 - this is the one place that maps every exception
        return handle(exc)
    return int(result) if isinstance(result, int) else int(ExitCode.OK)


GO_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
GO_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


def go_booleans(command: Any, args: list[str]) -> list[str]:
    """``args`` with Go-style boolean flags (``--wait=false``, ``--reboot=true``, as talosctl's
    docs write them) turned into the click forms (``--no-wait``, ``--reboot``).

    Which options are booleans is read from the command tree: the options of the command and
    the subcommands named so far. The values are those of Go's ``strconv.ParseBool``. A flag
    with no off form (``--force`` alone) given ``=false`` is dropped when that is its default
    and refused otherwise; anything else (``--wait=maybe``) is refused as a usage error naming it.
    """
    try:
        from typer._click.exceptions import UsageError
    except ImportError:  # pragma: no cover - typer releases that depend on click
        from click.exceptions import UsageError  # type: ignore[no-redef,assignment,unused-ignore]

    out: list[str] = []
    current = command
    flags = _flags(current)
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        name, eq, value = arg.partition("=")
        if eq and name.startswith("--") and name in flags:
            on, off, default = flags[name]
            if value in GO_TRUE:
                out.append(on)
            elif value not in GO_FALSE:
                raise UsageError(f"{name}: expected true or false, got {value!r}")
            elif off:
                out.append(off)
            elif default:
                raise UsageError(f"{name} cannot be turned off")
            continue
        sub = getattr(current, "commands", {}).get(arg) if not arg.startswith("-") else None
        if sub is not None:
            current = sub
            flags = {**flags, **_flags(sub)}
        out.append(arg)
    return out


def _flags(command: Any) -> dict[str, tuple[str, str | None, bool]]:
    """A command's boolean options: each long name -> (on form, off form or None, default)."""
    found: dict[str, tuple[str, str | None, bool]] = {}
    for param in getattr(command, "params", []):
        if not getattr(param, "is_flag", False) or not getattr(param, "is_bool_flag", True):
            continue
        longs = [o for o in param.opts if o.startswith("--")]
        offs = [o for o in param.secondary_opts if o.startswith("--")]
        if not longs:
            continue
        entry = (longs[0], offs[0] if offs else None, bool(param.default))
        for name in longs:
            found[name] = entry
        for name in offs:  # --no-wait=true means --no-wait; =false means --wait
            found[name] = (name, longs[0], not bool(param.default))
    return found


def fast_version(argv: Sequence[str] | None, prog: str, version: str) -> int | None:
    """Answer ``PROG --version`` without importing the CLI framework; ``None`` otherwise."""
    args = sys.argv[1:] if argv is None else argv
    if list(args) == ["--version"]:
        sys.stdout.write(f"{prog} {version}\n")
        return 0
    return None


def make_app(**settings: Any) -> typer.Typer:
    """A tool's Typer app, built the one way every tool builds it: no shell-completion commands
    and no rich tracebacks (:func:`run` maps exceptions); ``settings`` are Typer's own
    (``help``, ``name``, ``no_args_is_help``, ``context_settings``...)."""
    import typer

    return typer.Typer(pretty_exceptions_enable=False, add_completion=False, **settings)


def version_option(prog: str, version: str, help_text: str = "print the version") -> Any:
    """The ``--version`` option of a tool's Typer root callback: prints ``PROG VERSION`` and
    exits 0 before anything else runs (``version: bool = version_option(PROG, __version__)``).

    The plain ``PROG --version`` never gets here (:func:`fast_version` answers it); this one
    answers the other spellings, e.g. with a global option before it.
    """
    import typer

    def callback(value: bool) -> None:
        if value:
            typer.echo(f"{prog} {version}")
            raise typer.Exit

    return typer.Option(False, "--version", callback=callback, is_eager=True, help=help_text)


def entry(main: Callable[[Sequence[str] | None], int]) -> Callable[[], None]:
    """Console-script wrapper: ``sys.exit(main(None))``."""

    def _run() -> None:
        sys.exit(main(None))

    return _run
