"""What every boot medium is made from: the root squashfs, the kernel and the root's modules.

:func:`inputs` finds them in the output and work directories (``talos-image rootfs`` puts
them there) and builds the root first when it is missing or stale: the unpacked root's version
manifest names another commit than the checkout's, or (for a checkout with changes) a file of
the node's software is newer than the squashfs. An explicit squashfs is taken as it is.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from libtalos.errors import TalosError
from talos_image import layout


@dataclass(frozen=True)
class Inputs:
    squashfs: Path
    kernel: Path
    modules_dir: Path
    manifest: Path  # the root's version.json


def _manifest(work: Path) -> Path:
    return layout.root_dir(work) / layout.VERSION_FILE


def _found(out: Path, work: Path, squashfs: Path) -> Inputs | None:
    manifest = _manifest(work)
    kernel = layout.kernel(out)
    if not (squashfs.is_file() and kernel.is_file() and manifest.is_file()):
        return None
    version = json.loads(manifest.read_text()).get("kernel", "")
    modules = layout.modules_dir(layout.root_dir(work), version)
    if not version or not (modules / "modules.dep").is_file():
        return None
    return Inputs(squashfs, kernel, modules, manifest)


def stale(found: Inputs) -> bool:
    """Whether the checkout has changed since the root was built."""
    from talos_image.rootfs import RUNTIME_PROJECTS, checkout, commit_id

    source = checkout()
    built = json.loads(found.manifest.read_text()).get("commit")
    now = commit_id(source)
    if built != now:
        return True
    if not now.endswith("-dirty"):
        return False
    since = found.squashfs.stat().st_mtime
    for project in RUNTIME_PROJECTS:
        for dirpath, _, filenames in os.walk(source / project / "src"):
            for name in filenames:
                if name.endswith(".py") and os.stat(os.path.join(dirpath, name)).st_mtime > since:
                    return True
    return False


def inputs(out: Path, work: Path, *, rootfs: Path | None = None, epoch: int) -> Inputs:
    """The squashfs (``rootfs``, else the output directory's, built when missing or stale),
    the kernel and the modules directory of the root."""
    if rootfs is not None:
        found = _found(out, work, rootfs)
        if found is None:
            raise TalosError(
                f"--rootfs {rootfs}: needs {layout.kernel(out)} and the unpacked root in "
                f"{layout.root_dir(work)} beside it",
                hint="run talos-image rootfs first",
            )
        return found
    found = _found(out, work, layout.rootfs(out))
    if found is None or stale(found):
        from talos_image.rootfs import build

        build(out, work, epoch=epoch)
        found = _found(out, work, layout.rootfs(out))
        if found is None:
            raise TalosError(f"talos-image rootfs left no root in {out} and {work}")
    return found


def copy(src: Path, dst: Path) -> Path:
    """``src`` to ``dst`` unless they are the same file (the kernel already in OUT)."""
    if not (dst.exists() and dst.resolve() == src.resolve()):
        shutil.copyfile(src, dst)
    return dst
