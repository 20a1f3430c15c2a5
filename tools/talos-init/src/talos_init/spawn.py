"""Start a child with a clean signal state, never through ``subprocess``.

PID 1 blocks almost every signal (see :mod:`talos_init.sigloop`) and ignores a few; a child
started with ``subprocess`` would inherit that mask and could not be stopped with SIGTERM.
``posix_spawn`` resets both in the child: an empty signal mask and every signal back to its
default disposition (Python itself ignores SIGPIPE and SIGXFSZ). Each child gets its own session
(``setsid``), so a whole service can be signalled as a group.

``posix_spawn`` is called through ctypes rather than ``os.posix_spawn``: glibc sets its two
internal real-time signals (32 and 33) to "ignored" in every spawned child unless they are in
the set-to-default set, and ``os.posix_spawn`` cannot put them there (``sigaddset`` refuses
them). Writing the ``sigset_t`` bits ourselves gives children a SigIgn of exactly zero.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Mapping, Sequence

from libtalos.errors import TalosError

EXIT_NOT_EXECUTABLE = 126  # shell convention: found but cannot be executed
EXIT_NOT_FOUND = 127  # shell convention: command not found

# glibc <spawn.h> flags
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08
_SETSID = 0x80
_SIGSET_BYTES = 128  # sizeof(sigset_t) in glibc
_NSIG = 65

# libc by its soname: ctypes.util.find_library would run ``ldconfig -p`` at every start
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class SpawnError(TalosError):
    """The program could not be executed; ``code`` is the shell's 126 or 127."""

    def __init__(self, program: str, err: int) -> None:
        super().__init__(f"{program}: cannot execute: {os.strerror(err)}")
        self.errno = err
        self.code = EXIT_NOT_FOUND if err in (errno.ENOENT, errno.ENOTDIR) else EXIT_NOT_EXECUTABLE


def _sigset(all_signals: bool) -> ctypes.Array[ctypes.c_char]:
    buf = ctypes.create_string_buffer(_SIGSET_BYTES)
    if all_signals:  # signals 1.._NSIG-1 are bits 0.._NSIG-2 of the first words
        value = (1 << (_NSIG - 1)) - 1
        ctypes.memmove(buf, value.to_bytes(8, "little"), 8)
    return buf


def _strings(items: Sequence[str]) -> ctypes.Array[ctypes.c_char_p]:
    arr = (ctypes.c_char_p * (len(items) + 1))()
    for i, item in enumerate(items):
        arr[i] = os.fsencode(item)
    arr[len(items)] = None
    return arr


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    new_session: bool = True,
    stdin: int | None = None,
) -> int:
    """Start ``argv`` (``argv[0]`` looked up in ``PATH`` when it has no slash); return its pid.

    ``stdout``/``stderr`` are file descriptors to install as the child's 1 and 2 (the defaults
    keep ours); stdin is ``/dev/null`` unless ``stdin`` names a descriptor. No other descriptor
    is inherited (Python opens everything close-on-exec).
    """
    if not argv:
        raise SpawnError("<empty command>", errno.ENOENT)
    environment = dict(os.environ if env is None else env)
    actions = ctypes.create_string_buffer(256)  # posix_spawn_file_actions_t (80 bytes in glibc)
    attr = ctypes.create_string_buffer(1024)  # posix_spawnattr_t (336 bytes in glibc)
    _libc.posix_spawn_file_actions_init(actions)
    _libc.posix_spawnattr_init(attr)
    try:
        if stdin is None:
            _libc.posix_spawn_file_actions_addopen(actions, 0, b"/dev/null", os.O_RDONLY, 0)
        else:
            _libc.posix_spawn_file_actions_adddup2(actions, stdin, 0)
        if stdout is not None:
            _libc.posix_spawn_file_actions_adddup2(actions, stdout, 1)
        if stderr is not None:
            _libc.posix_spawn_file_actions_adddup2(actions, stderr, 2)
        flags = _SETSIGDEF | _SETSIGMASK | (_SETSID if new_session else 0)
        _libc.posix_spawnattr_setflags(attr, ctypes.c_short(flags))
        _libc.posix_spawnattr_setsigmask(attr, _sigset(False))
        _libc.posix_spawnattr_setsigdefault(attr, _sigset(True))
        pid = ctypes.c_int(0)
        launcher = _libc.posix_spawn if "/" in argv[0] else _libc.posix_spawnp
        rc = launcher(
            ctypes.byref(pid),
            os.fsencode(argv[0]),
            actions,
            attr,
            _strings(list(argv)),
            _strings([f"{k}={v}" for k, v in environment.items()]),
        )
    finally:
        _libc.posix_spawn_file_actions_destroy(actions)
        _libc.posix_spawnattr_destroy(attr)
    if rc != 0:
        raise SpawnError(argv[0], rc)
    return pid.value
