"""The initramfs: a small ``/init`` that finds the root squashfs, mounts it and hands the
machine to talos-init.

The archive is what the kernel unpacks into its first root, a RAM filesystem: busybox (static),
the kernel modules needed to find and mount the root, ``/init`` and ``/etc/initramfs.conf``,
which says where the root squashfs is:

- ``ROOT=archive`` (PXE, the installer's bundle): in the initramfs itself, as ``/rootfs.sqsh``;
- ``ROOT=medium`` (the ISO): a file on the boot medium. ``/init`` then also loads the CD, SATA,
  SCSI and USB storage drivers, waits (at most ``MEDIUM_WAIT`` seconds) for a block device
  holding an ISO 9660 volume named ``MEDIUM_VOLID`` with a file ``MEDIUM_PATH`` of
  ``MEDIUM_SIZE`` bytes (the squashfs the initramfs was built for), copies that file into the
  RAM filesystem as ``/rootfs.sqsh`` and unmounts the medium: the node runs from RAM, the CD
  can be ejected and the disk it was written to overwritten by an install. The medium's kernel,
  initramfs and GRUB images for an installed disk are copied too, and kept in the new root's
  ``/run/talos-booted`` (a tmpfs): an install of the booted system writes them, with the root
  squashfs read back from its loop device (talos-init's ``talos_init.bootloader``). That
  initramfs followed by an archive holding ``/rootfs.sqsh`` boots like the PXE one: a
  ``/rootfs.sqsh`` already there is used as it is.

Then, either way, ``/init`` mounts ``/rootfs.sqsh`` read-only (a loop device) at ``/newroot``,
puts tmpfs on its ``/run``, ``/system``, ``/var`` and ``/tmp``, moves ``/dev``, ``/proc`` and
``/sys`` there and ``switch_root``s into talos-init as PID 1. ``switch_root`` empties the
initramfs: busybox and the modules are gone, and the squashfs stays only as the loop device's
open file.

The file is one or two archives back to back, which the kernel reads in turn: an xz-compressed
newc cpio (``xz --check=crc32``, as the kernel's decompressor wants) of everything but the
squashfs, then, for ``ROOT=archive``, an uncompressed newc cpio holding the squashfs, whose
blocks are already compressed (a second compression would cost the build tens of seconds and
the boot its decompression time, for nothing). Both are reproducible: entries sorted by name,
every mtime the build's epoch, owner and group 0, inode numbers in order.
"""

from __future__ import annotations

import io
import lzma
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from talos_image import layout

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

MEDIUM_MODULES = (
    "isofs",
    "sr_mod",
    "ata_piix",
    "usb_storage",
    "uas",
    "xhci_pci",
    "ehci_pci",
    "ohci_pci",
    "uhci_hcd",
)
"""What /init loads besides :data:`BOOT_MODULES` to find a boot medium: ISO 9660, CD drives,
PATA/SATA (PIIX; AHCI is a boot module), USB sticks and their host controllers (all modules in
Debian's kernel, none built in)."""

TALOS_INIT = ("/usr/bin/talos-init", "--mode", "metal", "--state-dir", "/system")
"""PID 1 after the switch (talos-init reads the kernel's command line itself)."""

ROOTFS_NAME = "rootfs.sqsh"
LOAD_ORDER = "lib/modules/load.order"
CONF = "etc/initramfs.conf"

INIT = r"""#!/bin/busybox sh
# The initramfs's init: find the read-only root squashfs (in this archive, or on the boot
# medium, copied to RAM), mount it and switch to talos-init as PID 1. /@CONF@ says where it is.
B=/bin/busybox
fail() {
    echo "initramfs: $*; cannot boot"
    while :; do $B sleep 3600; done
}
$B mount -t proc -o nosuid,nodev,noexec proc /proc
$B mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
$B mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
# The first read of /dev/urandom before the kernel's random pool is ready makes the kernel
# gather timing entropy (seconds under emulation, without a hardware RNG): done in the
# background, it overlaps the waits for devices and the medium instead of delaying talos-init.
$B dd if=/dev/urandom of=/dev/null bs=1 count=1 2>/dev/null &
. /@CONF@
for m in $($B cat /@LOAD_ORDER@); do
    $B insmod "/lib/modules/$m" 2>/dev/null || echo "initramfs: insmod $m failed"
done

# ISO 9660 (ECMA-119): the primary volume descriptor is the 2048-byte sector 16, "CD001" at its
# byte 1 and the volume identifier, space-padded to 32 bytes, at its byte 40.
is_medium() {
    [ "$($B dd if="$1" bs=1 skip=32769 count=5 2>/dev/null)" = CD001 ] &&
        [ "$($B dd if="$1" bs=1 skip=32808 count=32 2>/dev/null)" = "$MEDIUM_VOLID" ]
}

# Copy the squashfs from the medium in $1 to /@ROOTFS@ when $1 is the boot medium.
from_medium() {
    is_medium "$1" || return 1
    $B mount -t iso9660 -o ro,nodev,nosuid "$1" /medium 2>/dev/null || return 1
    f="/medium/$MEDIUM_PATH"
    if [ -f "$f" ] && [ "$($B stat -c %s "$f")" = "$MEDIUM_SIZE" ]; then
        $B cp "$f" /@ROOTFS@ || { $B umount /medium; fail "cannot copy $MEDIUM_PATH from $1"; }
        # what an install of this system writes besides the root (talos-init's bootloader)
        $B mkdir -p /booted/grub
        $B cp /medium/boot/vmlinuz /medium/boot/initramfs.xz /booted/ 2>/dev/null
        $B cp /medium/@GRUB_IMAGES@/* /booted/grub/ 2>/dev/null
        $B umount /medium || fail "cannot unmount $1"
        echo "initramfs: root copied to RAM from $1 ($MEDIUM_SIZE bytes), $1 unmounted"
        return 0
    fi
    $B umount /medium
    return 1
}

if [ "$ROOT" = medium ]; then
    $B mkdir -p /medium
    n=0
    until [ -f /@ROOTFS@ ]; do
        for dev in /dev/sr* /dev/sd* /dev/vd* /dev/nvme* /dev/mmcblk* /dev/xvd*; do
            [ -b "$dev" ] && from_medium "$dev" && break
        done
        [ -f /@ROOTFS@ ] && break
        n=$((n + 1))
        [ $n -le $((MEDIUM_WAIT * 10)) ] ||
            fail "no boot medium (volume $MEDIUM_VOLID with /$MEDIUM_PATH) after $MEDIUM_WAIT s"
        $B sleep 0.1
    done
fi
$B mount -t squashfs -o ro,loop /@ROOTFS@ /newroot || fail "cannot mount /@ROOTFS@"
for d in run system var tmp; do
    [ -d "/newroot/$d" ] || fail "the root has no /$d to mount tmpfs on"
done
$B mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /newroot/run
$B mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /newroot/system
$B mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /newroot/var
$B mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /newroot/tmp
if [ -d /booted ]; then
    $B cp -a /booted "/newroot/@BOOTED@" || echo "initramfs: cannot keep the boot files"
fi
$B mkdir -p -m 1777 /newroot/var/tmp
for d in dev proc sys; do
    $B mount --move "/$d" "/newroot/$d" || fail "cannot move /$d"
done
export PATH=/usr/sbin:/usr/bin
exec $B switch_root /newroot @TALOS_INIT@
"""

MEDIUM_WAIT = 10
"""Seconds /init waits for the boot medium to appear."""

DIR, FILE, EXEC, CHAR = 0o040755, 0o100644, 0o100755, 0o020600


@dataclass(frozen=True)
class Entry:
    """One archive member: its path (no leading ``/``), mode, contents and device numbers."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Medium:
    """Where the root squashfs is when it is not in the initramfs: the file ``path`` (relative
    to the medium's top) of ``size`` bytes on an ISO 9660 volume named ``volume_id``."""

    volume_id: str
    path: str
    size: int
    wait: int = MEDIUM_WAIT

    def __post_init__(self) -> None:
        if not 0 < len(self.volume_id) <= 32 or not self.volume_id.isprintable():
            raise ValueError(f"ISO 9660 volume id {self.volume_id!r}: 1 to 32 printable chars")
        if "'" in self.volume_id or "'" in self.path or self.path.startswith("/"):
            raise ValueError(f"medium path {self.path!r}: relative, without quotes")


def init_script(argv: Sequence[str] = TALOS_INIT) -> str:
    """The ``/init`` shell script, switching to ``argv``."""
    return (
        INIT.replace("@LOAD_ORDER@", LOAD_ORDER)
        .replace("@CONF@", CONF)
        .replace("@ROOTFS@", ROOTFS_NAME)
        .replace("@GRUB_IMAGES@", layout.ISO_GRUB_IMAGES)
        .replace("@BOOTED@", layout.BOOTED_DIR)
        .replace("@TALOS_INIT@", " ".join(argv))
    )


def config(medium: Medium | None) -> str:
    """``/etc/initramfs.conf``: where ``/init`` finds the root squashfs (sourced by the shell)."""
    if medium is None:
        return "ROOT=archive\n"
    return (
        "ROOT=medium\n"
        f"MEDIUM_VOLID='{medium.volume_id.ljust(32)}'\n"
        f"MEDIUM_PATH='{medium.path}'\n"
        f"MEDIUM_SIZE={medium.size}\n"
        f"MEDIUM_WAIT={medium.wait}\n"
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


def head_entries(
    modules_dir: Path, *, busybox: Path = BUSYBOX, medium: Medium | None = None
) -> list[Entry]:
    """Everything of the initramfs but the squashfs: busybox, the modules, /init, its config
    (the root on ``medium``, else in the archive)."""
    names = BOOT_MODULES if medium is None else (*BOOT_MODULES, *MEDIUM_MODULES)
    modules = module_order(modules_dir, names)
    entries = [
        Entry("bin/busybox", EXEC, busybox.read_bytes()),
        Entry("dev", DIR),
        Entry("dev/console", CHAR, rdev=(5, 1)),
        Entry(CONF, FILE, config(medium).encode()),
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
    medium: Medium | None = None,
    booted: Sequence[tuple[str, Path]] = (),
) -> Path:
    """Write the initramfs to ``out``: the compressed head, then the uncompressed archive
    holding ``rootfs`` as ``/rootfs.sqsh`` (``ROOT=archive``); or, with ``medium`` instead of
    ``rootfs``, the head alone (``ROOT=medium``).

    ``booted`` (name, file) are kept under ``/booted`` in a last uncompressed archive, with the
    head itself as ``/booted/initramfs.xz``: what /init keeps for an install of the booted
    system (the PXE initramfs: the kernel and GRUB's images)."""
    if (rootfs is None) == (medium is None):
        raise ValueError("the initramfs needs either the root squashfs or its medium")
    entries = head_entries(modules_dir, busybox=busybox, medium=medium)
    head = xz(newc(entries, mtime=epoch))
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("wb") as f:
        f.write(head + b"\0" * (-len(head) % 4))  # the next archive starts 4-byte aligned
        if rootfs is not None:
            _rootfs_archive(f, rootfs, mtime=epoch)
        if booted:
            kept = [Entry(f"booted/{n}", FILE, path.read_bytes()) for n, path in booted]
            kept.append(Entry("booted/initramfs.xz", FILE, head))
            f.write(newc(_with_parents(kept), mtime=epoch))
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
