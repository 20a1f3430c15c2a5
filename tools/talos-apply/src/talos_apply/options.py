"""Options every API command takes, as talosctl's persistent flags.

They are accepted before the command (``talos-apply --talosconfig F config endpoint …``, the
seed's form) and after it (``talos-apply apply-config --nodes IP …``); values given after the
command win.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Annotated

import typer


@dataclass
class Globals:
    talosconfig: str | None = None
    context: str | None = None
    endpoints: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)

    def merged(
        self,
        talosconfig: str | None,
        context: str | None,
        endpoints: list[str] | None,
        nodes: list[str] | None,
    ) -> Globals:
        return Globals(
            talosconfig or self.talosconfig,
            context or self.context,
            _split(endpoints) or self.endpoints,
            _split(nodes) or self.nodes,
        )


def _split(values: list[str] | None) -> list[str]:
    """talosctl takes ``-n a,b`` as well as ``-n a -n b``."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def globals_of(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Globals) else Globals()


class OutputFormat(enum.StrEnum):
    table = "table"
    yaml = "yaml"
    json = "json"


TalosconfigOpt = Annotated[
    str | None,
    typer.Option(
        "--talosconfig",
        help="Client config file (default $TALOSCONFIG, else ~/.talos/config).",
    ),
]
ContextOpt = Annotated[
    str | None, typer.Option("--context", help="Context to use (default: the current one).")
]
EndpointsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--endpoints", "-e", help="Endpoints to dial, tried in turn (overrides the context's)."
    ),
]
NodesOpt = Annotated[
    list[str] | None,
    typer.Option("--nodes", "-n", help="Target nodes (overrides the context's); a,b or repeated."),
]
OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="table for people; yaml or json for scripts."),
]
