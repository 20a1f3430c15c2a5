"""``events [--tail N | --duration D | --since ID]``: the nodes' runtime events, followed until
Ctrl-C (exit 130) as talosctl does.

Columns ``NODE ID EVENT SOURCE MESSAGE`` (docs/talos-facts.md#runtime-events): EVENT is the
type URL (``talos/runtime/machine.TaskEvent``), SOURCE the sequence, phase, task or service,
MESSAGE the action (``START``), ``error: ...`` for a failed sequence, ``ACTION: message`` for a
service. Event types this client does not know are skipped. Without an option no history is
shown, only what happens from now on; ``--tail -1`` shows all the history the node keeps.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any

import typer

from talos_apply.options import global_options, globals_of

INT32_MAX = 2**31 - 1
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float:
    """Seconds of a Go duration (``90s``, ``1h30m``, ``0``); ValueError when it is not one."""
    if text in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if match is None:
            raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h30m)")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total


def describe(event: Any) -> tuple[str, str, str] | None:
    """``(EVENT, SOURCE, MESSAGE)`` of a ``machine.Event``; None for a type not known here."""
    from libtalos.api import machine_pb2

    url = event.data.type_url
    name = url.rsplit("/", 1)[-1]
    known: dict[str, Any] = {
        "machine.SequenceEvent": machine_pb2.SequenceEvent,
        "machine.PhaseEvent": machine_pb2.PhaseEvent,
        "machine.TaskEvent": machine_pb2.TaskEvent,
        "machine.ServiceStateEvent": machine_pb2.ServiceStateEvent,
    }
    kind = known.get(name)
    if kind is None:
        return None
    msg = kind.FromString(event.data.value)
    action = kind.Action.Name(msg.action)
    if kind is machine_pb2.SequenceEvent:
        text = f"error: {msg.error.message}" if msg.HasField("error") else action
        return url, msg.sequence, text
    if kind is machine_pb2.PhaseEvent:
        return url, msg.phase, action
    if kind is machine_pb2.TaskEvent:
        return url, msg.task, action
    return url, msg.service, f"{action}: {msg.message}"


@global_options()
def events(
    ctx: typer.Context,
    tail: Annotated[
        int,
        typer.Option(
            "--tail", help="Past events to show first; -1 for all the history (default: none)."
        ),
    ] = 0,
    duration: Annotated[
        str,
        typer.Option("--duration", help="Show the events of this past interval first (e.g. 5m)."),
    ] = "",
    since: Annotated[
        str, typer.Option("--since", help="Show the events after this event ID first.")
    ] = "",
) -> None:
    """Stream the runtime events of each node (until Ctrl-C)."""
    from libtalos.api import machine_pb2
    from libtalos.api.wire import NodeError
    from libtalos.errors import UsageError
    from talos_apply import client
    from talos_apply.output import report_errors, table

    if not -INT32_MAX <= tail <= INT32_MAX:
        raise UsageError(f"--tail: must be between -{INT32_MAX} and {INT32_MAX}")
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise UsageError(f"--duration: {exc}") from None
    if seconds > INT32_MAX:
        raise UsageError("--duration: too long")
    given = [n for n, v in (("--tail", tail), ("--duration", seconds), ("--since", since)) if v]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} exclude each other")
    request = machine_pb2.EventsRequest(tail_events=tail, tail_id=since, tail_seconds=int(seconds))
    g = globals_of(ctx)
    c = client.Client(client.secure_target(g))
    headers = ["NODE", "ID", "EVENT", "SOURCE", "MESSAGE"]
    errors: list[NodeError] = []

    async def pump() -> None:
        first = True
        async for frame in c.stream("Events", request):
            node = frame.metadata.hostname
            if frame.metadata.error:
                errors.append(NodeError(node, frame.metadata.error, frame.metadata.status.code))
                continue
            described = describe(frame)
            if described is None:
                continue
            row = [node, frame.id, *described]
            # talosctl's tabwriter is flushed after each event: the header aligns with the
            # first one only, each later line stands alone
            sys.stdout.write(table(headers, [row]) if first else "   ".join(row) + "\n")
            sys.stdout.flush()
            first = False

    client.run(pump())
    report_errors(errors)
