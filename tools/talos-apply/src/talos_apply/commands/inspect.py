"""``dmesg [-f] [--tail]``, ``memory [-v]``, ``processes`` (``ps``, ``p``;
``--watch``): looking into the nodes.

Columns as talosctl prints them: memory in MiB (``-v``: every /proc/meminfo line, in kB), processes
sorted by resident memory (``--sort cpu``: by CPU time) with human-readable sizes.
"""

from __future__ import annotations

import enum
import sys
from typing import Annotated, Any

import typer

from talos_apply.commands.common import print_stream, unary
from talos_apply.options import OutputFormat, OutputOpt, global_options, globals_of
from talos_apply.output import emit_structured, node_of, report_errors, table

# /proc/meminfo's names for machine.MemInfo's fields, in the kernel's order (-v)
# fmt: off
MEMINFO_NAMES = (
    "MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active", "Inactive",
    "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)", "Unevictable", "Mlocked",
    "SwapTotal", "SwapFree", "Dirty", "Writeback", "AnonPages", "Mapped", "Shmem", "Slab",
    "SReclaimable", "SUnreclaim", "KernelStack", "PageTables", "NFS_Unstable", "Bounce",
    "WritebackTmp", "CommitLimit", "Committed_AS", "VmallocTotal", "VmallocUsed", "VmallocChunk",
    "HardwareCorrupted", "AnonHugePages", "ShmemHugePages", "ShmemPmdMapped", "CmaTotal",
    "CmaFree", "HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp",
    "Hugepagesize", "DirectMap4k", "DirectMap2M", "DirectMap1G",
)
# fmt: on
COUNTS = {"HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp"}


@global_options()
def dmesg(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new kernel messages.")
    ] = False,
    tail: Annotated[
        bool, typer.Option("--tail", help="Only messages from now on (with --follow).")
    ] = False,
) -> None:
    """Print the kernel log of each node."""
    from libtalos.api import machine_pb2

    g = globals_of(ctx)
    request = machine_pb2.DmesgRequest(follow=follow, tail=tail)
    print_stream(g, "Dmesg", request, prefix=True, records=True)


@global_options()
def memory(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Every /proc/meminfo line, in kB.")
    ] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show memory use of each node (MiB)."""
    from google.protobuf import empty_pb2

    from libtalos.api.wire import meminfo_field

    g = globals_of(ctx)
    messages, errors = unary(g, "Memory", empty_pb2.Empty())
    if emit_structured(messages, output):
        pass
    elif verbose:
        for m in messages:
            sys.stdout.write(f"NODE: {node_of(m)}\n")
            for name in MEMINFO_NAMES:
                unit = "" if name in COUNTS else " kB"
                sys.stdout.write(f"{name}: {getattr(m.meminfo, meminfo_field(name))}{unit}\n")
    else:
        rows = []
        for m in messages:
            i = m.meminfo
            used = i.memtotal - i.memfree - i.cached - i.buffers
            values = [i.memtotal, used, i.memfree, i.shmem, i.buffers, i.cached, i.memavailable]
            rows.append([node_of(m), *(str(v // 1024) for v in values)])
        headers = ["NODE", "TOTAL", "USED", "FREE", "SHARED", "BUFFERS", "CACHE", "AVAILABLE"]
        sys.stdout.write(table(headers, rows))
    report_errors(errors)


class SortBy(enum.StrEnum):
    rss = "rss"
    cpu = "cpu"


def human_bytes(n: int) -> str:
    """Decimal units, as talosctl shows process sizes (``12 MB``)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" or value >= 10 else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _command_line(p: Any) -> str:
    if not p.executable:
        return str(p.command)
    words = p.args.split()
    if words and words[0].rsplit("/", 1)[-1] == p.executable.rsplit("/", 1)[-1]:
        return " ".join([p.executable, *words[1:]])
    return str(p.args or p.executable)


def _process_table(messages: list[Any], sort: SortBy) -> str:
    rows = []
    for m in messages:
        key = (lambda p: p.cpu_time) if sort is SortBy.cpu else (lambda p: p.resident_memory)
        for p in sorted(m.processes, key=key, reverse=True):
            rows.append(
                [
                    node_of(m),
                    str(p.pid),
                    p.state,
                    str(p.threads),
                    f"{p.cpu_time:.2f}",
                    human_bytes(p.virtual_memory),
                    human_bytes(p.resident_memory),
                    _command_line(p),
                ]
            )
    headers = ["NODE", "PID", "STATE", "THREADS", "CPU-TIME", "VIRTMEM", "RESMEM", "COMMAND"]
    return table(headers, rows)


WATCH_INTERVAL = 1.0  # seconds between refreshes, as talosctl's processes --watch
_CLEAR = "\x1b[H\x1b[2J"  # cursor home, erase the screen


@global_options()
def processes(
    ctx: typer.Context,
    sort: Annotated[
        SortBy, typer.Option("--sort", "-s", help="Column to sort by: rss or cpu.")
    ] = SortBy.rss,
    watch: Annotated[
        bool,
        typer.Option("--watch", "-w", help="Refresh every second until Ctrl-C (exit 130)."),
    ] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List the processes of each node."""
    from google.protobuf import empty_pb2

    g = globals_of(ctx)
    if watch:
        _watch(g, sort, output)
        return
    messages, errors = unary(g, "Processes", empty_pb2.Empty())
    if not emit_structured(messages, output):
        sys.stdout.write(_process_table(messages, sort))
    report_errors(errors)


def _watch(g: Any, sort: SortBy, output: OutputFormat) -> None:
    """Print the processes every second, in one event loop, until interrupted. On a
    terminal each refresh replaces the screen; otherwise the tables follow one another. A
    node's error is printed and the watch goes on (the next refresh may succeed)."""
    import asyncio

    from google.protobuf import empty_pb2

    from talos_apply import client

    target = client.secure_target(g)
    c = client.Client(target)
    clear = sys.stdout.isatty()

    async def refresh() -> None:
        while True:
            messages, errors = await c.unary("Processes", empty_pb2.Empty())
            if clear:
                sys.stdout.write(_CLEAR)
            if not emit_structured(messages, output):
                sys.stdout.write(_process_table(messages, sort))
            sys.stdout.flush()
            for e in errors:
                sys.stderr.write(f"error: {e.node or '<endpoint>'}: {e.message}\n")
            await asyncio.sleep(WATCH_INTERVAL)

    client.run(refresh())
