"""What ``LoadAvg``, ``SystemStat``, ``CPUInfo``, ``NetworkDeviceStats`` and ``DiskStats``
report: /proc as the node sees it (docs/talos-facts.md#system-views).

The files are read by PID 1 itself, through the /proc it has mounted: in container mode that
is the /proc of the node's own PID namespace (the launcher mounts one), read from inside the
node's network namespace, so ``/proc/net/dev`` lists the node's links and not the host's. Load,
CPU times, CPU models and disk counters are kernel-wide figures: a container-mode node shows the
host kernel's, as a container does.

Each function returns plain dicts keyed by the ``machine.*`` message's field names. CPU times
are in seconds (the kernel's clock ticks divided by ``SC_CLK_TCK``), as Talos sends them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PROC = Path("/proc")

CPU_TIMES = ("user", "nice", "system", "idle", "iowait", "irq", "soft_irq", "steal", "guest")
CPU_TIMES_ALL = (*CPU_TIMES, "guest_nice")
SOFTIRQS = (
    "hi",
    "timer",
    "net_tx",
    "net_rx",
    "block",
    "block_io_poll",
    "tasklet",
    "sched",
    "hrtimer",
    "rcu",
)
NETDEV = (
    "rx_bytes",
    "rx_packets",
    "rx_errors",
    "rx_dropped",
    "rx_fifo",
    "rx_frame",
    "rx_compressed",
    "rx_multicast",
    "tx_bytes",
    "tx_packets",
    "tx_errors",
    "tx_dropped",
    "tx_fifo",
    "tx_collisions",
    "tx_carrier",
    "tx_compressed",
)
DISKSTAT = (
    "read_completed",
    "read_merged",
    "read_sectors",
    "read_time_ms",
    "write_completed",
    "write_merged",
    "write_sectors",
    "write_time_ms",
    "io_in_progress",
    "io_time_ms",
    "io_time_weighted_ms",
    "discard_completed",
    "discard_merged",
    "discard_sectors",
    "discard_time_ms",
)
# /proc/cpuinfo keys -> (CPUInfo field, kind)
CPUINFO_KEYS: dict[str, tuple[str, str]] = {
    "processor": ("processor", "int"),
    "vendor_id": ("vendor_id", "str"),
    "cpu family": ("cpu_family", "str"),
    "model": ("model", "str"),
    "model name": ("model_name", "str"),
    "stepping": ("stepping", "str"),
    "microcode": ("microcode", "str"),
    "cpu MHz": ("cpu_mhz", "float"),
    "cache size": ("cache_size", "str"),
    "physical id": ("physical_id", "str"),
    "siblings": ("siblings", "int"),
    "core id": ("core_id", "str"),
    "cpu cores": ("cpu_cores", "int"),
    "apicid": ("apic_id", "str"),
    "initial apicid": ("initial_apic_id", "str"),
    "fpu": ("fpu", "str"),
    "fpu_exception": ("fpu_exception", "str"),
    "cpuid level": ("cpu_id_level", "int"),
    "wp": ("wp", "str"),
    "flags": ("flags", "list"),
    "bugs": ("bugs", "list"),
    "bogomips": ("bogo_mips", "float"),
    "clflush size": ("cl_flush_size", "int"),
    "cache_alignment": ("cache_alignment", "int"),
    "address sizes": ("address_sizes", "str"),
    "power management": ("power_management", "str"),
}


def _read(name: str, proc: Path) -> str:
    return (proc / name).read_text()


def loadavg(proc: Path = PROC) -> dict[str, float]:
    """``/proc/loadavg``'s three averages."""
    fields = _read("loadavg", proc).split()
    return {"load1": float(fields[0]), "load5": float(fields[1]), "load15": float(fields[2])}


def _cpu(values: list[str], tick: float) -> dict[str, float]:
    return {name: int(v) / tick for name, v in zip(CPU_TIMES_ALL, values, strict=False)}


def system_stat(proc: Path = PROC) -> dict[str, Any]:
    """``/proc/stat``: CPU times (total and per CPU), interrupts, context switches, processes,
    soft interrupts."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    out: dict[str, Any] = {"cpu": []}
    for line in _read("stat", proc).splitlines():
        key, *values = line.split()
        if key == "cpu":
            out["cpu_total"] = _cpu(values, tick)
        elif key.startswith("cpu"):
            out["cpu"].append(_cpu(values, tick))
        elif key == "intr" and values:
            out["irq_total"] = int(values[0])
            out["irq"] = [int(v) for v in values[1:]]
        elif key == "ctxt":
            out["context_switches"] = int(values[0])
        elif key == "btime":
            out["boot_time"] = int(values[0])
        elif key == "processes":
            out["process_created"] = int(values[0])
        elif key == "procs_running":
            out["process_running"] = int(values[0])
        elif key == "procs_blocked":
            out["process_blocked"] = int(values[0])
        elif key == "softirq" and values:
            out["soft_irq_total"] = int(values[0])
            out["soft_irq"] = {n: int(v) for n, v in zip(SOFTIRQS, values[1:], strict=False)}
    return out


def _cpuinfo_value(kind: str, text: str) -> Any:
    if kind == "list":
        return text.split()
    try:
        return int(text) if kind == "int" else float(text) if kind == "float" else text
    except ValueError:
        return 0 if kind == "int" else 0.0


def cpu_info(proc: Path = PROC) -> list[dict[str, Any]]:
    """``/proc/cpuinfo``: one dict per processor block (the keys CPUInfo has)."""
    blocks: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in _read("cpuinfo", proc).splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        known = CPUINFO_KEYS.get(key.strip())
        if sep and known is not None:
            current[known[0]] = _cpuinfo_value(known[1], value.strip())
    if current:
        blocks.append(current)
    return blocks


def _totals(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: sum(int(r.get(f, 0)) for r in rows) for f in fields}


def net_dev(proc: Path = PROC) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``/proc/net/dev`` (the reader's network namespace): the total and one row per link."""
    rows: list[dict[str, Any]] = []
    for line in _read("net/dev", proc).splitlines()[2:]:
        name, sep, rest = line.partition(":")
        values = rest.split()
        if not sep or len(values) < len(NETDEV):
            continue
        row: dict[str, Any] = {"name": name.strip()}
        row.update({f: int(v) for f, v in zip(NETDEV, values, strict=False)})
        rows.append(row)
    # the total is named after the links it adds up, sorted (as Talos's procfs names it)
    total = {"name": ", ".join(sorted(r["name"] for r in rows)), **_totals(rows, NETDEV)}
    return total, rows


def disk_stats(proc: Path = PROC) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``/proc/diskstats``: the total and one row per block device (lines of 18 fields or more,
    as Talos reads them: kernels before 4.18 have no discard counters and are skipped)."""
    rows: list[dict[str, Any]] = []
    for line in _read("diskstats", proc).splitlines():
        fields = line.split()
        if len(fields) < 3 + len(DISKSTAT):
            continue
        row: dict[str, Any] = {"name": fields[2]}
        row.update({f: int(v) for f, v in zip(DISKSTAT, fields[3:], strict=False)})
        rows.append(row)
    return _totals(rows, DISKSTAT), rows
