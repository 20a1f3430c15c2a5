"""``etcd members``: the etcd cluster as each node sees it."""

from __future__ import annotations

import sys

import typer

from talos_apply.commands.common import resolve, unary
from talos_apply.options import (
    ContextOpt,
    EndpointsOpt,
    NodesOpt,
    OutputFormat,
    OutputOpt,
    TalosconfigOpt,
)
from talos_apply.output import emit_structured, node_of, report_errors, table

app = typer.Typer(
    help="etcd on control-plane nodes.",
    pretty_exceptions_enable=False,
    add_completion=False,
    no_args_is_help=True,
)


@app.command("members")
def members(
    ctx: typer.Context,
    output: OutputOpt = OutputFormat.table,
    talosconfig: TalosconfigOpt = None,
    context: ContextOpt = None,
    endpoints: EndpointsOpt = None,
    nodes: NodesOpt = None,
) -> None:
    """List the etcd members."""
    from libtalos.api import machine_pb2

    g = resolve(ctx, talosconfig, context, endpoints, nodes)
    messages, errors = unary(g, "EtcdMemberList", machine_pb2.EtcdMemberListRequest())
    if not emit_structured(messages, output):
        rows = [
            [
                node_of(m),
                f"{mem.id:x}",
                mem.hostname,
                ",".join(mem.peer_urls),
                ",".join(mem.client_urls),
                str(mem.is_learner).lower(),
            ]
            for m in messages
            for mem in m.members
        ]
        headers = ["NODE", "ID", "HOSTNAME", "PEER URLS", "CLIENT URLS", "LEARNER"]
        sys.stdout.write(table(headers, rows))
    report_errors(errors)
