"""What the API commands share: the target from options, one call, printing."""

from __future__ import annotations

from typing import Any

import typer

from talos_apply.options import Globals, globals_of


def resolve(
    ctx: typer.Context,
    talosconfig: str | None,
    context: str | None,
    endpoints: list[str] | None,
    nodes: list[str] | None,
) -> Globals:
    return globals_of(ctx).merged(talosconfig, context, endpoints, nodes)


def unary(
    g: Globals, method: str, request: Any, *, single: str = ""
) -> tuple[list[Any], list[Any]]:
    """Call ``method`` on the target nodes; ``single`` names a command that takes one node."""
    from libtalos.errors import UsageError
    from talos_apply import client  # grpclib: loaded only by the commands that dial

    target = client.secure_target(g)
    if single and len(target.nodes) != 1:
        raise UsageError(f"{single} takes exactly one node (--nodes IP)")
    c = client.Client(target)
    result: tuple[list[Any], list[Any]] = client.run(c.unary(method, request))
    return result
