"""``version``: the client's version and each node's (Talos's layout)."""

from __future__ import annotations

import platform
import sys
from typing import Annotated, Any

import typer

from talos_apply import __version__
from talos_apply.options import OutputFormat, OutputOpt, global_options, globals_of
from talos_apply.output import emit_structured, report_errors


@global_options()
def version(
    ctx: typer.Context,
    client_only: Annotated[bool, typer.Option("--client", help="Print the client only.")] = False,
    short: Annotated[
        bool, typer.Option("--short", help="The client's version on one line: Client VERSION.")
    ] = False,
    insecure: Annotated[
        bool, typer.Option("--insecure", "-i", help="Maintenance mode: no client certificate.")
    ] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Print the client version and the version of each node."""
    arch = platform.machine()
    runtime = f"python{sys.version_info.major}.{sys.version_info.minor}"
    # talosctl's --short prints its build name and tag on one line under "Client:"
    # (docs/talos-facts.md#talosctl-version-short); the server's part stays long.
    client_text = (
        f"Client:\nClient {__version__}\n"
        if short
        else f"Client:\n\tTag:         {__version__}\n\tRuntime:     {runtime}\n"
        f"\tOS/Arch:     linux/{arch}\n"
    )
    if client_only:
        sys.stdout.write(client_text)
        return
    from google.protobuf import empty_pb2

    from talos_apply import client

    g = globals_of(ctx)
    target = client.insecure_target(g, []) if insecure else client.secure_target(g)
    messages, errors = client.run(client.Client(target).unary("Version", empty_pb2.Empty()))
    if insecure:
        for m in messages:
            m.metadata.hostname = m.metadata.hostname or target.nodes[0]
    if not emit_structured(messages, output):
        out = [client_text, "Server:\n"]
        for m in messages:
            v = m.version
            if m.metadata.hostname:
                out.append(f"\tNODE:        {m.metadata.hostname}\n")
            out.append(
                f"\tTag:         {v.tag}\n\tSHA:         {v.sha}\n\tBuilt:       {v.built}\n"
                f"\tRuntime:     {v.go_version}\n\tOS/Arch:     {v.os}/{v.arch}\n"
                f"\tPlatform:    {m.platform.name} ({m.platform.mode})\n"
            )
            out.extend(_slot_lines(m))
        sys.stdout.write("".join(out))
    report_errors(errors)


def _slot_lines(m: Any) -> list[str]:
    """A node booted from its disk: its slot, whether it is on trial or rolled back, the other
    slot's version (our extension of Version: ``boot``, docs/upgrade.md)."""
    b = m.boot
    if not b.slot:
        return []
    state = " (on trial: not marked good yet)" if b.trial else ""
    lines = [f"\tSlot:        {b.slot}{state}\n"]
    if b.rolled_back_from:
        lines.append(
            f"\tRolled back: slot {b.rolled_back_from} failed to boot; slot {b.slot} runs again\n"
        )
    lines.append(f"\tOther slot:  {b.other_slot} ({b.other_version or 'empty'})\n")
    return lines
