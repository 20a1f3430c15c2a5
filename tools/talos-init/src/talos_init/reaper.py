"""One reaper owns every ``wait()`` in PID 1.

Nothing else in the process waits for a child: the supervisor and the health checks register the
pids they start with :meth:`Reaper.watch` and are called back with the exit status. Everything
else that dies in our PID namespace (orphans re-parented to us) is reaped and counted. This
avoids the trap of ``subprocess.Popen.wait()`` reporting 0 for a child another waiter already
collected (ECHILD).

All methods run on the asyncio loop thread; spawning happens on the same thread, so a child can
never be reaped before its watcher is registered.
"""

from __future__ import annotations

import os
from collections.abc import Callable

ExitCallback = Callable[[int, int], None]  # (pid, raw wait status)


class Reaper:
    def __init__(self, *, reap_orphans: bool = True) -> None:
        # reap_orphans=False exists only as the negative control of the tests: zombies pile up.
        self.reap_orphans = reap_orphans
        self._watchers: dict[int, ExitCallback] = {}
        self.orphans_reaped = 0
        self.children_reaped = 0

    def watch(self, pid: int, callback: ExitCallback) -> None:
        self._watchers[pid] = callback

    def watching(self) -> int:
        return len(self._watchers)

    def reap(self) -> int:
        """Collect every exited child (``waitpid(-1, WNOHANG)`` until none is left)."""
        if not self.reap_orphans:
            return self._reap_watched_only()
        count = 0
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - all signals are blocked
                continue
            if pid == 0:
                break
            count += 1
            self._dispatch(pid, status)
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
        callback = self._watchers.pop(pid, None)
        if callback is None:
            self.orphans_reaped += 1
            return
        self.children_reaped += 1
        callback(pid, status)


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
