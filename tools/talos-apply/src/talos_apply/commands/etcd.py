"""``etcd members``: the etcd cluster as each node sees it; ``etcd leave``, ``etcd remove-member
NAME`` and ``etcd forfeit-leadership``: membership changes, answered by each node (silent when
they succeed, as talosctl is; a refusal is that node's error, exit 1)."""

from __future__ import annotations

import sys
from typing import Annotated

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


@app.command("leave")
@global_options()
def leave(ctx: typer.Context) -> None:
    """Tell nodes to leave etcd cluster."""
    from libtalos.api import machine_pb2

    _, errors = unary(globals_of(ctx), "EtcdLeaveCluster", machine_pb2.EtcdLeaveClusterRequest())
    report_errors(errors)


@app.command("remove-member")
@global_options()
def remove_member(
    ctx: typer.Context,
    hostname: Annotated[str, typer.Argument(metavar="HOSTNAME", help="The member to remove.")],
) -> None:
    """Remove the node from etcd cluster (only for a member that cannot leave by itself:
    prefer etcd leave)."""
    from libtalos.api import machine_pb2

    request = machine_pb2.EtcdRemoveMemberRequest(member=hostname)
    _, errors = unary(globals_of(ctx), "EtcdRemoveMember", request)
    report_errors(errors)


@app.command("forfeit-leadership")
@global_options()
def forfeit_leadership(ctx: typer.Context) -> None:
    """Tell node to forfeit etcd cluster leadership."""
    from libtalos.api import machine_pb2

    request = machine_pb2.EtcdForfeitLeadershipRequest()
    _, errors = unary(globals_of(ctx), "EtcdForfeitLeadership", request)
    report_errors(errors)
