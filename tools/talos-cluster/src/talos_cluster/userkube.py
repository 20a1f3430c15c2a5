"""The user's kubeconfig: where ``cluster create`` merges the new cluster's admin kubeconfig.

As talosctl does: ``$KUBECONFIG`` (its first entry when it lists several), else
``~/.kube/config``. Entries are merged by name with talos-apply's merger (the one behind
``talosctl kubeconfig``): a clash is renamed ``NAME-1`` … and reported, never overwritten, and
the new context becomes the current one. The file is written atomically, 0600 (it holds the
admin key), its directory created 0700.

``cluster destroy`` leaves the merged entries in place, as Talos does (its destroy removes the
cluster's containers, network and state only); ``kubectl config delete-context`` removes them.
"""

from __future__ import annotations

import os
from pathlib import Path

from libtalos.errors import TalosError, TalosIOError


def default_path() -> Path:
    """``$KUBECONFIG``'s first entry, else ``~/.kube/config``."""
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return Path(listed[0]).expanduser()
    return Path(os.path.expanduser("~")) / ".kube" / "config"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise TalosError(f"{path}: not a kubeconfig (not UTF-8 text)") from None
    except OSError as exc:
        raise TalosIOError(f"{path}: cannot read: {exc.strerror}") from None


def check(path: Path) -> None:
    """Refuse, before anything is created, a kubeconfig the merge would fail on."""
    from talos_apply import kubemerge

    if path.is_dir():
        raise TalosError(f"{path}: is a directory, not a kubeconfig")
    text = _read(path)
    if text is not None:
        kubemerge.parse(text, str(path))


def merge(path: Path, admin: bytes | str) -> tuple[str, list[str]]:
    """Merge ``admin`` into ``path``; returns the current context and the renames made."""
    from libtalos import yamlio
    from libtalos.fsutil import SECRET_MODE, atomic_write
    from talos_apply import kubemerge

    new = kubemerge.parse(admin if isinstance(admin, str) else admin.decode(), "admin kubeconfig")
    text = _read(path)
    existing = kubemerge.parse(text, str(path)) if text is not None else {}
    notes = kubemerge.merge(existing, new, force=False)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise TalosIOError(f"{path.parent}: cannot create: {exc.strerror}") from None
    atomic_write(path, yamlio.dump(existing), mode=SECRET_MODE)
    return str(existing.get("current-context", "")), notes
