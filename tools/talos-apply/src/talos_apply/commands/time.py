"""``time [--check SERVER]``: each node's clock against NTP.

Columns as talosctl v0.9.3 prints them: ``NODE NTP-SERVER NODE-TIME NTP-SERVER-TIME``, times as
Go prints a UTC time (``2021-04-01 12:34:56.789 +0000 UTC``). Without ``--check`` the node asks
the first of its ``machine.time.servers`` (default ``pool.ntp.org``); with it, SERVER
(``HOST`` or ``HOST:PORT``). A node whose query fails reports the error (exit 1).
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated, Any

import typer

from talos_apply.commands.common import unary
from talos_apply.options import OutputFormat, OutputOpt, global_options, globals_of
from talos_apply.output import emit_structured, node_of, report_errors, table


def go_time(ts: Any) -> str:
    """A ``google.protobuf.Timestamp`` as Go's ``time.Time.String()`` prints a UTC time."""
    when = dt.datetime.fromtimestamp(ts.seconds, dt.UTC)
    fraction = f".{ts.nanos:09d}".rstrip("0") if ts.nanos else ""
    return f"{when:%Y-%m-%d %H:%M:%S}{fraction} +0000 UTC"


@global_options()
def time(
    ctx: typer.Context,
    check: Annotated[
        str,
        typer.Option(
            "--check", "-c", metavar="SERVER", help="Check the time against this NTP server."
        ),
    ] = "",
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show each node's time and its NTP server's."""
    from google.protobuf import empty_pb2

    from libtalos.api._gen.time import time_pb2
    from libtalos.api._gen.time.time_grpc import TimeServiceStub

    g = globals_of(ctx)
    if check:
        messages, errors = unary(
            g, "TimeCheck", time_pb2.TimeRequest(server=check), stub=TimeServiceStub
        )
    else:
        messages, errors = unary(g, "Time", empty_pb2.Empty(), stub=TimeServiceStub)
    if not emit_structured(messages, output):
        rows = [
            [node_of(m), m.server, go_time(m.localtime), go_time(m.remotetime)] for m in messages
        ]
        headers = ["NODE", "NTP-SERVER", "NODE-TIME", "NTP-SERVER-TIME"]
        sys.stdout.write(table(headers, rows))
    report_errors(errors)
