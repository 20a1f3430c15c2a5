"""How PID 1 ends: the exit-code table (container mode) and the fatal path (metal mode).

Container mode exit codes (the shell convention, as a container entrypoint passes it on):

====  =====================================================================================
code  meaning
====  =====================================================================================
0     orderly shutdown requested through the node (the ``shutdown`` sequence)
1     fatal error: a boot task failed (named on the console); services were stopped first
2     bad command line (usage)
130   stopped by SIGINT, after the orderly stop of every service (128 + 2)
143   stopped by SIGTERM, after the orderly stop of every service (128 + 15)
====  =====================================================================================

A service that ignores SIGTERM is killed after its grace; that does not change the code.

Metal mode never exits: after a fatal error it stops the services, syncs (bounded) and reboots,
or waits forever when the kernel command line has ``panic=0``.
"""

from __future__ import annotations

import enum
import os
import signal
import threading
import time

from talos_init import mounts
from talos_init.logring import Console

SYNC_BOUND = 10.0  # seconds
REBOOT_COUNTDOWN = 10


class NodeExit(enum.IntEnum):
    SHUTDOWN = 0
    FATAL = 1
    USAGE = 2
    SIGINT = 128 + signal.SIGINT
    SIGTERM = 128 + signal.SIGTERM


def signal_exit(signum: int) -> int:
    return 128 + signum


def bounded_sync(timeout: float = SYNC_BOUND) -> bool:
    """``sync()`` in a thread, waiting at most ``timeout``; ``True`` when it finished."""
    worker = threading.Thread(target=os.sync, name="sync", daemon=True)
    worker.start()
    worker.join(timeout)
    return not worker.is_alive()


def metal_fatal(console: Console, panic: str | None, *, countdown: int = REBOOT_COUNTDOWN) -> None:
    """The end of a metal node after a fatal error: never returns."""
    if not bounded_sync():
        console.log(f"sync did not finish within {SYNC_BOUND:g}s")
    if panic == "0":
        console.log("panic=0: waiting forever")
        while True:
            time.sleep(3600)
    for left in range(countdown, 0, -1):
        console.log(f"rebooting in {left} seconds")
        time.sleep(1)
    mounts.reboot()
    console.log("reboot syscall failed: waiting forever")
    while True:
        time.sleep(3600)
