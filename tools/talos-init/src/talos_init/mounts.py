"""Mounts, namespaces and the reboot syscall (the node's kernel side), through libc with ctypes.

Container mode builds the node's root in its own mount namespace: a tmpfs whose top-level
directories are recursive read-only bind mounts of the host's, with fresh ``/proc``, tmpfs on
``/run``, ``/tmp`` and ``/system``, and the node's two writable places bound over it: STATE at
``/system/state`` and EPHEMERAL at ``/var``. Then ``pivot_root`` makes it ``/`` and the host's root
is detached, so the node cannot write anywhere else.

Metal mode mounts the pseudo filesystems a kernel starts without.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path

from libtalos.errors import TalosError

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
CLONE_NEWNS = 0x00020000
MNT_DETACH = 0x2
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
SYS_PIVOT_ROOT = 155  # x86_64
SYS_MOUNT_SETATTR = 442  # x86_64 (same number on every architecture since 5.12)

LINUX_REBOOT_MAGIC1 = 0xFEE1DEAD
LINUX_REBOOT_MAGIC2 = 672274793
REBOOT_CMD_RESTART = 0x01234567
REBOOT_CMD_POWER_OFF = 0x4321FEDC

# Host top-level entries the node does not see through: it gets its own.
NODE_OWNED = frozenset({"proc", "run", "tmp", "var", "system", "lost+found"})


class MountError(TalosError):
    """A mount, namespace or reboot call failed (the message names the call and the path)."""


# libc by its soname: ctypes.util.find_library would run ``ldconfig -p`` at every start
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise MountError(f"{what}: {os.strerror(err)}")


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str = ""
) -> None:
    rc = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data or None))
    _check(rc, f"mount {fstype or 'bind'} on {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def unshare_mount_namespace() -> None:
    """A private mount namespace for this process (must run while single-threaded)."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def make_readonly(target: str, *, recursive: bool = True) -> None:
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    rc = _libc.syscall(
        SYS_MOUNT_SETATTR, AT_FDCWD, _b(target), flags, ctypes.byref(attr), ctypes.sizeof(attr)
    )
    _check(rc, f"mount_setattr read-only {target}")


def pivot_root(new_root: str) -> None:
    os.chdir(new_root)
    _check(_libc.syscall(SYS_PIVOT_ROOT, b".", b"."), f"pivot_root {new_root}")
    umount(".", MNT_DETACH)  # the old root, stacked under the new one
    os.chdir("/")


def software_paths() -> list[str]:
    """Host directories the node's own software runs from that a node-owned mount would hide.

    talos-init and its services run from the host's files. When those live under ``/tmp``,
    ``/run``, ``/var`` or ``/system`` (a checkout in ``/tmp``, a virtual environment under
    ``/var``), the node's fresh mounts there would hide them; these paths are bound back,
    read-only, at the same place: the interpreter's prefixes, the import path, and for a
    virtual environment the directory holding it (the project it belongs to).
    """
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path}
    if sys.prefix != sys.base_prefix:
        candidates.add(os.path.dirname(sys.prefix.rstrip("/")))
    keep: set[str] = set()
    for path in candidates:
        if not path or not os.path.isabs(path) or not os.path.isdir(path):
            continue
        real = os.path.realpath(path)
        top = real.strip("/").split("/", 1)[0]
        if top in NODE_OWNED and real != "/" + top:
            keep.add(real)
    # a path inside another kept path is already visible
    return sorted(p for p in keep if not any(p != q and p.startswith(q + "/") for q in keep))


def build_node_root(state_dir: Path) -> None:
    """Switch this process (and its future children) to the node's read-only root.

    ``state_dir`` on the host holds ``state/`` (STATE) and ``ephemeral/`` (EPHEMERAL); they are
    created when missing. Must run in a fresh mount namespace while single-threaded.
    """
    state = state_dir / "state"
    ephemeral = state_dir / "ephemeral"
    new_root = state_dir / ".root"
    for d in (state, ephemeral, new_root):
        d.mkdir(mode=0o700, exist_ok=True)
    root = str(new_root)
    unshare_mount_namespace()
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for entry in sorted(os.scandir("/"), key=lambda e: e.name):
        if entry.name in NODE_OWNED:
            continue
        target = os.path.join(root, entry.name)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif entry.is_dir(follow_symlinks=False):
            os.mkdir(target)
            mount(entry.path, target, None, MS_BIND | MS_REC)
            make_readonly(target)
    for name in ("proc", "run", "tmp", "var", "system"):
        os.mkdir(os.path.join(root, name), 0o755)
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("tmpfs", f"{root}/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    mount("tmpfs", f"{root}/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    mount("tmpfs", f"{root}/system", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    os.mkdir(f"{root}/system/state", 0o700)
    mount(str(state), f"{root}/system/state", None, MS_BIND)
    mount(str(ephemeral), f"{root}/var", None, MS_BIND)
    state_real = os.path.realpath(state_dir)
    for path in software_paths():
        inside = state_real.startswith(path + "/") or path.startswith(state_real + "/")
        if inside or state_real == path:
            continue  # never expose the node's own state through a second, read-only door
        target = root + path
        os.makedirs(target, exist_ok=True)
        mount(path, target, None, MS_BIND | MS_REC)
        make_readonly(target)
    make_readonly(root, recursive=False)
    pivot_root(root)


def kernel_cmdline() -> str:
    """The kernel's command line; mounts /proc first when a kernel just started us without it."""
    path = Path("/proc/cmdline")
    if not path.exists():
        Path("/proc").mkdir(exist_ok=True)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    return path.read_text()


def mount_pseudo_filesystems() -> list[str]:
    """Metal mode: /proc, /sys, /dev, /run, cgroup2 (each only when not mounted yet)."""
    mounted = _mounted()
    wanted = [
        ("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""),
        ("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""),
        ("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"),
        ("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"),
        ("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""),
    ]
    done = []
    for source, target, fstype, flags, data in wanted:
        if target in mounted:
            continue
        Path(target).mkdir(parents=True, exist_ok=True)
        mount(source, target, fstype, flags, data)
        mounted = _mounted()
        done.append(target)
    return done


def _mounted() -> set[str]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return set()
    return {line.split()[1] for line in lines if len(line.split()) > 1}


def reboot(power_off: bool = False) -> None:
    """The reboot syscall (metal mode only); returns only if it failed. Sync first."""
    cmd = REBOOT_CMD_POWER_OFF if power_off else REBOOT_CMD_RESTART
    with contextlib.suppress(MountError):
        _check(_libc.syscall(169, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, cmd, None), "reboot")


CLONE_NEWUTS = 0x04000000


def unshare_uts() -> None:
    """A private hostname for the node (must run while single-threaded)."""
    _check(_libc.unshare(CLONE_NEWUTS), "unshare UTS namespace")
