"""Crash-safe file output: temp file in the same directory, fsync, rename.

A reader (or a crash at any instant) sees the old file or the new one, never a partial one.
A target that is a symbolic link is written where it points (the link stays); a target that is
a character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe) is written to as a
stream, never replaced by a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
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

# errors creating a file that are about its directory, not the disk
_DIRECTORY_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR}


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

    Nothing is replaced until every target has been checked and every new file is on disk:

    1. targets are checked: without ``force`` an existing one is an :class:`OutputExistsError`;
       a directory under a target's name is refused;
    2. temp files of the same targets left by writers that no longer run are removed;
    3. each file is written in full to a temp file beside its target and fsynced (a full disk or
       a directory that takes no new files fails here);
    4. each existing target gets a hard link beside it holding its old contents; a target that
       cannot be linked (immutable, append-only) is refused here; on a filesystem without hard
       links the old file is instead moved aside just before its replacement (a brief moment
       without the file);
    5. the temp files are renamed over their targets. Should a rename still fail, the targets
       already replaced get their old contents back (and new ones are removed).

    Any failure raises :class:`TalosIOError` naming the path and leaves every target as it was,
    with no temp file or old-contents link behind; on success the links are removed. Only a
    process killed between two renames can leave some targets replaced; their old contents are
    then in the ``.NAME.PID.*.old`` links until the next write of those targets.
    """
    given = [Path(p) for p, _, _ in files]
    targets = [_followed(target) for target in given]
    for target in targets:
        _check_target(target, force=force)
    streams = [(t, d) for t, (_, d, _) in zip(targets, files, strict=True) if _is_stream(t)]
    regular = [(t, f) for t, f in zip(targets, files, strict=True) if not _is_stream(t)]
    targets = [t for t, _ in regular]
    for target in targets:
        _remove_stale(target)
    staged: list[Path] = []
    backups: list[Path | None] = []
    try:
        for target, (_, data, mode) in regular:
            staged.append(_stage(target, data.encode() if isinstance(data, str) else data, mode))
        for target in targets:
            backups.append(_keep_old(target))
        _commit(targets, staged, backups)
    except BaseException:
        for leftover in [*staged, *(b for b in backups if b is not None)]:
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise
    for backup in backups:
        if backup is not None:
            with contextlib.suppress(OSError):
                backup.unlink()
    for target, data in streams:  # after the files: a stream cannot take its data back
        _write_stream(target, data.encode() if isinstance(data, str) else data)
    for directory in {t.parent for t in targets}:
        _fsync_dir(directory)
    return given


def _followed(target: Path) -> Path:
    """Where a symbolic link points (a dangling one too), so that the link itself stays."""
    if target.is_symlink():
        return Path(os.path.realpath(target))
    return target


def _is_stream(target: Path) -> bool:
    """A character device or a FIFO: written to in place (a rename would replace the node)."""
    try:
        mode = target.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _write_stream(target: Path, data: bytes) -> None:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise TalosIOError(f"{target}: cannot write: {exc.strerror}") from None


def _check_target(target: Path, *, force: bool) -> None:
    """Refuse a target that exists without ``force`` or that a file cannot replace."""
    try:
        st = target.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise TalosIOError(f"{target}: cannot write: {exc.strerror}") from None
    if not force:
        raise OutputExistsError(f"{target}: file exists", hint="pass --force to overwrite it")
    if stat.S_ISDIR(st.st_mode):
        raise TalosIOError(
            f"{target}: cannot write: is a directory", hint="remove it or choose another path"
        )
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise TalosIOError(
            f"{target}: cannot write: not a regular file, a character device or a FIFO",
            hint="choose another path",
        )


def _temp_name(target: Path, suffix: str) -> Path:
    """``.NAME.PID.RANDOM.SUFFIX`` beside ``target``: unique per writer, even per thread."""
    return target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.{suffix}")


def _writer_pid(target_name: str, entry: str) -> int | None:
    """The PID in ``entry`` when it is one of this module's temp files for ``target_name``.

    Recognised: ``.NAME.PID.tmp`` (older writers) and ``.NAME.PID.HEX8.tmp`` / ``.old``. A PID
    has at most 7 digits (``pid_max`` is at most 2**22), so the first form of a longer target
    name (``.NAME.5.12345.tmp`` is ``NAME.5``'s) is never taken for this target's second form.
    """
    prefix = f".{target_name}."
    if not entry.startswith(prefix):
        return None
    middle, dot, suffix = entry[len(prefix) :].rpartition(".")
    if not dot or suffix not in ("tmp", "old"):
        return None
    pid, _, rand = middle.partition(".")
    if rand:
        if len(rand) != 8 or any(c not in "0123456789abcdef" for c in rand):
            return None
    elif suffix != "tmp":
        return None
    if not pid.isascii() or not pid.isdigit() or len(pid) > 7 or int(pid) <= 0:
        return None
    return int(pid)


def _remove_stale(target: Path) -> None:
    """Remove temp files of ``target`` whose writer is no longer running (killed midway).

    They may hold key material. A file whose PID is a live process is left alone: that writer
    may still rename it. Best effort: a directory that cannot be listed is skipped.
    """
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        pid = _writer_pid(target.name, entry.name)
        if pid is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or _running(pid):
                continue
            os.unlink(entry.path)
        except OSError:
            continue


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


_NO_HARD_LINKS = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


def _keep_old(target: Path) -> Path | None:
    """A hard link to ``target``'s old contents beside it; None when it does not exist.

    Returns the backup path. On a filesystem without hard links, the returned path does not
    exist yet: :func:`_commit` moves the target there just before replacing it.
    """
    if not os.path.lexists(target):
        return None
    backup = _temp_name(target, "old")
    try:
        os.link(target, backup, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_HARD_LINKS:
            return backup
        why = exc.strerror or "cannot link it"
        if exc.errno in (errno.EPERM, errno.EACCES):
            why += " (is it immutable or append-only? see lsattr)"
        raise TalosIOError(f"{target}: cannot write: cannot replace it: {why}") from None
    return backup


def _commit(targets: list[Path], staged: list[Path], backups: list[Path | None]) -> None:
    """Rename every temp file over its target; on any failure put back the ones done.

    A backup that could not be put back is named in the error and taken out of ``backups``,
    so that the caller's clean-up keeps it.
    """
    done: list[int] = []
    try:
        for i, (tmp, target, backup) in enumerate(zip(staged, targets, backups, strict=True)):
            try:
                if backup is not None and not os.path.lexists(backup):
                    os.replace(target, backup)  # no hard links here: move the old one aside
                    done.append(i)
                    os.replace(tmp, target)
                else:
                    os.replace(tmp, target)
                    done.append(i)
            except OSError as exc:
                raise TalosIOError(f"{target}: cannot write: {exc.strerror}") from None
    except BaseException as exc:
        lost = _roll_back([(targets[i], backups[i]) for i in reversed(done)])
        for i, backup in enumerate(backups):
            if backup is not None and backup in lost.values():
                backups[i] = None
        if lost and isinstance(exc, TalosIOError):
            kept = "; ".join(f"{t}: its old contents are in {b}" for t, b in lost.items())
            raise TalosIOError(f"{exc.message}; could not restore {kept}") from None
        raise


def _roll_back(replaced: list[tuple[Path, Path | None]]) -> dict[Path, Path]:
    """Put the old contents back; returns target -> backup for those that could not be."""
    lost: dict[Path, Path] = {}
    for target, backup in replaced:
        try:
            if backup is None:
                target.unlink()
            else:
                os.replace(backup, target)
        except OSError:
            if backup is not None:
                lost[target] = backup
    for directory in {t.parent for t, _ in replaced}:
        _fsync_dir(directory)
    return lost


def _stage(target: Path, data: bytes, mode: int) -> Path:
    """Write ``data`` to a fsynced temp file beside ``target``; returns its path."""
    tmp = _temp_name(target, "tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        where = f" (in {target.parent})" if exc.errno in _DIRECTORY_ERRORS else ""
        raise TalosIOError(f"{target}: cannot write: {exc.strerror}{where}") from None
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
