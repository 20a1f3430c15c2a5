"""The table of talos-luks's common command lines, run by :mod:`libtalos.fastpath` without the
CLI framework (Typer and Click cost about 0.1 s of start-up, most of a fast command's time and a
tenth of a LUKS format's).

Each row is a command, its positionals and its options as the Typer app spells them (each
option's value converted as Click's INT converts it). Whatever the table does not describe
exactly -- ``--help``, a global option before the command, an unknown or repeated option, a
negative number, an integer that does not parse ... -- goes to the Typer app, which parses and
reports it as before. Both paths run the same functions (``talos_luks.jobs``), so what is
printed, written and returned is the same.
"""

from __future__ import annotations

from libtalos.fastpath import FLAG, Command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_KEY = {
    "--key-file": ("key_file", str),
    "-d": ("key_file", str),
    "--key-fd": ("key_fd", int),
    "--key-slot": ("key_slot", int),
    "-S": ("key_slot", int),
}
_PBKDF = {
    "--pbkdf": ("pbkdf_type", str),
    "--pbkdf-memory": ("pbkdf_memory", int),
    "--pbkdf-parallel": ("pbkdf_parallel", int),
    "--iter-time": ("iter_time", int),
    "-i": ("iter_time", int),
    "--pbkdf-force-iterations": ("force_iterations", int),
}


def _job(name: str, *, pbkdf: bool = False) -> Callable[..., None]:
    """``talos_luks.jobs.NAME``, imported when it runs; ``pbkdf``: the PBKDF options become
    one ``pbkdf`` value first, with the defaults the Typer options have."""

    def job(**values: Any) -> None:
        from talos_luks import jobs

        if pbkdf:
            d = jobs.default_pbkdf()
            values["pbkdf"] = jobs.make_pbkdf(
                values.pop("pbkdf_type", d.type),
                values.pop("pbkdf_memory", d.memory_kb),
                values.pop("pbkdf_parallel", d.parallel),
                values.pop("iter_time", d.time_ms),
                values.pop("force_iterations", d.iterations),
            )
        getattr(jobs, name)(**values)

    return job


COMMANDS = {
    "format": Command(
        _job("format_job", pbkdf=True),
        ("device",),
        {
            **_KEY,
            **_PBKDF,
            "--cipher": ("cipher", str),
            "-c": ("cipher", str),
            "--key-size": ("key_size", int),
            "-s": ("key_size", int),
            "--sector-size": ("sector_size", int),
            "--label": ("label", str),
            "--force": ("force", FLAG),
        },
    ),
    "open": Command(
        _job("open_job"),
        ("device", "name"),
        {**_KEY, "--readonly": ("readonly", FLAG), "--allow-discards": ("allow_discards", FLAG)},
    ),
    "close": Command(_job("close_job"), ("name",)),
    "status": Command(_job("status_job"), ("name",)),
    "dump": Command(_job("dump_job"), ("device",)),
    "test-key": Command(_job("test_key_job"), ("device",), _KEY),
    "apply": Command(
        _job("apply_job", pbkdf=True),
        (),
        {
            **_PBKDF,
            "--partition": ("partition", str),
            "--device": ("device", str),
            "--config": ("config", str),
            "--name": ("name", str),
            "--uuid": ("uuid", str),
            "--no-activate": ("no_activate", FLAG),
        },
        required=("partition", "device"),
    ),
}
