"""What ``Dmesg``, ``Memory`` and ``Processes`` report: the node's kernel log, ``/proc/meminfo``
and its processes, read from the node's own view (in container mode its PID namespace and
mount of /proc, so ``processes`` lists the node's processes and nothing of the host's).

Shapes as Talos sends them: one kernel record per ``common.Data`` message, formatted
``<facility>: <priority, right-aligned in 7>: [<RFC 3339 time>]: <text>``; meminfo values in kB
as the kernel prints them (hugepage counts as counts); process memory in bytes and CPU time in
seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from libtalos.api.wire import meminfo_field

KMSG = "/dev/kmsg"
FACILITIES = (
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    *(f"local{i}" for i in range(8)),
)
PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
RECORD_MAX = 8192  # the kernel's largest /dev/kmsg record


def _boot_time() -> dt.datetime:
    """Wall-clock time of boot: now minus the monotonic clock (/dev/kmsg stamps use it)."""
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=time.clock_gettime(time.CLOCK_MONOTONIC))


def format_record(raw: bytes, boot: dt.datetime) -> str | None:
    """One /dev/kmsg record (``prio,seq,usec,flags;text`` then ``\\n key=value`` lines) as
    Talos formats it; None for a record that does not parse."""
    head, sep, rest = raw.partition(b";")
    fields = head.split(b",")
    if not sep or len(fields) < 3:
        return None
    try:
        prio, usec = int(fields[0]), int(fields[2])
    except ValueError:
        return None
    text = rest.split(b"\n", 1)[0].decode("utf-8", "replace")
    facility = prio >> 3
    name = FACILITIES[facility] if facility < len(FACILITIES) else str(facility)
    when = (boot + dt.timedelta(microseconds=usec)).isoformat().replace("+00:00", "Z")
    return f"{name}: {PRIORITIES[prio & 7]:>7}: [{when}]: {_unescape(text)}"


def _unescape(text: str) -> str:
    r"""The kernel writes non-printable bytes as ``\xNN``; show them as they were (tabs...)."""
    if "\\x" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text.startswith("\\x", i) and i + 4 <= len(text):
            try:
                out.append(chr(int(text[i + 2 : i + 4], 16)))
                i += 4
                continue
            except ValueError:
                pass
        out.append(text[i])
        i += 1
    return "".join(out)


async def kernel_log(follow: bool, tail: bool) -> AsyncIterator[str]:
    """The kernel's records from the oldest kept (or, with ``tail``, from now on); with
    ``follow``, new ones as they come, until the caller stops."""
    fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    try:
        if tail:
            os.lseek(fd, 0, os.SEEK_END)
        boot = _boot_time()
        if follow:
            loop.add_reader(fd, ready.set)
        while True:
            try:
                raw = os.read(fd, RECORD_MAX)
            except BlockingIOError:
                if not follow:
                    return
                ready.clear()
                await ready.wait()
                continue
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records overwritten before they were read
                    continue
                raise
            line = format_record(raw, boot)
            if line is not None:
                yield line
    finally:
        if follow:
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)
        os.close(fd)


def meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """``/proc/meminfo`` by the names of ``machine.MemInfo``'s fields, values as the kernel
    prints them."""
    out: dict[str, int] = {}
    with open(path) as fh:
        for line in fh:
            key, _, value = line.partition(":")
            number = value.split()[:1]
            if number and number[0].isdigit():
                out[meminfo_field(key)] = int(number[0])
    return out


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    state: str
    threads: int
    cpu_time: float  # seconds, user + system
    virtual_memory: int  # bytes
    resident_memory: int  # bytes
    command: str
    executable: str
    args: str


def processes(proc: str = "/proc") -> list[ProcessInfo]:
    """Every process of this PID namespace (those that exit while being read are skipped)."""
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        base = os.path.join(proc, entry)
        try:
            with open(os.path.join(base, "stat"), "rb") as fh:
                stat = fh.read().decode("utf-8", "replace")
            with open(os.path.join(base, "cmdline"), "rb") as fh:
                cmdline = fh.read()
            try:
                executable = os.readlink(os.path.join(base, "exe"))
            except OSError:  # a kernel thread, or gone
                executable = ""
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        found.append(
            ProcessInfo(
                pid=int(entry),
                ppid=int(fields[1]),
                state=fields[0],
                threads=int(fields[17]),
                cpu_time=(int(fields[11]) + int(fields[12])) / tick,
                virtual_memory=int(fields[20]),
                resident_memory=int(fields[21]) * page,
                command=command,
                executable=executable,
                args=" ".join(a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a),
            )
        )
    return found
