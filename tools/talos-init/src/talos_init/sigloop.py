"""Signals in PID 1: block them all before any thread exists, then handle them in one loop.

This follows tini's design. Every signal except the synchronous fault signals (which must stay
deliverable so a real crash is not turned into a hang) is blocked with ``pthread_sigmask`` while
the process still has one thread, so every thread created later inherits the blocked mask and no
asynchronous handler ever runs. One thread then waits with a bounded ``sigtimedwait`` and hands each
signal to the asyncio loop, where the reaper and the supervisor live.

Children never inherit this mask: :mod:`talos_init.spawn` starts them with an empty mask and
default dispositions.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
from collections.abc import Callable

# Left alone, as tini does: a fault must kill us (and, in metal mode, panic the kernel).
FAULT_SIGNALS = frozenset(
    {
        signal.SIGFPE,
        signal.SIGILL,
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGABRT,
        signal.SIGTRAP,
        signal.SIGSYS,
    }
)
UNBLOCKABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})
# Ignored rather than blocked, as tini does: a background PID 1 touching a tty must not stop.
IGNORED = (signal.SIGTTIN, signal.SIGTTOU)

WAIT_BOUND = 1.0  # seconds; sigtimedwait returns at least this often so the loop can be stopped
# After a pass that reaped something, children are exiting: wait this long before the next
# pass, so that one wake-up collects a burst rather than one wake-up (and one sigtimedwait, one
# empty waitpid) per child. A child's exit is still seen within this bound.
COALESCE = 0.002  # seconds


class ThreadsRunningError(RuntimeError):
    """The signal mask must be set while the process has one thread."""


def handled_signals() -> frozenset[int]:
    return frozenset(signal.valid_signals()) - FAULT_SIGNALS - UNBLOCKABLE - set(IGNORED)


def block_signals() -> frozenset[int]:
    """Block every handled signal in the (single) current thread; return the blocked set."""
    if threading.active_count() != 1:
        raise ThreadsRunningError(
            "signals must be blocked before any thread starts (threads would keep an open mask)"
        )
    mask = handled_signals()
    signal.pthread_sigmask(signal.SIG_BLOCK, mask)
    for sig in IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    return mask


class SignalLoop:
    """The one place signals are received: a bounded ``sigtimedwait`` loop.

    SIGCHLD is handled here directly (the reaper); every other signal is passed to ``handler``
    on the asyncio loop.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        mask: frozenset[int],
        handler: Callable[[int], None],
        reap: Callable[[], object],
    ) -> None:
        self._loop = loop
        self._mask = mask
        self._handler = handler
        self._reap = reap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="signals", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        sigchld, sleep = signal.SIGCHLD, time.sleep
        while not self._stop.is_set():
            info = signal.sigtimedwait(self._mask, WAIT_BOUND)
            if info is None:
                continue
            try:
                if info.si_signo == sigchld:
                    # at once: the reaper hands exits of watched pids to the loop
                    if self._reap():
                        sleep(COALESCE)
                else:
                    self._loop.call_soon_threadsafe(self._handler, info.si_signo)
            except RuntimeError:  # the loop is closed: we are exiting
                return
            except Exception:  # noqa: BLE001 - this loop must outlive any one failure
                sys.stderr.write("[talos] signal loop: internal error; still running\n")
