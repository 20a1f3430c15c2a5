"""``mounts`` (``mount``): each node's mounts, as talosctl prints them.

Columns NODE, FILESYSTEM, SIZE(GB), USED(GB), AVAILABLE(GB), PERCENT USED, MOUNTED ON; sizes in
decimal gigabytes with two decimals; a mount of size 0 (proc, sysfs...) is left out, as talosctl
does (its percentage is not a number). Docs: docs/talos-facts.md#file-rpcs.
"""

from __future__ import annotations

import sys

import typer

from talos_apply.commands.common import unary
from talos_apply.options import OutputFormat, OutputOpt, global_options, globals_of
from talos_apply.output import emit_structured, node_of, report_errors, table

HEADERS = [
    "NODE",
    "FILESYSTEM",
    "SIZE(GB)",
    "USED(GB)",
    "AVAILABLE(GB)",
    "PERCENT USED",
    "MOUNTED ON",
]


@global_options()
def mounts(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """List mounts."""
    from google.protobuf import empty_pb2

    messages, errors = unary(globals_of(ctx), "Mounts", empty_pb2.Empty())
    if not emit_structured(messages, output):
        rows = []
        for m in messages:
            for s in m.stats:
                if not s.size:
                    continue
                used = s.size - s.available
                rows.append(
                    [
                        node_of(m),
                        s.filesystem,
                        f"{s.size * 1e-9:.2f}",
                        f"{used * 1e-9:.2f}",
                        f"{s.available * 1e-9:.2f}",
                        f"{100.0 - 100.0 * s.available / s.size:.2f}%",
                        s.mounted_on,
                    ]
                )
        sys.stdout.write(table(HEADERS, rows))
    report_errors(errors)
