"""The dashboard's screen: a Textual app over :class:`talos_apply.dashboard.data.Source`.

Laid out for 80x24 and up, top to bottom: the node's summary line, CPU and memory gauges, CPU
shares / load / memory figures, sparklines of CPU, memory, load, network and disk, the
services, the processes (busiest first, scrollable), the node tabs and the keys. Keys as
talosctl's dashboard has them (docs/talos-facts.md#dashboard): ``h``/Left and ``l``/Right switch
node, ``j``/Down and ``k``/Up scroll the processes, Ctrl-D/U half a page, Ctrl-F/B a page,
``q`` or Ctrl-C quits. Textual honours ``NO_COLOR`` (no colours; bold and reverse stay), and
the active node's tab is bracketed and an unreachable one marked ``!``, so both show without
any attribute.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from talos_apply.commands.inspect import human_bytes
from talos_apply.dashboard.data import NodeView, Source, bar, go_duration, si, sparkline

FIXED_ROWS = 13  # every line but the process table's


def _rate(value: float) -> str:
    return f"{human_bytes(int(value))}/s"


def _pct(share: float) -> str:
    return f"{share * 100:5.1f}%"


def summary(v: NodeView, now: float) -> Text:
    if v.error:
        return Text.assemble((f"{v.node}: ", "bold"), (f"unreachable: {v.error}", "bold red"))
    if not v.has_data:
        return Text(f"{v.node}: waiting for the first answer")
    nprocs = len(v.processes)
    return Text.assemble(
        (v.hostname, "bold yellow"),
        f" ({v.version}): uptime {go_duration(now - v.boot_time)}, {v.cores} cores, {nprocs} procs",
    )


def gauges(v: NodeView, width: int) -> str:
    if v.error or not v.has_data:
        return ""
    w = max(4, (width - 2 * len("CPU  100.0%") - 5) // 2)
    cpu = v.cpu.usage if v.cpu is not None else 0.0
    return f"CPU {bar(cpu, w)} {_pct(cpu)}   MEM {bar(v.mem_share, w)} {_pct(v.mem_share)}"


def info(v: NodeView) -> str:
    """Four lines: CPU shares, load and processes, memory."""
    if v.error or not v.has_data:
        return ""
    c = v.cpu
    shares = (
        [_pct(x) for x in (c.user, c.nice, c.system, c.irq, c.idle, c.iowait, c.steal)]
        if c is not None
        else ["    -"] * 7
    )
    cpu = [
        f"User   {shares[0]}  Nice   {shares[1]}",
        f"System {shares[2]}  IRQ    {shares[3]}",
        f"Idle   {shares[4]}  Iowait {shares[5]}",
        f"Steal  {shares[6]}  CtxSw  {si(v.ctx_switches):>6}",
    ]
    load = [
        f"1 min  {v.load[0]:6.2f}",
        f"5 min  {v.load[1]:6.2f}",
        f"15 min {v.load[2]:6.2f}",
        f"Run {v.procs_running:3d} Blk {v.procs_blocked:2d}",
    ]
    m = v.meminfo
    kb = [
        human_bytes(x * 1024)
        for x in (
            m.memtotal,
            m.buffers,
            m.memtotal - m.memfree - m.cached - m.buffers,
            m.cached,
            m.memfree,
            m.memavailable,
            m.shmem,
        )
    ]
    mem = [
        f"Total  {kb[0]:>8}  Buffers {kb[1]:>8}",
        f"Used   {kb[2]:>8}  Cache   {kb[3]:>8}",
        f"Free   {kb[4]:>8}  Avail   {kb[5]:>8}",
        f"Shared {kb[6]:>8}  Created {si(v.procs_created) + '/s':>8}",
    ]
    return "\n".join(f"{a:<28}  {b:<13}  {c}" for a, b, c in zip(cpu, load, mem, strict=True))


def graphs(v: NodeView, width: int) -> str:
    if v.error or not v.has_data:
        return ""
    h = v.history
    w3 = max(4, (width - 3 * len("LOAD ") - 4) // 3)
    w2 = max(4, (width - len("NET  ") - 2 * len("RX 999 MB/s ") - 3) // 2)
    return "\n".join(
        [
            f"CPU  {sparkline(h['cpu'], w3, 1.0)}  MEM  {sparkline(h['mem'], w3, 1.0)}  "
            f"LOAD {sparkline(h['load'], w3)}",
            f"NET  RX {_rate(v.rx):>9} {sparkline(h['rx'], w2)}  "
            f"TX {_rate(v.tx):>9} {sparkline(h['tx'], w2)}",
            f"DISK RD {_rate(v.read):>9} {sparkline(h['read'], w2)}  "
            f"WR {_rate(v.write):>9} {sparkline(h['write'], w2)}",
        ]
    )


def services(v: NodeView) -> Text:
    if v.error or not v.has_data:
        return Text("")
    text = Text("SERVICES", style="bold")
    for s in v.services:
        text.append(f" {s.id} {s.state}")
        if s.health != "?":
            text.append(f" {s.health}", style="green" if s.health == "OK" else "red")
    return text


PROC_HEADER = (
    f"{'PID':>7} {'S':1} {'CPU%':>6} {'MEM%':>6} {'VIRT':>8} {'RES':>8} {'TIME+':>10} "
    f"{'THR':>4} COMMAND"
)


def process_lines(v: NodeView, offset: int, count: int) -> list[str]:
    if v.error or not v.has_data:
        return []
    return [
        f"{p.pid:7d} {p.state[:1]:1} {p.cpu:6.1f} {p.mem:6.1f} {human_bytes(p.virtual):>8} "
        f"{human_bytes(p.resident):>8} {go_duration(p.cpu_time):>10} {p.threads:4d} {p.command}"
        for p in v.processes[offset : offset + count]
    ]


def tabs(nodes: list[str], active: int, views: dict[str, NodeView]) -> Text:
    """The nodes, the active one in brackets, an unreachable one marked ``!``: both show
    without colour."""
    text = Text()
    for i, node in enumerate(nodes):
        down = bool(views.get(node, NodeView(node)).error)
        name = f"{node}!" if down else node
        label = f"[{name}]" if i == active else f" {name} "
        style = "bold reverse" if i == active else ""
        text.append(label, style=style + (" red" if down else ""))
        text.append(" ")
    return text


class Dashboard(App[None]):
    """Live metrics of the nodes, one node at a time."""

    CSS = """
    Screen { layout: vertical; overflow: hidden; }
    Static { width: 100%; text-wrap: nowrap; text-overflow: clip; }
    #top, #gauges, #tabs, #keys { height: 1; }
    #info { height: 4; }
    #graphs { height: 3; }
    #services { height: 2; text-wrap: wrap; text-overflow: ellipsis; }
    #procs { height: 1fr; }
    #keys { color: $text-muted; }
    """
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", priority=True),
        Binding("h,left", "node(-1)", "node left"),
        Binding("l,right", "node(1)", "node right"),
        Binding("j,down", "scroll_procs(1)", "down"),
        Binding("k,up", "scroll_procs(-1)", "up"),
        Binding("ctrl+d", "scroll_procs(0.5)", "half page down"),
        Binding("ctrl+u", "scroll_procs(-0.5)", "half page up"),
        Binding("ctrl+f", "scroll_procs(1.0)", "page down"),
        Binding("ctrl+b", "scroll_procs(-1.0)", "page up"),
    ]

    def __init__(self, source: Source, interval: float) -> None:
        # With NO_COLOR Textual drops colours only for an app in the terminal's own (ANSI)
        # colours; otherwise it turns them into shades of grey, which are colours still.
        super().__init__(ansi_color=True if os.environ.get("NO_COLOR") is not None else None)
        self.source = source
        self.interval = interval
        self.views: dict[str, NodeView] = {}
        self.active = 0
        self.offset = 0

    def compose(self) -> ComposeResult:
        for name in ("top", "gauges", "info", "graphs", "services", "procs", "tabs", "keys"):
            yield Static("", id=name)

    def on_mount(self) -> None:
        self.run_worker(self._poll(), exclusive=True)
        self.draw()

    def on_resize(self) -> None:
        self.draw()

    async def _poll(self) -> None:
        while True:
            started = time.monotonic()
            for v in await self.source.poll():
                self.views[v.node] = v
            self.draw()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    @property
    def nodes(self) -> list[str]:
        return self.source.tracker.nodes

    def _rows(self) -> int:
        return max(1, self.size.height - FIXED_ROWS - 1)

    def action_node(self, step: int) -> None:
        if self.nodes:
            self.active = (self.active + step) % len(self.nodes)
            self.offset = 0
            self.draw()

    def action_scroll_procs(self, step: float) -> None:
        """``step``: lines when an int, else a share of the table's page."""
        lines = step if isinstance(step, int) else int(step * self._rows())
        v = self.views.get(self.nodes[self.active]) if self.nodes else None
        count = len(v.processes) if v is not None else 0
        self.offset = max(0, min(self.offset + lines, count - self._rows()))
        self.draw()

    def draw(self) -> None:
        if not self.nodes:
            return
        node = self.nodes[self.active]
        v = self.views.get(node, NodeView(node))
        width = max(20, self.size.width)
        self._set("top", summary(v, time.time()))
        self._set("gauges", gauges(v, width))
        self._set("info", info(v))
        self._set("graphs", graphs(v, width))
        self._set("services", services(v))
        procs = Text(PROC_HEADER, style="bold")
        for line in process_lines(v, self.offset, self._rows()):
            procs.append("\n" + line)
        if v.error:  # the whole reason, wrapped (the summary line clips it)
            procs = Text("\n".join(textwrap.wrap(f"unreachable: {v.error}", width)), "bold")
        elif not v.has_data:
            procs = Text("")
        self._set("procs", procs)
        self._set("tabs", tabs(self.nodes, self.active, self.views))
        every = f"{self.interval:g}s"
        self._set("keys", f"h/l ←/→ node  j/k ↑/↓ scroll  ^D/^U ^F/^B page  q quit  every {every}")

    def _set(self, name: str, content: Any) -> None:
        self.query_one(f"#{name}", Static).update(content)
