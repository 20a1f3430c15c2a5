"""Processes of a qemu cluster (QEMU, dnsmasq, the HTTP server): started detached, known by
their PID and start time (so a reused PID is never mistaken for one of ours), stopped with a
signal and SIGKILL after a grace period."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from libtalos.errors import TalosError
from talos_cluster.state import is_ours, process_start_time

POLL = 0.05


class SpawnError(TalosError):
    """A process of the cluster could not be started."""


def spawn(argv: Sequence[str], log: Path, what: str) -> tuple[int, int]:
    """Start ``argv`` in a session of its own (a Ctrl-C aimed at create does not reach it),
    stdin from /dev/null, stdout and stderr appended to ``log``; returns (PID, start time)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        pid = os.posix_spawnp(
            argv[0],
            list(argv),
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, null, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1),
                (os.POSIX_SPAWN_DUP2, fd, 2),
            ],
            setsid=True,
            setsigmask=set(),
            setsigdef={signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE},
        )
    except OSError as exc:
        raise SpawnError(f"{what}: cannot start {argv[0]}: {exc.strerror}") from None
    finally:
        os.close(fd)
        os.close(null)
    start = process_start_time(pid)
    if start is None:  # pragma: no cover - gone before we looked
        reap(pid)
        raise SpawnError(f"{what}: {argv[0]} exited at once; see {log}")
    return pid, start


def reap(pid: int) -> None:
    """Collect ``pid`` when it is our child (create and destroy in one process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int, start_time: int) -> bool:
    """Whether ``pid`` is still the process started at ``start_time`` (and not a zombie)."""
    if pid <= 0:
        return False
    reap(pid)
    if not is_ours(pid, start_time):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pid: int, start_time: int, timeout: float) -> bool:
    """Until the process has exited or ``timeout`` passed; True when it is gone."""
    deadline = time.monotonic() + timeout
    while alive(pid, start_time):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True


def stop(pid: int, start_time: int, grace: float, sig: int = signal.SIGTERM) -> bool:
    """``sig`` (0: none, the caller asked it to exit another way), SIGKILL after ``grace``
    seconds; True when it had to be killed."""
    if not alive(pid, start_time):
        return False
    if sig:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    if wait_gone(pid, start_time, grace):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_gone(pid, start_time, 10.0):
        raise TalosError(f"process {pid} did not exit after SIGKILL")
    return True
