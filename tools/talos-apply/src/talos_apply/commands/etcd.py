"""``etcd members``: the etcd cluster as each node sees it."""

from __future__ import annotations

import sys

import typer

from libtalos.cli import make_app
from talos_apply.commands.common import unary
from talos_apply.options import OutputFormat, OutputOpt, global_options, globals_of
from talos_apply.output import emit_structured, node_of, report_errors, table

app = make_app(
    help="etcd on control-plane nodes.",
    no_args_is_help=True,
)


@app.command("members")
@global_options()
def members(
    ctx: typer.Context,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List the etcd members."""
    from libtalos.api import machine_pb2

    g = globals_of(ctx)
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
