"""One reaper owns every ``wait()`` in PID 1.

Nothing else in the process waits for a child: the supervisor and the health checks start their
processes through :meth:`Reaper.spawn`, which registers the pid under the reaper's lock before
any wait can see it, and are called back (on the asyncio loop) with the exit status. Everything
else that dies in our PID namespace (orphans re-parented to us) is reaped and counted. This
avoids the trap of ``subprocess.Popen.wait()`` reporting 0 for a child another waiter already
collected (ECHILD).

:meth:`reap` runs in the signal loop's thread as soon as SIGCHLD arrives (as in tini's loop), so
reaping many orphans costs no round trip through the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence

from talos_init.spawn import spawn

ExitCallback = Callable[[int, int], None]  # (pid, raw wait status)


class Reaper:
    def __init__(self, *, reap_orphans: bool = True) -> None:
        # reap_orphans=False exists only as the negative control of the tests: zombies pile up.
        self.reap_orphans = reap_orphans
        self._watchers: dict[int, tuple[ExitCallback, asyncio.AbstractEventLoop | None]] = {}
        self._lock = threading.Lock()
        self.orphans_reaped = 0
        self.children_reaped = 0

    def spawn(
        self,
        argv: Sequence[str],
        on_exit: ExitCallback,
        *,
        env: Mapping[str, str] | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
        stdin: int | None = None,
    ) -> int:
        """Start a child and watch it; ``on_exit`` runs on the calling thread's asyncio loop."""
        loop = _running_loop()
        with self._lock:  # no reap can run between the spawn and the registration
            pid = spawn(argv, env=env, stdout=stdout, stderr=stderr, stdin=stdin)
            self._watchers[pid] = (on_exit, loop)
        return pid

    def watching(self) -> int:
        return len(self._watchers)

    def reap(self) -> int:
        """Collect every exited child (``waitpid(-1, WNOHANG)`` until none is left).

        The loop is kept tight (it runs once per orphan: 10 000 orphans are 10 000 turns): local
        names, no call and no allocation for an orphan beyond the status tuple ``waitpid``
        returns; only a watched child goes through :meth:`_dispatch`.
        """
        with self._lock:
            if not self.reap_orphans:
                return self._reap_watched_only()
            waitpid, wnohang, watchers = os.waitpid, os.WNOHANG, self._watchers
            count = orphans = 0
            while True:
                try:
                    pid, status = waitpid(-1, wnohang)
                except ChildProcessError:
                    break
                except InterruptedError:  # pragma: no cover - all signals are blocked
                    continue
                if pid == 0:
                    break
                count += 1
                if pid in watchers:
                    self._dispatch(pid, status)
                else:
                    orphans += 1
            self.orphans_reaped += orphans
            return count

    def _reap_watched_only(self) -> int:
        count = 0
        for pid in list(self._watchers):
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if got == pid:
                count += 1
                self._dispatch(pid, status)
        return count

    def _dispatch(self, pid: int, status: int) -> None:
        entry = self._watchers.pop(pid, None)
        if entry is None:
            self.orphans_reaped += 1
            return
        self.children_reaped += 1
        callback, loop = entry
        if loop is None:
            callback(pid, status)
        else:
            # A closed loop (RuntimeError) means nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(callback, pid, status)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def exit_code(status: int) -> int:
    """Shell convention for a wait status: the exit code, or 128 + signal when killed."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 255  # pragma: no cover - stopped/continued are not reported without WUNTRACED


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        import signal

        try:
            name = signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            name = f"signal {os.WTERMSIG(status)}"
        return f"killed by {name}"
    return f"exited with code {os.WEXITSTATUS(status)}"
