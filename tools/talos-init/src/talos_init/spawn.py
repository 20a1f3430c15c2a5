"""Start a child with a clean signal state, never through ``subprocess``.

PID 1 blocks almost every signal (see :mod:`talos_init.sigloop`) and ignores a few; a child
started with ``subprocess`` would inherit that mask and could not be stopped with SIGTERM.
``os.posix_spawn`` resets both in the child: ``setsigmask`` empties the mask and ``setsigdef``
puts every signal back to its default disposition (Python itself ignores SIGPIPE and SIGXFSZ).
Each child gets its own session (``setsid``), so a whole service can be signalled as a group.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Mapping, Sequence

from libtalos.errors import TalosError

# Every signal that can have a disposition; SIGKILL and SIGSTOP cannot be changed.
_DEFAULT_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}

EXIT_NOT_EXECUTABLE = 126  # shell convention: found but cannot be executed
EXIT_NOT_FOUND = 127  # shell convention: command not found


class SpawnError(TalosError):
    """The program could not be executed; ``code`` is the shell's 126 or 127."""

    def __init__(self, program: str, err: int) -> None:
        super().__init__(f"{program}: cannot execute: {os.strerror(err)}")
        self.errno = err
        self.code = EXIT_NOT_FOUND if err in (errno.ENOENT, errno.ENOTDIR) else EXIT_NOT_EXECUTABLE


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    new_session: bool = True,
) -> int:
    """Start ``argv`` (``argv[0]`` looked up in ``PATH`` when it has no slash); return its pid.

    ``stdout``/``stderr`` are file descriptors to install as the child's 1 and 2 (the defaults
    keep ours); stdin is always ``/dev/null``. No other descriptor is inherited (Python opens
    everything close-on-exec).
    """
    if not argv:
        raise SpawnError("<empty command>", errno.ENOENT)
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)
    ]
    if stdout is not None:
        actions.append((os.POSIX_SPAWN_DUP2, stdout, 1))
    if stderr is not None:
        actions.append((os.POSIX_SPAWN_DUP2, stderr, 2))
    environment = dict(os.environ if env is None else env)
    launcher = os.posix_spawn if "/" in argv[0] else os.posix_spawnp
    try:
        return launcher(
            argv[0],
            list(argv),
            environment,
            file_actions=actions,
            setsigmask=(),
            setsigdef=_DEFAULT_SIGNALS,
            setsid=new_session,
        )
    except OSError as exc:
        raise SpawnError(argv[0], exc.errno or errno.ENOEXEC) from None
