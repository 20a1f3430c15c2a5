"""``logs ID [-f] [--tail N]``: a service's log, streamed; several nodes prefix each line."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from talos_apply.commands.common import resolve
from talos_apply.options import ContextOpt, EndpointsOpt, NodesOpt, TalosconfigOpt
from talos_apply.output import report_errors


def logs(
    ctx: typer.Context,
    service_id: Annotated[str, typer.Argument(metavar="ID", help="The service, e.g. etcd.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[
        int, typer.Option("--tail", help="Lines of history to print first; -1 for all.")
    ] = -1,
    talosconfig: TalosconfigOpt = None,
    context: ContextOpt = None,
    endpoints: EndpointsOpt = None,
    nodes: NodesOpt = None,
) -> None:
    """Print a service's log from each node."""
    from libtalos.api import common_pb2, machine_pb2
    from libtalos.api.wire import NodeError
    from libtalos.errors import UsageError
    from talos_apply import client

    if tail < -1:
        raise UsageError("--tail: must be -1 (all) or a number of lines")
    g = resolve(ctx, talosconfig, context, endpoints, nodes)
    request = machine_pb2.LogsRequest(
        id=service_id, follow=follow, tail_lines=tail, driver=common_pb2.CONTAINERD
    )
    target = client.secure_target(g)
    c = client.Client(target)
    prefix = len(target.nodes) > 1
    errors: list[NodeError] = []
    partial: dict[str, str] = {}

    async def pump() -> None:
        async for frame in c.stream("Logs", request):
            node = frame.metadata.hostname
            if frame.metadata.error:
                errors.append(NodeError(node, frame.metadata.error, frame.metadata.status.code))
                continue
            text = partial.pop(node, "") + frame.bytes.decode("utf-8", "replace")
            *lines, rest = text.split("\n")
            if rest:
                partial[node] = rest
            _write(lines, node if prefix else "")
            sys.stdout.flush()

    try:
        client.run(pump())
    finally:
        for node, rest in partial.items():
            _write([rest], node if prefix else "")
    report_errors(errors)


def _write(lines: list[Any], node: str) -> None:
    for line in lines:
        sys.stdout.write(f"{node}: {line}\n" if node else f"{line}\n")
