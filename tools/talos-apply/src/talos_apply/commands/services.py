"""``services`` (table of every service) and ``service [ID [status|start|stop|restart]]``.

As with talosctl, ``service`` without an ID lists every service and ``service ID`` is
``service ID status``.
"""

from __future__ import annotations

import enum
import sys
from typing import Annotated, Any

import typer

from talos_apply.commands.common import unary
from talos_apply.options import OutputFormat, OutputOpt, global_options, globals_of
from talos_apply.output import emit_structured, node_of, report_errors, table


def _health(info: Any) -> str:
    if info.health.unknown:
        return "?"
    return "OK" if info.health.healthy else "Fail"


def _when(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return ""
    return str(ts.ToDatetime().replace(microsecond=0).isoformat()) + "Z"


def _list(g: Any) -> tuple[list[Any], list[Any]]:
    from google.protobuf import empty_pb2

    return unary(g, "ServiceList", empty_pb2.Empty())


@global_options()
def services(
    ctx: typer.Context,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List the services of each node: state, health, last event."""
    _show_list(globals_of(ctx), output)


def _show_list(g: Any, output: OutputFormat) -> None:
    messages, errors = _list(g)
    if not emit_structured(messages, output):
        rows = []
        for m in messages:
            for s in m.services:
                last = s.events.events[-1] if s.events.events else None
                rows.append(
                    [
                        node_of(m),
                        s.id,
                        s.state,
                        _health(s),
                        _when(s.health.last_change),
                        last.msg if last else "",
                    ]
                )
        headers = ["NODE", "SERVICE", "STATE", "HEALTH", "LAST CHANGE", "LAST EVENT"]
        sys.stdout.write(table(headers, rows))
    report_errors(errors)


class Action(enum.StrEnum):
    status = "status"
    start = "start"
    stop = "stop"
    restart = "restart"


@global_options()
def service(
    ctx: typer.Context,
    service_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="The service, e.g. etcd; none: list all.")
    ] = None,
    action: Annotated[
        Action, typer.Argument(help="status (the default), start, stop or restart.")
    ] = Action.status,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show one service (or, without ID, list them all), or start, stop or restart it."""
    from libtalos.api import machine_pb2

    g = globals_of(ctx)
    if service_id is None:
        _show_list(g, output)
        return
    if action is not Action.status:
        method, request_type = {
            Action.start: ("ServiceStart", machine_pb2.ServiceStartRequest),
            Action.stop: ("ServiceStop", machine_pb2.ServiceStopRequest),
            Action.restart: ("ServiceRestart", machine_pb2.ServiceRestartRequest),
        }[action]
        messages, errors = unary(g, method, request_type(id=service_id))
        if not emit_structured(messages, output):
            for m in messages:
                node = node_of(m)
                sys.stdout.write(f"{node + ': ' if node else ''}{m.resp}\n")
        report_errors(errors)
        return
    messages, errors = _list(g)
    found = []
    for m in messages:
        for s in m.services:
            if s.id == service_id:
                found.append((m, s))
    missing = [node_of(m) for m in messages if all(s.id != service_id for s in m.services)]
    if output is not OutputFormat.table:
        emit_structured([s for _, s in found], output)
    else:
        for m, s in found:
            lines = [
                f"NODE     {node_of(m)}",
                f"ID       {s.id}",
                f"STATE    {s.state}",
                f"HEALTH   {_health(s)}",
            ]
            if s.health.last_message:
                lines.append(f"LAST HEALTH MESSAGE   {s.health.last_message}")
            for i, e in enumerate(s.events.events):
                head = "EVENTS   " if i == 0 else "         "
                lines.append(f"{head}[{e.state}]: {e.msg} ({_when(e.ts)})")
            sys.stdout.write("\n".join(lines) + "\n")
    from libtalos.api.wire import NodeError

    errs = list(errors) + [NodeError(n, f"service {service_id!r} not found", 5) for n in missing]
    report_errors(errs)
