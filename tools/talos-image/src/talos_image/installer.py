"""The installer bundle: one uncompressed tar of what an install or upgrade writes to disk.

Members, in order: ``vmlinuz``, ``initramfs.xz``, ``rootfs.sqsh``, ``version.json`` (the
root's manifest) and ``SHA256SUMS`` (``sha256sum`` format, one line for each of the others).
The initramfs is the PXE one, which holds the squashfs too: a boot from disk runs from RAM
like the ISO until an initramfs that mounts the squashfs from its partition exists.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from talos_image import layout, pxe, tarball
from talos_image.media import Inputs

BUNDLE = f"installer-{layout.ARCH}.tar"
SUMS = "SHA256SUMS"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(out: Path, inputs: Inputs, *, epoch: int, initrd: Path | None = None) -> Path:
    """Write ``installer-amd64.tar`` to ``out`` (with ``initrd``, else a fresh initramfs)."""
    out.mkdir(parents=True, exist_ok=True)
    initrd = initrd or pxe.build_initramfs(out, inputs, epoch=epoch)
    members = [
        ("vmlinuz", inputs.kernel),
        ("initramfs.xz", initrd),
        ("rootfs.sqsh", inputs.squashfs),
        ("version.json", inputs.manifest),
    ]
    with tempfile.TemporaryDirectory(prefix="talos-installer-") as tmp:
        sums = Path(tmp, SUMS)
        sums.write_text("".join(f"{sha256(path)}  {name}\n" for name, path in members))
        return tarball.write(out / BUNDLE, [*members, (SUMS, sums)], epoch=epoch, compress=False)
