"""``logs ID [-f] [--tail N]``: a service's log, streamed; several nodes prefix each line."""

from __future__ import annotations

from typing import Annotated

import typer

from talos_apply.commands.common import print_stream
from talos_apply.options import global_options, globals_of

INT32_MAX = 2**31 - 1  # LogsRequest.tail_lines is an int32


@global_options()
def logs(
    ctx: typer.Context,
    service_id: Annotated[str, typer.Argument(metavar="ID", help="The service, e.g. etcd.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[
        int, typer.Option("--tail", help="Lines of history to print first; -1 for all.")
    ] = -1,
) -> None:
    """Print a service's log from each node."""
    from libtalos.api import common_pb2, machine_pb2
    from libtalos.errors import UsageError

    if not -1 <= tail <= INT32_MAX:
        raise UsageError(f"--tail: must be -1 (all) or a number of lines up to {INT32_MAX}")
    g = globals_of(ctx)
    request = machine_pb2.LogsRequest(
        id=service_id, follow=follow, tail_lines=tail, driver=common_pb2.CONTAINERD
    )
    print_stream(g, "Logs", request, records=False)  # node prefixes when several nodes
