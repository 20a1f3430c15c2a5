"""What the API commands share: one call to the target nodes, printing a stream."""

from __future__ import annotations

from typing import Any

from talos_apply.options import Globals


def unary(
    g: Globals, method: str, request: Any, *, single: str = "", stub: Any = None
) -> tuple[list[Any], list[Any]]:
    """Call ``method`` on the target nodes; ``single`` names a command that takes one node;
    ``stub``: the generated stub class of another service than machine.MachineService."""
    from libtalos.errors import UsageError
    from talos_apply import client  # grpclib: loaded only by the commands that dial

    target = client.secure_target(g)
    if single and len(target.nodes) != 1:
        raise UsageError(f"{single} takes exactly one node (--nodes IP)")
    c = client.Client(target)
    call = c.unary(method, request) if stub is None else c.unary(method, request, stub=stub)
    result: tuple[list[Any], list[Any]] = client.run(call)
    return result


def print_stream(
    g: Globals, method: str, request: Any, *, records: bool, prefix: bool | None = None
) -> None:
    """Print a server-streaming call's ``common.Data`` frames as text lines, each prefixed with
    its node when ``prefix`` (None: when the call goes to several nodes); per-node errors are
    reported at the end (non-zero exit).

    ``records``: each frame is one whole line (Dmesg); otherwise frames are pieces of a byte
    stream (Logs), and a line split across frames is joined before it is printed.
    """
    import sys

    from libtalos.api.wire import NodeError
    from talos_apply import client
    from talos_apply.output import report_errors

    target = client.secure_target(g)
    if prefix is None:
        prefix = len(target.nodes) > 1
    c = client.Client(target)
    errors: list[NodeError] = []
    partial: dict[str, str] = {}

    def write(lines: list[str], node: str) -> None:
        for line in lines:
            sys.stdout.write(f"{node}: {line}\n" if prefix and node else f"{line}\n")

    async def pump() -> None:
        async for frame in c.stream(method, request):
            node = frame.metadata.hostname
            if frame.metadata.error:
                errors.append(NodeError(node, frame.metadata.error, frame.metadata.status.code))
                continue
            text = frame.bytes.decode("utf-8", "replace")
            if records:
                write([text.rstrip("\n")], node)
            else:
                *lines, rest = (partial.pop(node, "") + text).split("\n")
                if rest:
                    partial[node] = rest
                write(lines, node)
            sys.stdout.flush()

    try:
        client.run(pump())
    finally:
        for node, rest in partial.items():
            write([rest], node)
    report_errors(errors)
