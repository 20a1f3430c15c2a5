"""Common command lines run without the CLI framework.

Importing Typer and click costs about 0.1 s, most of a fast command's time, and stays resident
in a long-lived process (talos-init is PID 1). A tool declares the forms it runs most as a
table of :class:`Command` rows; :func:`run` parses ``argv`` against that table, runs the job and
maps exceptions to exit codes with :func:`libtalos.cli.handle`, the handler of the Typer path.

Only forms whose meaning is certain are accepted: a known command word (none for a tool without
commands), its positionals, its options spelled exactly (``--opt VALUE``, ``--opt=VALUE``,
``-o VALUE``), each at most once, flags without a value, values that the option's converter
reads (``int``, ``float``, an enum ...). Anything else -- ``--help``, an option before the
command, an unknown or repeated option (or one given under two spellings), a value starting
with ``-`` (other than ``-`` itself), ``--``, a missing or extra positional, a required option
missing, a value the converter refuses with ``ValueError`` -- is not a fast form: :func:`run`
returns ``None`` and the tool's Typer app parses and reports it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

FLAG = "flag"  # a flag: present means True
OFF = "off"  # the off form of a flag (``--no-isolate``): present means False


class Command:
    """One fast form: the job it runs and the arguments it takes.

    ``options`` maps each spelling (``--key-file``, ``-d``) to ``(destination, kind)``, where
    kind is :data:`FLAG`, :data:`OFF` or a converter such as ``str``, ``int`` or ``float``.
    ``defaults`` fills in destinations that were not given; the job is called with the values
    as keyword arguments and its ``int`` result, if any, is the exit code.

    A plain class, not a dataclass: importing dataclasses would cost every fast path.
    """

    __slots__ = ("defaults", "job", "options", "positionals", "required")

    def __init__(
        self,
        job: Callable[..., object],
        positionals: tuple[str, ...] = (),
        options: Mapping[str, tuple[str, Any]] | None = None,
        *,
        required: tuple[str, ...] = (),
        defaults: Mapping[str, object] | None = None,
    ) -> None:
        self.job = job
        self.positionals = positionals
        self.options = dict(options or {})
        self.required = required
        self.defaults = dict(defaults or {})


def _is_value(arg: str) -> bool:
    return arg == "-" or not arg.startswith("-")


def parse(
    table: Command | Mapping[str, Command], args: Sequence[str]
) -> tuple[Command, dict[str, Any]] | None:
    """The command and its keyword arguments for a fast form of ``args``; ``None`` otherwise.

    ``table`` is one :class:`Command` (a tool without command words) or a mapping from command
    word to :class:`Command`.
    """
    rest = list(args)
    if isinstance(table, Command):
        command = table
    else:
        if not rest or rest[0] not in table:
            return None
        command = table[rest.pop(0)]
    positionals: list[str] = []
    values: dict[str, Any] = {}
    while rest:
        arg = rest.pop(0)
        if _is_value(arg):
            positionals.append(arg)
            continue
        flag, eq, value = arg.partition("=")
        spec = command.options.get(flag)
        if spec is None or (eq and not flag.startswith("--")):
            return None  # unknown, --help, --, or a short option written -x=VALUE
        dest, kind = spec
        if dest in values:
            return None  # repeated (or given by two spellings): the framework decides
        if kind in (FLAG, OFF):
            if eq:
                return None
            values[dest] = kind == FLAG
            continue
        if not eq:
            if not rest or not _is_value(rest[0]):
                return None
            value = rest.pop(0)
        try:
            values[dest] = kind(value)
        except ValueError:
            return None
    if len(positionals) != len(command.positionals):
        return None
    if any(name not in values for name in command.required):
        return None
    values.update(zip(command.positionals, positionals, strict=True))
    return command, {**command.defaults, **values}


def call(job: Callable[[], object]) -> int:
    """Run ``job`` and return its exit code: its ``int`` result, else 0; an exception is mapped
    by :func:`libtalos.cli.handle`, as on the Typer path."""
    try:
        result = job()
    except BaseException as exc:  # noqa: BLE001 - exceptions become exit codes in handle()
        from libtalos.cli import handle

        return handle(exc)
    return result if isinstance(result, int) else 0


def run(
    table: Command | Mapping[str, Command],
    args: Sequence[str],
    *,
    setup: Callable[[], object] | None = None,
) -> int | None:
    """Run the fast form of ``args`` and return its exit code; ``None`` when ``args`` is not a
    fast form (nothing has run then). ``setup`` runs first when the form is fast."""
    parsed = parse(table, args)
    if parsed is None:
        return None
    command, values = parsed
    if setup is not None:
        setup()
    return call(lambda: command.job(**values))
