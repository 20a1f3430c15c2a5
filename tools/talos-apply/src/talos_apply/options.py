"""Options every API command takes, as talosctl's persistent flags.

They are accepted before the command (``talos-apply --talosconfig F config endpoint …``, the
seed's form) and after it (``talos-apply apply-config --nodes IP …``); values given after the
command win. They are declared once, here, and given to the app and to each command by
:func:`global_options`.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

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
    """The global options in effect for ``ctx``: its own merged over its parents' (click hands
    a context its parent's ``obj``)."""
    obj = ctx.obj
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


GLOBAL_OPTIONS: dict[str, Any] = {
    "talosconfig": TalosconfigOpt,
    "context": ContextOpt,
    "endpoints": EndpointsOpt,
    "nodes": NodesOpt,
}

Command = TypeVar("Command", bound=Callable[..., None])


def global_options(*names: str) -> Callable[[Command], Command]:
    """Give a command (or the app's callback) the global options ``names`` (default: all four),
    listed after its own options in ``--help``.

    The command takes ``ctx: typer.Context`` and none of the options itself: the values given
    are merged into ``ctx.obj`` before it runs, and it reads them with :func:`globals_of`.
    """
    chosen = names or tuple(GLOBAL_OPTIONS)

    def decorate(func: Command) -> Command:
        sig = inspect.signature(func, eval_str=True)
        if "ctx" not in sig.parameters or set(chosen) & set(sig.parameters):
            raise TypeError(f"{func.__name__}: takes ctx and none of {', '.join(chosen)}")
        extra = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=GLOBAL_OPTIONS[name]
            )
            for name in chosen
        ]

        @functools.wraps(func)
        def command(ctx: typer.Context, **kwargs: Any) -> None:
            given = {name: kwargs.pop(name) if name in chosen else None for name in GLOBAL_OPTIONS}
            ctx.obj = globals_of(ctx).merged(**given)
            func(ctx, **kwargs)

        command.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=[*sig.parameters.values(), *extra]
        )
        return command  # type: ignore[return-value]

    return decorate
