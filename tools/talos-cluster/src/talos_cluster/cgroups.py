"""Per-node CPU and memory limits (``--cpus``, ``--memory``) with cgroups, where allowed.

cgroup v2 (``cpu.max``, ``memory.max``) when the unified hierarchy offers the cpu and memory
controllers; otherwise cgroup v1 (``cpu.cfs_quota_us``, ``memory.limit_in_bytes``) when those
hierarchies are mounted and writable; otherwise nothing is enforced and the reason is reported.
A node's processes are placed in its groups before the node's PID 1 starts (the launcher writes
its own PID to ``cgroup.procs`` and then execs), so every process of the node is inside.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
PARENT = "talos-cluster"


@dataclass
class Limits:
    groups: list[str] = field(default_factory=list)  # directories made for the node
    procs: list[str] = field(default_factory=list)  # cgroup.procs files the launcher joins
    summary: str = ""  # "cgroup v2: cpu.max 200000 100000, memory.max 2147483648" or why not


def _v2_controllers(root: Path) -> set[str]:
    try:
        return set((root / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _mkdirs(path: Path, made: list[str]) -> None:
    """mkdir -p, recording each directory created (so destroy removes exactly those)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        made.append(str(d))
        d.mkdir()


def setup(cluster: str, node: str, cpus: float, memory_mib: int, made: list[str]) -> Limits:
    """Make the node's groups and write the limits; ``made`` records directories as they are made.

    Never raises for a machine that does not allow limits: the summary says why.
    """
    quota = int(cpus * PERIOD_US)
    memory = memory_mib * 1024 * 1024
    out = Limits()
    v2 = CGROUP_ROOT
    if _v2_controllers(v2) >= {"cpu", "memory"}:
        try:
            base = v2 / PARENT
            _mkdirs(base / cluster, made)
            for d in (v2, base, base / cluster):
                _write(d / "cgroup.subtree_control", "+cpu +memory")
            group = base / cluster / node
            _mkdirs(group, made)
            out.groups.append(str(group))
            _write(group / "cpu.max", f"{quota} {PERIOD_US}")
            _write(group / "memory.max", str(memory))
            out.procs.append(str(group / "cgroup.procs"))
            out.summary = f"cgroup v2: cpu.max {quota} {PERIOD_US}, memory.max {memory}"
            return out
        except OSError as exc:
            out = Limits(summary=f"cgroup v2 refused the limits ({exc.strerror})")
    cpu_v1, mem_v1 = CGROUP_ROOT / "cpu", CGROUP_ROOT / "memory"
    if (cpu_v1 / "cpu.cfs_quota_us").exists() and (mem_v1 / "memory.limit_in_bytes").exists():
        try:
            for hier in (cpu_v1, mem_v1):
                group = hier / PARENT / cluster / node
                _mkdirs(group, made)
                out.groups.append(str(group))
                out.procs.append(str(group / "cgroup.procs"))
            _write(cpu_v1 / PARENT / cluster / node / "cpu.cfs_period_us", str(PERIOD_US))
            _write(cpu_v1 / PARENT / cluster / node / "cpu.cfs_quota_us", str(quota))
            _write(mem_v1 / PARENT / cluster / node / "memory.limit_in_bytes", str(memory))
            out.summary = f"cgroup v1: cpu.cfs_quota_us {quota}/{PERIOD_US}, memory {memory}"
            return out
        except OSError as exc:
            reason = f"cgroup v1 refused the limits ({exc.strerror})"
            return Limits(groups=out.groups, summary=f"not enforced: {reason}")
    why = out.summary or "no cgroup v2 cpu+memory controllers and no cgroup v1 cpu/memory"
    return Limits(summary=f"not enforced: {why}")


def remove(paths: list[str]) -> list[str]:
    """rmdir the recorded groups, deepest first; returns the ones that could not be removed."""
    left = []
    for p in sorted(set(paths), key=lambda s: s.count("/"), reverse=True):
        if not os.path.isdir(p):
            continue
        try:
            os.rmdir(p)
        except OSError:
            left.append(p)
    return left


def wrap(procs: list[str], argv: list[str]) -> list[str]:
    """``argv`` run by a shell that first moves itself into each group (then execs)."""
    if not procs:
        return argv
    script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 126; shift; done; shift; exec "$@"'
    return ["/bin/sh", "-c", script, "sh", *procs, "--", *argv]


def populated(paths: list[str]) -> bool:
    for p in paths:
        with contextlib.suppress(OSError):
            if Path(p, "cgroup.procs").read_text().strip():
                return True
    return False


def tasks(paths: list[str]) -> list[int]:
    """PIDs listed in the groups' ``cgroup.procs`` (processes of our nodes, nothing else)."""
    out: list[int] = []
    for p in paths:
        with contextlib.suppress(OSError, ValueError):
            out += [int(x) for x in Path(p, "cgroup.procs").read_text().split()]
    return out
