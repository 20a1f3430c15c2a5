"""What the dashboard shows, fetched and computed without any UI.

Each round calls the nodes' Hostname, Version, LoadAvg, SystemStat, Memory, Processes,
NetworkDeviceStats, DiskStats and ServiceList at once (one fan-out call each, as talosctl's
dashboard does: docs/talos-facts.md#dashboard). Figures that are counters in /proc become
shares and rates from the difference to the node's previous answered round: CPU shares from
SystemStat's ``cpu_total``, a process's CPU% from its ``cpu_time`` over the CPU time of one
core, network bytes per second from NetworkDeviceStats' ``total``, disk bytes per second from
DiskStats' ``total`` sectors (512 bytes each). A counter that went down (the node restarted)
counts as no change. A node that fails a call is shown with its reason until it answers again;
its rates then come from the round before it failed, over the whole time in between.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RPCS = (
    "Hostname",
    "Version",
    "LoadAvg",
    "SystemStat",
    "Memory",
    "Processes",
    "NetworkDeviceStats",
    "DiskStats",
    "ServiceList",
)
SECTOR = 512  # bytes: /proc/diskstats counts sectors of 512 bytes whatever the device's
HISTORY = 240  # points kept per series
SERIES = ("cpu", "mem", "load", "rx", "tx", "read", "write")
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "soft_irq", "steal")


def delta(old: float, new: float) -> float:
    """``new - old`` for a counter; 0 when it went down (reset: the node restarted)."""
    return new - old if new >= old else 0.0


@dataclass(frozen=True)
class CpuShares:
    """Fractions (0..1) of the CPU time that passed between two SystemStat answers."""

    user: float = 0.0
    nice: float = 0.0
    system: float = 0.0
    idle: float = 0.0
    iowait: float = 0.0
    irq: float = 0.0
    soft_irq: float = 0.0
    steal: float = 0.0
    total: float = 0.0  # seconds of CPU time (all cores) that passed

    @property
    def usage(self) -> float:
        """Busy share: everything but idle and iowait."""
        return 1.0 - self.idle - self.iowait if self.total else 0.0


def cpu_shares(old: Any, new: Any) -> CpuShares:
    """Shares of two ``machine.CPUStat`` readings (Talos's sum: idle + iowait + user + nice +
    system + irq + softirq + steal; guest time is inside user already)."""
    d = {f: delta(getattr(old, f), getattr(new, f)) for f in CPU_FIELDS}
    total = sum(d.values())
    if total <= 0:
        return CpuShares()
    return CpuShares(**{f: v / total for f, v in d.items()}, total=total)


def rate(old: float, new: float, seconds: float) -> float:
    """Per-second rate of a counter between two readings ``seconds`` apart."""
    return delta(old, new) / seconds if seconds > 0 else 0.0


def mem_used(info: Any) -> int:
    """Used memory in kB as ``free`` and talosctl count it: total - free - cached - buffers."""
    return max(0, int(info.memtotal - info.memfree - info.cached - info.buffers))


def command_line(p: Any) -> str:
    """The command of a ``machine.ProcessInfo`` as talosctl shows it: the arguments with the
    first replaced by the executable's path when it names the same program."""
    if not p.executable:
        return str(p.command)
    words = p.args.split()
    if words and words[0].rsplit("/", 1)[-1] == p.executable.rsplit("/", 1)[-1]:
        return " ".join([p.executable, *words[1:]])
    return str(p.args or p.executable)


@dataclass(frozen=True)
class ProcRow:
    pid: int
    state: str
    cpu: float  # percent of one core
    mem: float  # percent of the node's memory
    virtual: int  # bytes
    resident: int  # bytes
    cpu_time: float  # seconds
    threads: int
    command: str


def process_rows(
    old: Sequence[Any], new: Sequence[Any], core_seconds: float, mem_total: int
) -> list[ProcRow]:
    """``new``'s processes, busiest first: CPU% is the CPU time a process used since ``old``
    over ``core_seconds`` (the time one core had meanwhile); a process new since ``old``
    counts from zero; memory % of ``mem_total`` bytes."""
    before = {p.pid: p.cpu_time for p in old}
    rows = []
    for p in new:
        used = delta(before.get(p.pid, p.cpu_time), p.cpu_time)
        rows.append(
            ProcRow(
                pid=p.pid,
                state=p.state,
                cpu=100.0 * used / core_seconds if core_seconds > 0 else 0.0,
                mem=100.0 * p.resident_memory / mem_total if mem_total > 0 else 0.0,
                virtual=p.virtual_memory,
                resident=p.resident_memory,
                cpu_time=p.cpu_time,
                threads=p.threads,
                command=command_line(p),
            )
        )
    rows.sort(key=lambda r: (-r.cpu, -r.resident, r.pid))
    return rows


@dataclass(frozen=True)
class Service:
    id: str
    state: str
    health: str  # "OK", "Fail" or "?" (unknown)


@dataclass
class Sample:
    """One node's answers of one round (RPC name -> its message), when they came."""

    at: float  # time.monotonic()
    replies: dict[str, Any]


@dataclass
class NodeView:
    """Everything the screen shows of one node."""

    node: str  # the target as given (-n)
    error: str = ""  # why the last round failed ("" when it answered)
    hostname: str = ""
    version: str = ""  # "tag-sha"
    boot_time: int = 0  # seconds since the epoch
    cores: int = 0
    cpu: CpuShares | None = None  # None: no previous round to compare with yet
    ctx_switches: float = 0.0  # per second
    procs_created: float = 0.0  # per second
    procs_running: int = 0
    procs_blocked: int = 0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    meminfo: Any = None  # machine.MemInfo, kB
    rx: float = 0.0  # bytes per second
    tx: float = 0.0
    read: float = 0.0
    write: float = 0.0
    processes: list[ProcRow] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    history: dict[str, deque[float]] = field(default_factory=dict)

    @property
    def has_data(self) -> bool:
        return self.meminfo is not None

    @property
    def mem_share(self) -> float:
        total = self.meminfo.memtotal if self.meminfo is not None else 0
        return mem_used(self.meminfo) / total if total else 0.0


def _service(info: Any) -> Service:
    h = info.health
    health = "?" if h.unknown else "OK" if h.healthy else "Fail"
    return Service(info.id, info.state, health)


class Tracker:
    """Each node's last answered round and history; turns a new round into :class:`NodeView`."""

    def __init__(self, nodes: Sequence[str], history: int = HISTORY) -> None:
        self.nodes = sorted(nodes)  # the tabs' order, as talosctl's
        self._last: dict[str, Sample] = {}
        self._views: dict[str, NodeView] = {}
        self._history = history

    def view(self, node: str) -> NodeView:
        if node not in self._views:
            self._views[node] = NodeView(
                node, history={s: deque(maxlen=self._history) for s in SERIES}
            )
            if node not in self.nodes:
                self.nodes = sorted([*self.nodes, node])
        return self._views[node]

    def failed(self, node: str, reason: str) -> NodeView:
        """The node did not answer this round: keep what was shown, note why."""
        v = self.view(node)
        v.error = reason or "no answer"
        return v

    def update(self, node: str, sample: Sample) -> NodeView:
        """The node answered every call of this round."""
        v = self.view(node)
        r = sample.replies
        old = self._last.get(node)
        stat = r["SystemStat"]
        v.error = ""
        v.hostname = r["Hostname"].hostname
        info = r["Version"].version
        v.version = f"{info.tag}-{info.sha}" if info.sha else info.tag
        v.boot_time = stat.boot_time
        v.cores = len(stat.cpu) or 1
        v.procs_running, v.procs_blocked = stat.process_running, stat.process_blocked
        la = r["LoadAvg"]
        v.load = (la.load1, la.load5, la.load15)
        v.meminfo = r["Memory"].meminfo
        v.services = sorted((_service(s) for s in r["ServiceList"].services), key=lambda s: s.id)
        procs = r["Processes"].processes
        if old is None:
            v.cpu = None
            v.ctx_switches = v.procs_created = v.rx = v.tx = v.read = v.write = 0.0
            v.processes = process_rows(procs, procs, 0.0, v.meminfo.memtotal * 1024)
        else:
            o = old.replies
            seconds = sample.at - old.at
            ostat = o["SystemStat"]
            v.cpu = cpu_shares(ostat.cpu_total, stat.cpu_total)
            v.ctx_switches = rate(ostat.context_switches, stat.context_switches, seconds)
            v.procs_created = rate(ostat.process_created, stat.process_created, seconds)
            net, onet = r["NetworkDeviceStats"].total, o["NetworkDeviceStats"].total
            v.rx = rate(onet.rx_bytes, net.rx_bytes, seconds)
            v.tx = rate(onet.tx_bytes, net.tx_bytes, seconds)
            disk, odisk = r["DiskStats"].total, o["DiskStats"].total
            v.read = SECTOR * rate(odisk.read_sectors, disk.read_sectors, seconds)
            v.write = SECTOR * rate(odisk.write_sectors, disk.write_sectors, seconds)
            core_seconds = v.cpu.total / v.cores
            old_procs = o["Processes"].processes
            v.processes = process_rows(old_procs, procs, core_seconds, v.meminfo.memtotal * 1024)
            for name, value in (
                ("cpu", v.cpu.usage),
                ("mem", v.mem_share),
                ("load", v.load[0]),
                ("rx", v.rx),
                ("tx", v.tx),
                ("read", v.read),
                ("write", v.write),
            ):
                v.history[name].append(value)
        self._last[node] = sample
        return v

    def round(
        self, replies: dict[str, list[Any]], errors: dict[str, str], at: float
    ) -> list[NodeView]:
        """One round's answers: RPC name -> messages (each tagged with its node), node ->
        reason for the nodes that failed a call; every node's view, in ``nodes`` order."""
        by_node: dict[str, dict[str, Any]] = {}
        for method, messages in replies.items():
            for m in messages:
                by_node.setdefault(m.metadata.hostname, {})[method] = m
        for node in dict.fromkeys([*self.nodes, *by_node]):  # each once, in order
            got = by_node.get(node, {})
            if node in errors:
                self.failed(node, errors[node])
            elif all(name in got for name in RPCS):
                self.update(node, Sample(at, got))
            else:
                missing = [name for name in RPCS if name not in got]
                self.failed(node, f"no answer to {', '.join(missing)}")
        return [self.view(n) for n in self.nodes]


Call = Callable[[str], Any]  # RPC name -> awaitable (messages, node errors)


async def gather(
    call: Call, nodes: Sequence[str], timeout: float
) -> tuple[dict[str, list[Any]], dict[str, str]]:
    """Make every call of a round at once; returns (RPC -> messages, node -> reason). A call
    that fails as a whole (the endpoint is down) is the reason of every node without one."""
    from libtalos.errors import TalosError

    async def one(method: str) -> Any:
        return await asyncio.wait_for(call(method), timeout)

    results = await asyncio.gather(*(one(m) for m in RPCS), return_exceptions=True)
    replies: dict[str, list[Any]] = {}
    errors: dict[str, str] = {}
    whole: str = ""
    for method, result in zip(RPCS, results, strict=True):
        if isinstance(result, TimeoutError):
            whole = whole or f"{method}: no answer in {timeout:g}s"
        elif isinstance(result, TalosError | OSError):
            whole = whole or str(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            messages, node_errors = result
            replies[method] = messages
            for e in node_errors:
                errors.setdefault(e.node, e.message)
    if whole:
        for node in nodes:
            errors.setdefault(node, whole)
    return replies, errors


class Source:
    """The rounds of a dashboard: a client's calls and a :class:`Tracker`."""

    def __init__(self, client: Any, nodes: Sequence[str], interval: float) -> None:
        self.client = client
        self.tracker = Tracker(nodes)
        self.timeout = max(10.0, 3 * interval)

    def _call(self, method: str) -> Any:
        from google.protobuf import empty_pb2

        return self.client.unary(method, empty_pb2.Empty())

    async def poll(self) -> list[NodeView]:
        replies, errors = await gather(self._call, self.tracker.nodes, self.timeout)
        return self.tracker.round(replies, errors, time.monotonic())


# ------------------------------------------------------------ text


def go_duration(seconds: float) -> str:
    """Whole seconds as Go prints a time.Duration: ``0s``, ``45s``, ``2m5s``, ``1h0m5s``."""
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    return f"{m}m{sec}s" if m else f"{sec}s"


def si(value: float) -> str:
    """A count with an SI prefix: ``950``, ``1.2k``, ``3.4M``."""
    for unit in ("", "k", "M", "G"):
        if abs(value) < 1000 or unit == "G":
            return f"{value:.0f}{unit}" if not unit else f"{value:.1f}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int, top: float | None = None) -> str:
    """The last ``width`` values as block characters, scaled to ``top`` (default: their
    maximum); padded on the left with spaces to ``width``."""
    shown = list(values)[-width:] if width > 0 else []
    peak = top if top is not None else max(shown, default=0.0)
    steps = len(BARS) - 1
    chars = []
    for v in shown:
        level = 0 if peak <= 0 else round(min(v, peak) / peak * steps)
        chars.append(BARS[max(level, 1 if v > 0 else 0)])
    return "".join(chars).rjust(width)


def bar(share: float, width: int) -> str:
    """A gauge of ``share`` (0..1): ``|`` for the filled part, ``.`` for the rest."""
    filled = round(max(0.0, min(1.0, share)) * width)
    return "|" * filled + "." * (width - filled)
