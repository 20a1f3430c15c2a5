"""Boot Debian's kernel under QEMU with a test program as PID 1 (host side).

A small library for test suites that need a kernel our build machines lack (device-mapper,
dm-crypt, module loading, a whole machine's PID 1). The recipe: TCG, the uncompressed
``vmlinux`` booted through PVH with qboot, a busybox initramfs that mounts the host's root
read-only over 9p and ``switch_root``s into the program, and an ``isa-debug-exit`` port through
which the guest reports its exit status.

API (all that other suites need):

``missing() -> str | None``
    Why a guest cannot be booted here (the exact missing piece), or ``None``. Tests skip with it.

``boot(argv, *, disks={}, share=None, memory_mb=256, smbios_uuid=None, timeout=600) -> Guest``
    Boot once and run ``argv`` as PID 1 (use the real interpreter path, e.g. ``sys.executable``).
    ``disks`` maps a serial name to a raw image file (attached as virtio-blk, in order, so the
    first is ``/dev/vda``; the guest finds them with :func:`vmlib.guest.disk`). ``share`` is a
    host directory mounted writable at :data:`GUEST_SHARE` in the guest, for inputs and results.
    ``smbios_uuid`` sets the machine's SMBIOS system UUID. Returns when QEMU exits.

``Guest``
    ``status`` (the guest's exit status, ``None`` when it died without reporting one: a panic,
    a crash of PID 1, a timeout), ``console`` (the serial console's text), ``seconds``
    (wall time), ``ok`` (status == 0).

Guest side: :mod:`vmlib.guest` (``main(fn)``, ``exit(status)``, ``disk(serial)``, ``modprobe``).
The guest sees the host's root read-only (so the repository and the .venv), tmpfs on ``/tmp``,
``/run`` and ``/dev/shm``; put the guest program in the repository or in ``share``, not in the
host's ``/tmp``. Import this package with ``tests/`` on ``sys.path`` (tests/luks/conftest.py
adds it; pytest does so by itself for modules inside tests/vmlib).

Example (what tests/vmlib/test_vmlib.py does)::

    g = vmlib.boot([sys.executable, f"{vmlib.GUEST_SHARE}/prog.py"], share=share,
                   disks={"probe": image}, smbios_uuid=uuid)
    assert g.ok, g.console

The kernel, its extracted ``vmlinux`` and the initramfs are cached under
``$VMLIB_CACHE`` (default ``/var/tmp/vmlib``), keyed by kernel version and init script.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GUEST_SHARE", "Guest", "boot", "missing"]

GUEST_SHARE = "/run/vmlib"
QEMU = "qemu-system-x86_64"
QBOOT = Path("/usr/share/qemu/qboot.rom")
BUSYBOX = Path("/bin/busybox")
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
CMDLINE_LIMIT = 2048


@dataclass
class Guest:
    status: int | None
    console: str
    seconds: float
    command: list[str]

    @property
    def ok(self) -> bool:
        return self.status == 0


def _kernels() -> list[tuple[str, Path]]:
    out = []
    for vmlinuz in sorted(Path("/boot").glob("vmlinuz-*")):
        version = vmlinuz.name.removeprefix("vmlinuz-")
        if Path("/lib/modules", version, "modules.dep").exists():
            out.append((version, vmlinuz))
    return out


def missing() -> str | None:
    """The first missing piece for booting a guest, or ``None`` when everything is there."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (Debian package qemu-system-x86)"
    if not _kernels():
        return "no /boot/vmlinuz-* with modules in /lib/modules (Debian package linux-image-amd64)"
    if not BUSYBOX.exists():
        return f"{BUSYBOX} is missing (Debian package busybox-static)"
    if shutil.which("modprobe") is None and not Path("/sbin/modprobe").exists():
        return "modprobe is missing (Debian package kmod)"
    return None


def _cache_dir() -> Path:
    path = Path(os.environ.get("VMLIB_CACHE", "/var/tmp/vmlib"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _vmlinux(version: str, vmlinuz: Path) -> Path:
    """The ELF kernel inside Debian's xz-compressed bzImage (boots through PVH, no decompressor)."""
    out = _cache_dir() / f"vmlinux-{version}"
    if out.exists() and out.stat().st_mtime >= vmlinuz.stat().st_mtime:
        return out
    blob = vmlinuz.read_bytes()
    start = 0
    while True:
        start = blob.find(b"\xfd7zXZ\x00", start)
        if start < 0:
            raise RuntimeError(f"{vmlinuz}: no xz-compressed kernel inside")
        try:
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob[start:])
        except lzma.LZMAError:
            elf = b""
        if elf.startswith(b"\x7fELF"):
            _atomic_write(out, elf)
            return out
        start += 1


_INIT = r"""#!/bin/busybox sh
# vmlib's init: modules for 9p, the host's root read-only at /newroot, then the test program.
B=/bin/busybox
$B mkdir -p /proc /sys /dev /newroot
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
for m in $($B cat /modules.order); do $B insmod "/$m" || echo "vmlib: insmod $m failed"; done
fail() { echo "vmlib: $*"; $B poweroff -f; }
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose,access=any \
    hostroot /newroot || fail "cannot mount the host root"
$B mount -t proc proc /newroot/proc
$B mount -t sysfs sysfs /newroot/sys
$B mount -t devtmpfs devtmpfs /newroot/dev
$B mkdir -p /newroot/dev/pts /newroot/dev/shm
$B mount -t devpts devpts /newroot/dev/pts
# the host paths the guest program runs from (a checkout or .venv under /tmp or /run) stay
# visible through the fresh tmpfs mounts: a second view of the host root, bound back after them
if [ -n "$vmlib_keep" ]; then
    $B mkdir -p /hostview
    $B mount -o bind /newroot /hostview
fi
$B mount -t tmpfs tmpfs /newroot/dev/shm
$B mount -t tmpfs tmpfs /newroot/run
$B mount -t tmpfs tmpfs /newroot/tmp
for p in $(echo "$vmlib_keep" | $B tr ':' ' '); do
    $B mkdir -p "/newroot$p" && $B mount -o bind,ro "/hostview$p" "/newroot$p" || fail "cannot keep $p"
done
if [ "$vmlib_share" = 1 ]; then
    $B mkdir -p /newroot@SHARE@
    $B mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,access=any \
        vmlibshare /newroot@SHARE@ || fail "cannot mount the share"
fi
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
unset vmlib_share vmlib_keep
exec $B switch_root /newroot "$@"
""".replace("@SHARE@", GUEST_SHARE)


def _modules(version: str, names: Sequence[str]) -> list[str]:
    """The .ko files ``names`` need, in load order (builtins skipped), as modprobe prints them."""
    modprobe = shutil.which("modprobe") or "/sbin/modprobe"
    seen: list[str] = []
    for name in names:
        out = subprocess.run(
            [modprobe, "-S", version, "--show-depends", name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines():
            m = re.match(r"insmod (\S+)", line)
            if m and m.group(1) not in seen:
                seen.append(m.group(1))
    return seen


def _cpio(entries: list[tuple[str, int, bytes, tuple[int, int]]]) -> bytes:
    """A newc cpio archive of (name, mode, data, (rdev major, minor)) entries."""
    out = bytearray()
    for ino, (name, mode, data, (rmaj, rmin)) in enumerate(
        [*entries, ("TRAILER!!!", 0, b"", (0, 0))], start=1
    ):
        raw = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(raw), 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + raw
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def _initramfs(version: str) -> Path:
    modules = _modules(version, BOOT_MODULES)
    key = hashlib.sha256((_INIT + "\n".join(modules)).encode()).hexdigest()[:16]
    out = _cache_dir() / f"initramfs-{version}-{key}.cpio"
    if out.exists():
        return out
    d, f, c = 0o040755, 0o100755, 0o020600
    entries: list[tuple[str, int, bytes, tuple[int, int]]] = [
        ("bin", d, b"", (0, 0)),
        ("dev", d, b"", (0, 0)),
        ("dev/console", c, b"", (5, 1)),
        ("bin/busybox", f, BUSYBOX.read_bytes(), (0, 0)),
        ("init", f, _INIT.encode(), (0, 0)),
    ]
    dirs = {"bin", "dev"}
    order = []
    for ko in modules:
        rel = ko.lstrip("/")
        parts = rel.split("/")
        for i in range(1, len(parts)):
            sub = "/".join(parts[:i])
            if sub not in dirs:
                dirs.add(sub)
                entries.append((sub, d, b"", (0, 0)))
        entries.append((rel, 0o100644, Path(ko).read_bytes(), (0, 0)))
        order.append(rel)
    entries.append(("modules.order", 0o100644, ("\n".join(order) + "\n").encode(), (0, 0)))
    _atomic_write(out, _cpio(entries))
    return out


def _hidden_software_paths() -> list[str]:
    """The checkout and the interpreter's prefix when they live where the guest mounts tmpfs."""
    repo = os.path.realpath(Path(__file__).resolve().parents[2])
    paths = {repo, os.path.realpath(sys.prefix)}
    hidden = sorted(p for p in paths if p.startswith(("/tmp/", "/run/")))
    return [p for p in hidden if not any(p != q and p.startswith(q + "/") for q in hidden)]


def boot(
    argv: Sequence[str],
    *,
    disks: Mapping[str, Path | str] | None = None,
    share: Path | str | None = None,
    memory_mb: int = 256,
    smbios_uuid: str | None = None,
    timeout: float = 600,
    cmdline: str | Sequence[str] = (),
) -> Guest:
    """Boot a guest that runs ``argv`` as PID 1; see the module docstring.

    ``cmdline`` adds kernel parameters, as one string or a list of words (``key=value`` words
    reach PID 1 as environment variables; all of them are in ``/proc/cmdline``).
    """
    reason = missing()
    if reason is not None:
        raise RuntimeError(f"cannot boot a guest: {reason}")
    version, vmlinuz = _kernels()[-1]
    kernel, initrd = _vmlinux(version, vmlinuz), _initramfs(version)
    append = "console=ttyS0 panic=-1 quiet loglevel=3"
    if cmdline:
        append += " " + (cmdline if isinstance(cmdline, str) else " ".join(cmdline))
    if share is not None:
        append += " vmlib_share=1"
    keep = _hidden_software_paths()
    if keep:
        append += " vmlib_keep=" + ":".join(keep)
    append += " -- " + " ".join(argv)
    if len(append) >= CMDLINE_LIMIT or any(not a or any(ch.isspace() for ch in a) for a in argv):
        raise ValueError("argv must be short words without spaces: pass a file for anything else")
    cmd = [
        QEMU,
        "-nodefaults",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-accel",
        "tcg,tb-size=64",
        "-smp",
        "1",
        "-m",
        str(memory_mb),
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        append,
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-virtfs",
        "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
    ]
    if QBOOT.exists():
        cmd += ["-bios", str(QBOOT)]
    if share is not None:
        cmd += [
            "-virtfs",
            f"local,path={share},mount_tag=vmlibshare,security_model=none,multidevs=remap",
        ]
    for i, (serial, image) in enumerate((disks or {}).items()):
        cmd += [
            "-drive",
            f"file={image},format=raw,if=none,id=d{i},cache=unsafe",
            "-device",
            f"virtio-blk-pci,drive=d{i},serial={serial}",
        ]
    if smbios_uuid:
        cmd += ["-uuid", smbios_uuid]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return Guest(
            None,
            out.decode("utf-8", "replace") + "\nvmlib: timeout\n",
            time.monotonic() - started,
            cmd,
        )
    rc = proc.returncode
    # isa-debug-exit: QEMU exits with (status << 1) | 1; 0 means the guest never reported
    status = (rc >> 1) if rc % 2 == 1 else None
    return Guest(status, out.decode("utf-8", "replace"), time.monotonic() - started, cmd)
