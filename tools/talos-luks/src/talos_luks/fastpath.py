"""The common command lines parsed without the CLI framework (Typer and Click cost about 0.1 s of
start-up, most of a fast command's time and a tenth of a LUKS format's).

``parse(args)`` accepts only forms whose meaning is certain: a known command, its positionals,
its options spelled exactly (``--opt VALUE``, ``--opt=VALUE``, ``-d VALUE``), each at most once,
flags without a value, integers that ``int()`` reads (as Click's INT does). Anything else --
``--help``, a global option before the command, an unknown or repeated option, a value that
starts with ``-``, ``--``, a missing or extra argument, an integer that does not parse -- returns
``None``, and the Typer app parses and reports it as before. Both paths run the same functions
(``talos_luks.jobs``), so what is printed, written and returned is the same.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

STR, INT, FLAG = "str", "int", "flag"

_KEY = {
    "--key-file": ("key_file", STR),
    "-d": ("key_file", STR),
    "--key-fd": ("key_fd", INT),
    "--key-slot": ("key_slot", INT),
    "-S": ("key_slot", INT),
}
_PBKDF = {
    "--pbkdf": ("pbkdf_type", STR),
    "--pbkdf-memory": ("pbkdf_memory", INT),
    "--pbkdf-parallel": ("pbkdf_parallel", INT),
    "--iter-time": ("iter_time", INT),
    "-i": ("iter_time", INT),
    "--pbkdf-force-iterations": ("force_iterations", INT),
}

# command -> (positional names, options, required option destinations)
COMMANDS: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, str]], tuple[str, ...]]] = {
    "format": (
        ("device",),
        {
            **_KEY,
            **_PBKDF,
            "--cipher": ("cipher", STR),
            "-c": ("cipher", STR),
            "--key-size": ("key_size", INT),
            "-s": ("key_size", INT),
            "--sector-size": ("sector_size", INT),
            "--label": ("label", STR),
            "--force": ("force", FLAG),
        },
        (),
    ),
    "open": (
        ("device", "name"),
        {**_KEY, "--readonly": ("readonly", FLAG), "--allow-discards": ("allow_discards", FLAG)},
        (),
    ),
    "close": (("name",), {}, ()),
    "status": (("name",), {}, ()),
    "dump": (("device",), {}, ()),
    "test-key": (("device",), _KEY, ()),
    "apply": (
        (),
        {
            **_PBKDF,
            "--partition": ("partition", STR),
            "--device": ("device", STR),
            "--config": ("config", STR),
            "--name": ("name", STR),
            "--uuid": ("uuid", STR),
            "--no-activate": ("no_activate", FLAG),
        },
        ("partition", "device"),
    ),
}


def _is_value(arg: str) -> bool:
    return arg == "-" or not arg.startswith("-")


def parse_args(args: list[str]) -> tuple[str, dict[str, Any]] | None:
    """``(command, values)`` for a common form, ``None`` for anything the framework must see."""
    if not args or args[0] not in COMMANDS:
        return None
    command = args[0]
    positional_names, options, required = COMMANDS[command]
    positionals: list[str] = []
    values: dict[str, Any] = {}
    rest = args[1:]
    while rest:
        arg = rest.pop(0)
        if _is_value(arg):
            positionals.append(arg)
            continue
        flag, eq, value = arg.partition("=")
        spec = options.get(flag)
        if spec is None or (eq and not flag.startswith("--")):
            return None  # unknown, --help, --, or a short option written -x=VALUE
        dest, kind = spec
        if dest in values:
            return None  # repeated (or given by two spellings): let Click decide
        if kind == FLAG:
            if eq:
                return None
            values[dest] = True
            continue
        if not eq:
            if not rest or not _is_value(rest[0]):
                return None
            value = rest.pop(0)
        if kind == INT:
            try:
                values[dest] = int(value)
            except ValueError:
                return None
        else:
            values[dest] = value
    if len(positionals) != len(positional_names) or any(r not in values for r in required):
        return None
    values.update(zip(positional_names, positionals, strict=True))
    return command, values


def _pbkdf(values: dict[str, Any]) -> None:
    """Replace the PBKDF options by one ``pbkdf`` value, defaults as the Typer options have."""
    from talos_luks.jobs import default_pbkdf, make_pbkdf

    d = default_pbkdf()

    values["pbkdf"] = make_pbkdf(
        values.pop("pbkdf_type", d.type),
        values.pop("pbkdf_memory", d.memory_kb),
        values.pop("pbkdf_parallel", d.parallel),
        values.pop("iter_time", d.time_ms),
        values.pop("force_iterations", d.iterations),
    )


def parse(args: list[str]) -> Callable[[], None] | None:
    """The job for a common form, ready to run; ``None`` when Typer must parse ``args``."""
    parsed = parse_args(args)
    if parsed is None:
        return None
    command, values = parsed
    from talos_luks import jobs

    if command in ("format", "apply"):
        _pbkdf(values)
    by_command: dict[str, Callable[..., None]] = {
        "format": jobs.format_job,
        "open": jobs.open_job,
        "close": jobs.close_job,
        "status": jobs.status_job,
        "dump": jobs.dump_job,
        "test-key": jobs.test_key_job,
        "apply": jobs.apply_job,
    }
    job = by_command[command]
    return lambda: job(**values)
