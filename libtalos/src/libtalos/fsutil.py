"""Crash-safe file output: temp file in the same directory, fsync, rename.

A reader (or a crash at any instant) sees the old file or the new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from libtalos.errors import OutputExistsError, TalosIOError
from libtalos.inputs import read_input, read_input_bytes

__all__ = [
    "PUBLIC_MODE",
    "SECRET_MODE",
    "atomic_write",
    "atomic_write_many",
    "read_input",
    "read_input_bytes",
    "write_output",
]

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    mode: int = PUBLIC_MODE,
    force: bool = True,
) -> Path:
    """Write ``data`` to ``path`` atomically with permission bits ``mode``.

    With ``force=False`` an existing ``path`` is an :class:`OutputExistsError`. The file is
    created with ``mode`` from the start (no window where a key file is world-readable).
    """
    return atomic_write_many([(path, data, mode)], force=force)[0]


def atomic_write_many(
    files: Sequence[tuple[str | os.PathLike[str], bytes | str, int]], *, force: bool = True
) -> list[Path]:
    """Write several files as one step: all of them or none.

    Every file is first written in full to a temp file beside its target and fsynced; only when
    all are on disk are they renamed into place. A failure before that (a full disk, a read-only
    directory) removes the temp files and leaves every target as it was. Existing targets are
    refused up front without ``force``.
    """
    targets = [Path(p) for p, _, _ in files]
    if not force:
        for target in targets:
            if target.exists():
                raise OutputExistsError(
                    f"{target}: file exists", hint="pass --force to overwrite it"
                )
    staged: list[Path] = []
    try:
        for target, (_, data, mode) in zip(targets, files, strict=True):
            staged.append(_stage(target, data.encode() if isinstance(data, str) else data, mode))
        for tmp, target in zip(staged, targets, strict=True):
            try:
                tmp.replace(target)
            except OSError as exc:
                raise TalosIOError(f"{target}: cannot write: {exc.strerror}") from None
    except BaseException:
        for tmp in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    for directory in {t.parent for t in targets}:
        _fsync_dir(directory)
    return targets


def _stage(target: Path, data: bytes, mode: int) -> Path:
    """Write ``data`` to a fsynced temp file beside ``target``; returns its path."""
    directory = target.parent if str(target.parent) else Path()
    tmp = directory / f".{target.name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise TalosIOError(f"{target}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(mode)  # O_CREAT honours the umask; the caller's mode is what we promise
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise TalosIOError(f"{target}: cannot write: {exc.strerror}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def write_output(name: str, data: str, *, mode: int = PUBLIC_MODE, force: bool = True) -> None:
    """Write text to a file named on the command line (atomically), or to stdout for ``-``."""
    if name == "-":
        sys.stdout.write(data)
        sys.stdout.flush()
        return
    atomic_write(name, data, mode=mode, force=force)
