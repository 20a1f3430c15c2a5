"""talos-init's command-line options, declared once.

Each field of :class:`BootOptions` is one ``--option`` of ``talos-init`` (``state_dir`` is
``--state-dir``; a ``bool`` field is ``--isolate/--no-isolate``): its type, its default (none:
required), its help text and whether ``--help`` lists it. The Typer command
(:mod:`talos_init.app`) and the parser of the common command line (:mod:`talos_init.cli`, which
PID 1 runs without Typer) are both built from these fields, and
:func:`talos_init.boot.boot_node` takes one ``BootOptions``.
"""

# No `from __future__ import annotations`: the field types are read at run time, as converters
# of the command line's strings.
import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Any

from talos_init.modes import Mode


def _doc(text: str, *, hidden: bool = False) -> dict[str, Any]:
    """A field's metadata: its ``--help`` text, and whether ``--help`` lists it."""
    return {"help": text, "hidden": hidden}


@dataclasses.dataclass(frozen=True)
class BootOptions:
    """What the command line says; :mod:`talos_init.boot` checks the values."""

    mode: Mode = field(metadata=_doc("container (namespaces) or metal (real kernel)"))
    state_dir: Path = field(metadata=_doc("holds state/ (STATE) and ephemeral/ (EPHEMERAL)"))
    services_dir: Path | None = field(
        default=None, metadata=_doc("extension services, one YAML document per file")
    )
    config: str | None = field(
        default=None, metadata=_doc("machine config: a file, or a file:// or http(s):// URL")
    )
    cmdline: str | None = field(
        default=None, metadata=_doc("kernel-style parameters (metal mode reads /proc/cmdline)")
    )
    isolate: bool = field(
        default=True, metadata=_doc("container mode: read-only root in its own mount namespace")
    )
    echo_services: bool = field(
        default=False, metadata=_doc("copy service output to the console as 'NAME: line'")
    )
    manage_network: bool = field(
        default=False,
        metadata=_doc(
            "container mode: apply machine.network.interfaces (the node has its own netns)"
        ),
    )
    fetch_timeout: float = field(
        default=70.0, metadata=_doc("bound on fetching the config URL, in seconds")
    )
    api: bool = field(
        default=True,
        metadata=_doc("serve the machine API (default: on when the node is isolated or metal)"),
    )
    api_port: int | None = field(
        default=None,
        metadata=_doc("machine API port (default 50000; with --no-isolate only if given)"),
    )
    reap_orphans: bool = field(
        default=True, metadata=_doc("off only for the tests' negative control", hidden=True)
    )
    cert_ttl: float | None = field(
        default=None,
        metadata=_doc("tests: API certificate lifetime in seconds (24 h)", hidden=True),
    )
    cert_check_period: float = field(
        default=3600.0, metadata=_doc("tests: seconds between renewal checks (1 h)", hidden=True)
    )


FIELDS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(BootOptions)


def flag(option: dataclasses.Field[Any]) -> str:
    """The option's spelling: ``--state-dir`` for ``state_dir``."""
    return "--" + option.name.replace("_", "-")


def value_type(option: dataclasses.Field[Any]) -> Any:
    """What the option's value converts to: the field's type less ``| None``."""
    kinds = [t for t in getattr(option.type, "__args__", (option.type,)) if t is not type(None)]
    return kinds[0]
