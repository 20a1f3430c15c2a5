"""Removing what a failed ``create`` made: the cluster (from its record), the directories create
made above it, and the talosconfig as it was before the merge."""

from __future__ import annotations

import contextlib
from pathlib import Path

from libtalos.errors import TalosError
from talos_cluster.runstate import CreateRun, Undo, progress

CONSOLE_TAIL = 8  # lines of each node's console shown when a failed create is rolled back


def missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for d in (path, *path.parents):
        if d.exists() or d.is_symlink():
            break
        missing.append(d)
    return missing


def remove_dirs(dirs: list[Path]) -> None:
    """rmdir each directory that is empty, deepest first."""
    for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()


def roll_back(run: CreateRun) -> None:
    """Remove what a failed create made; the cause is reported by the caller."""
    from talos_cluster.commands.destroy import destroy_record

    progress("create failed: removing what was made")
    show_consoles(run)
    try:
        destroy_record(run.record)
    except TalosError as exc:
        progress(f"cleanup incomplete: {exc.message}")
    except Exception as exc:  # noqa: BLE001 - the failure that started the roll-back is raised
        progress(f"cleanup incomplete: internal error ({type(exc).__name__})")
    if run.undo.talosconfig is not None:
        restore_talosconfig(run.undo.talosconfig, run.undo)
    remove_dirs(run.undo.dirs)


def show_consoles(run: CreateRun) -> None:
    """The last lines of each started node's console, before the roll-back removes them."""
    from talos_cluster.status import tail

    for n in run.record.nodes:
        if not n.pid:
            continue
        lines = tail(Path(n.console)).splitlines()[-CONSOLE_TAIL:]
        progress(f"  {n.name} console.log, last lines:")
        for line in lines or ["(empty)"]:
            progress(f"    {line[:300]}")


def restore_talosconfig(path: Path, undo: Undo) -> None:
    """``path`` as it was before create merged into it, when it still holds what create wrote."""
    from libtalos.fsutil import SECRET_MODE, atomic_write

    try:
        now = path.read_bytes()
    except OSError:
        now = None
    if now != undo.written:
        progress(f"{path}: changed since create merged the context into it: left as it is")
        return
    try:
        if undo.before is None:
            path.unlink()
        else:
            atomic_write(path, undo.before, mode=SECRET_MODE)
    except (OSError, TalosError) as exc:
        reason = exc.message if isinstance(exc, TalosError) else exc.strerror
        progress(f"{path}: cannot restore it: {reason}")
        return
    progress(f"{path}: restored as it was before create")
