"""One reaper owns every ``wait()`` in PID 1.

Nothing else in the process waits for a child: every child (services, health-check commands,
disk tools, the certificate child) is started through :meth:`Reaper.spawn`, which registers the
pid under the reaper's lock before any wait can see it; the starter is called back (on the
asyncio loop) with the exit status. Everything else that dies in our PID namespace (orphans
re-parented to us) is reaped and counted. This avoids the trap of ``subprocess.Popen.wait()``
reporting 0 for a child another waiter already collected (ECHILD).

:meth:`Reaper.reap` runs in the signal loop's thread as soon as SIGCHLD arrives (as in tini's
loop), so reaping many orphans costs no round trip through the event loop.

:func:`run` runs a short-lived command to its end through the reaper, bounded by a timeout: its
standard input and output are anonymous memory files (``memfd``), so no pipe can fill up and
input (a secret, a config) never touches a disk nor a command line; on a timeout or a
cancellation the child's process group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from libtalos.errors import TalosError
from talos_init.spawn import spawn

ExitCallback = Callable[[int, int], None]  # (pid, raw wait status)
KILL_BOUND = 5.0  # seconds :func:`run` waits for a killed child's exit to be reaped


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
        try:
            name = signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            name = f"signal {os.WTERMSIG(status)}"
        return f"killed by {name}"
    return f"exited with code {os.WEXITSTATUS(status)}"


# -- one command to its end ------------------------------------------------------------------


class ChildTimeoutError(TalosError):
    """A child of :func:`run` did not finish within its timeout; its process group was killed."""

    def __init__(self, what: str, timeout: float) -> None:
        super().__init__(f"{what}: did not finish within {timeout:g}s (killed)")
        self.what = what
        self.timeout = timeout


@dataclass(frozen=True)
class Finished:
    """How a child of :func:`run` ended, and what it wrote (empty without ``capture``)."""

    status: int  # raw wait status
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def code(self) -> int:
        return exit_code(self.status)

    @property
    def ok(self) -> bool:
        return os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0


async def run(
    reaper: Reaper,
    argv: Sequence[str],
    *,
    timeout: float,
    what: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    capture: bool = True,
    reap_every: float | None = None,
    kill_bound: float = KILL_BOUND,
) -> Finished:
    """Run ``argv`` through ``reaper`` and wait at most ``timeout`` seconds for its end.

    ``stdin`` is the child's whole standard input (``/dev/null`` without it). With ``capture``
    its stdout and stderr are kept in memory files and returned; without, they go to
    ``/dev/null``. ``reap_every`` (seconds) makes the wait reap by itself, for use before the
    signal loop runs. On the timeout, or when the caller is cancelled, the child's process group
    (its session: :func:`~talos_init.spawn.spawn` gives it one) gets SIGKILL and the reap is
    awaited at most ``kill_bound`` seconds (a stopping node may no longer be reaping); then
    :class:`ChildTimeoutError` (its message names ``what``, by default ``argv[0]``) or the
    cancellation is raised. :class:`~talos_init.spawn.SpawnError` passes through.
    """
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def exited(_pid: int, status: int) -> None:
        if not done.done():
            done.set_result(status)

    fds: list[int] = []
    try:
        in_fd = _memfd("talos-run-in", stdin, fds) if stdin is not None else None
        if capture:
            out_fd, err_fd = _memfd("talos-run-out", b"", fds), _memfd("talos-run-err", b"", fds)
        else:
            out_fd = err_fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            fds.append(out_fd)
        pid = reaper.spawn(argv, exited, env=env, stdin=in_fd, stdout=out_fd, stderr=err_fd)
        try:
            async with asyncio.timeout(timeout):
                await _reaped(reaper, done, reap_every)
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(kill_bound):
                    await _reaped(reaper, done, reap_every)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ChildTimeoutError(what or argv[0], timeout) from None
        if not capture:
            return Finished(done.result())
        return Finished(done.result(), _contents(out_fd), _contents(err_fd))
    finally:
        for fd in fds:
            os.close(fd)


async def _reaped(reaper: Reaper, done: asyncio.Future[int], reap_every: float | None) -> None:
    # asyncio.wait never cancels ``done``: after a kill it is awaited again.
    while not done.done():
        if reap_every is not None:
            reaper.reap()
        await asyncio.wait((done,), timeout=reap_every)


def _memfd(name: str, data: bytes, fds: list[int]) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    fds.append(fd)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _contents(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)
