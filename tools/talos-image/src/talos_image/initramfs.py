"""The initramfs: a small ``/init`` that mounts the root squashfs and hands the machine to
talos-init.

The archive is what the kernel unpacks into its first root: busybox (static), the kernel
modules needed to find and mount the root, ``/init``, and the root squashfs itself as
``/rootfs.sqsh`` (the ISO and PXE boots run from RAM). ``/init`` loads the modules, mounts the
squashfs read-only at ``/newroot``, puts tmpfs on its ``/run``, ``/system``, ``/var`` and
``/tmp``, moves ``/dev``, ``/proc`` and ``/sys`` there and ``switch_root``s into talos-init as
PID 1. ``switch_root`` empties the initramfs: busybox and the modules are gone, and the
squashfs stays only as the loop device's open file.

The file is two archives back to back, which the kernel reads in turn: an xz-compressed newc
cpio (``xz --check=crc32``, as the kernel's decompressor wants) of everything but the
squashfs, then an uncompressed newc cpio holding the squashfs, whose blocks are already
compressed (a second compression would cost the build tens of seconds and the boot its
decompression time, for nothing). Both are reproducible: entries sorted by name, every mtime
the build's epoch, owner and group 0, inode numbers in order.
"""

from __future__ import annotations

import io
import lzma
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
"""Debian's busybox-static: the initramfs's only program."""

BOOT_MODULES = (
    "loop",
    "squashfs",
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "ahci",
    "nvme",
    "sd_mod",
)
"""What /init loads: the root squashfs on a loop device, and the disk drivers a later boot from
an installed disk needs (talos-init loads every other driver itself)."""

TALOS_INIT = ("/usr/bin/talos-init", "--mode", "metal", "--state-dir", "/system")
"""PID 1 after the switch (talos-init reads the kernel's command line itself)."""

ROOTFS_NAME = "rootfs.sqsh"
LOAD_ORDER = "lib/modules/load.order"

INIT = r"""#!/bin/busybox sh
# The initramfs's init: mount the read-only root squashfs and switch to talos-init as PID 1.
B=/bin/busybox
fail() {
    echo "initramfs: $*; cannot boot"
    while :; do $B sleep 3600; done
}
$B mount -t proc -o nosuid,nodev,noexec proc /proc
$B mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
$B mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
for m in $($B cat /@LOAD_ORDER@); do
    $B insmod "/lib/modules/$m" 2>/dev/null || echo "initramfs: insmod $m failed"
done
$B mount -t squashfs -o ro,loop /@ROOTFS@ /newroot || fail "cannot mount /@ROOTFS@"
for d in run system var tmp; do
    [ -d "/newroot/$d" ] || fail "the root has no /$d to mount tmpfs on"
done
$B mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /newroot/run
$B mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /newroot/system
$B mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /newroot/var
$B mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /newroot/tmp
$B mkdir -p -m 1777 /newroot/var/tmp
for d in dev proc sys; do
    $B mount --move "/$d" "/newroot/$d" || fail "cannot move /$d"
done
export PATH=/usr/sbin:/usr/bin
exec $B switch_root /newroot @TALOS_INIT@
"""

DIR, FILE, EXEC, CHAR = 0o040755, 0o100644, 0o100755, 0o020600


@dataclass(frozen=True)
class Entry:
    """One archive member: its path (no leading ``/``), mode, contents and device numbers."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def init_script(argv: Sequence[str] = TALOS_INIT) -> str:
    """The ``/init`` shell script, switching to ``argv``."""
    return (
        INIT.replace("@LOAD_ORDER@", LOAD_ORDER)
        .replace("@ROOTFS@", ROOTFS_NAME)
        .replace("@TALOS_INIT@", " ".join(argv))
    )


def _module_name(path: str) -> str:
    return Path(path).name.removesuffix(".ko").replace("-", "_")


def module_order(modules_dir: Path, names: Iterable[str]) -> list[str]:
    """The ``.ko`` files (paths relative to ``modules_dir``) that load ``names``, each after its
    dependencies, as ``modules.dep`` says; names built into the kernel are skipped, names the
    kernel has neither built in nor as a module raise ``LookupError``."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        module, _, rest = line.partition(":")
        deps[module] = rest.split()
        by_name[_module_name(module)] = module
    builtin_file = modules_dir / "modules.builtin"
    builtin = set()
    if builtin_file.exists():
        builtin = {_module_name(m) for m in builtin_file.read_text().split()}
    order: list[str] = []

    def visit(module: str) -> None:
        if module in order:
            return
        for dep in reversed(deps.get(module, [])):  # modules.dep lists the deepest last
            visit(dep)
        order.append(module)

    for name in names:
        key = name.replace("-", "_")
        if key in by_name:
            visit(by_name[key])
        elif key not in builtin:
            raise LookupError(f"kernel module {name}: not in {modules_dir}")
    return order


def newc(entries: Iterable[Entry], *, mtime: int) -> bytes:
    """A newc cpio archive of ``entries`` (in the order given), with its trailer."""
    out = bytearray()
    for ino, entry in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        out += _header(ino, entry, len(entry.data), mtime)
        out += b"\0" * (-len(out) % 4)
        out += entry.data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def _header(ino: int, entry: Entry, size: int, mtime: int) -> bytes:
    raw = entry.name.encode() + b"\0"
    nlink = 2 if entry.mode & 0o170000 == 0o040000 else 1
    rmaj, rmin = entry.rdev
    fields = [ino, entry.mode, 0, 0, nlink, mtime, size, 0, 0, rmaj, rmin, len(raw), 0]
    return b"070701" + b"".join(b"%08X" % f for f in fields) + raw


def _with_parents(entries: list[Entry]) -> list[Entry]:
    """``entries`` with every parent directory added, sorted by name."""
    names = {e.name for e in entries}
    extra = []
    for entry in entries:
        parts = entry.name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in names:
                names.add(parent)
                extra.append(Entry(parent, DIR))
    return sorted([*entries, *extra], key=lambda e: e.name)


def head_entries(modules_dir: Path, *, busybox: Path = BUSYBOX) -> list[Entry]:
    """Everything of the initramfs but the squashfs: busybox, the modules, /init."""
    modules = module_order(modules_dir, BOOT_MODULES)
    entries = [
        Entry("bin/busybox", EXEC, busybox.read_bytes()),
        Entry("dev", DIR),
        Entry("dev/console", CHAR, rdev=(5, 1)),
        Entry("init", EXEC, init_script().encode()),
        Entry("newroot", DIR),
        Entry("proc", DIR),
        Entry("sys", DIR),
        Entry(LOAD_ORDER, FILE, "".join(f"{m}\n" for m in modules).encode()),
    ]
    entries += [Entry(f"lib/modules/{m}", FILE, (modules_dir / m).read_bytes()) for m in modules]
    return _with_parents(entries)


def xz(data: bytes) -> bytes:
    """``data`` as the kernel's xz decoder reads it: CRC32 check, LZMA2 only, 8 MiB dictionary."""
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 8 << 20}]
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters)


def build(
    out: Path,
    modules_dir: Path,
    rootfs: Path | None,
    *,
    epoch: int,
    busybox: Path = BUSYBOX,
) -> Path:
    """Write the initramfs to ``out``: the compressed head, then (with ``rootfs``) the
    uncompressed archive holding the root squashfs as ``/rootfs.sqsh``."""
    head = xz(newc(head_entries(modules_dir, busybox=busybox), mtime=epoch))
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("wb") as f:
        f.write(head + b"\0" * (-len(head) % 4))  # the next archive starts 4-byte aligned
        if rootfs is not None:
            _rootfs_archive(f, rootfs, mtime=epoch)
    tmp.replace(out)
    return out


def _rootfs_archive(f: io.BufferedIOBase, rootfs: Path, *, mtime: int) -> None:
    """An uncompressed newc archive of one file, ``/rootfs.sqsh``, streamed from ``rootfs``."""
    size = rootfs.stat().st_size
    header = _header(1, Entry(ROOTFS_NAME, FILE), size, mtime)
    f.write(header + b"\0" * (-len(header) % 4))
    with rootfs.open("rb") as src:
        shutil.copyfileobj(src, f, 1 << 20)
    f.write(b"\0" * (-size % 4))
    trailer = _header(2, Entry("TRAILER!!!", 0), 0, mtime)
    f.write(trailer + b"\0" * (-len(trailer) % 4))
