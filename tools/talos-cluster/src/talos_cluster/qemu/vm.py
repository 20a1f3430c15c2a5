"""One node's virtual machine: QEMU's command line, its accelerator, QMP, and its state as its
serial console shows it.

Each VM has a virtio disk (a sparse raw file), a virtio NIC on a tap of the cluster's bridge, its
serial console written to ``console.log`` and a QMP socket for power actions. Its firmware
(SeaBIOS, or OVMF with ``--with-uefi``) boots the disk first: a blank disk is not bootable, so
the first boot falls through to the boot medium (the ISO, or the NIC's iPXE for the kernel and
initramfs); once the node has installed to the disk and rebooted, GRUB on the disk boots it. A
reboot of the guest is a reset inside the same QEMU (no ``-no-reboot``); a guest that powers off
ends QEMU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
API_PORT = 50000
QMP_TIMEOUT = 5.0
KVM_PROBE_TIMEOUT = 20.0  # a stock kernel under working KVM panics (no root) in a second or two
CMDLINE = (
    "init_on_alloc=1 slab_nomerge pti=on panic=0 consoleblank=0 printk.devkmsg=on"
    " earlyprintk=ttyS0 console=tty0 console=ttyS0 talos.platform=metal"
)
"""The kernel command line of Talos's ISO, which the iPXE boot passes too (with the node's
hostname and ``talos.config=``)."""
Boot = Literal["iso", "pxe"]
Accel = Literal["tcg", "kvm"]


@dataclass(frozen=True)
class VmSpec:
    """What one VM is made of (every path absolute)."""

    name: str
    accel: Accel
    cpus: int
    memory_mib: int
    console: Path
    qmp: Path
    disk: Path
    tap: str
    mac: str
    uuid: str
    boot: Boot
    iso: Path | None = None  # boot == "iso"
    uefi_vars: Path | None = None  # --with-uefi: this VM's copy of OVMF's variable store


def smp(cpus: float) -> int:
    """``--cpus`` as a number of virtual CPUs (rounded up, at least one)."""
    return max(1, math.ceil(cpus))


def mac_address(cluster: str, position: int) -> str:
    """The NIC's MAC: QEMU's locally administered prefix 52:54:00, a byte of the cluster name's
    SHA-256, and the node's position (1-based) in two bytes."""
    h = hashlib.sha256(cluster.encode()).digest()[0]
    return f"52:54:00:{h:02x}:{position >> 8 & 0xFF:02x}:{position & 0xFF:02x}"


def node_uuid(cluster: str, node: str) -> str:
    """The VM's SMBIOS UUID: stable for a cluster and node name (``talos.config=…?uuid=``)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"talos-cluster:{cluster}/{node}"))


def argv(spec: VmSpec) -> list[str]:
    """QEMU's command line for ``spec``."""
    cmd = [QEMU, "-name", spec.name, "-nodefaults", "-nographic", "-monitor", "none"]
    if spec.uefi_vars is not None:
        cmd += [
            "-machine",
            "q35",
            "-drive",
            f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,file={spec.uefi_vars}",
        ]
    if spec.accel == "kvm":
        cmd += ["-accel", "kvm", "-cpu", "host"]
    else:
        cmd += ["-accel", "tcg,tb-size=64"]
    cmd += ["-smp", str(spec.cpus), "-m", str(spec.memory_mib), "-uuid", spec.uuid]
    cmd += [
        "-chardev",
        f"file,id=console,path={spec.console},append=on",
        "-serial",
        "chardev:console",
        "-qmp",
        f"unix:{spec.qmp},server=on,wait=off",
        "-drive",
        f"file={spec.disk},format=raw,if=none,id=disk,cache=unsafe,discard=unmap",
        "-device",
        "virtio-blk-pci,drive=disk,bootindex=1",
        "-netdev",
        f"tap,id=net,ifname={spec.tap},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev=net,mac={spec.mac}"
        + (",bootindex=2" if spec.boot == "pxe" else ""),
    ]
    if spec.boot == "iso":
        if spec.iso is None:
            raise ValueError("an ISO boot needs the ISO")
        cmd += [
            "-drive",
            f"file={spec.iso},format=raw,if=none,id=cd,media=cdrom,readonly=on",
            "-device",
            "ide-cd,drive=cd,bootindex=2",
        ]
    # a boot that finds nothing bootable (SeaBIOS) retries after 5 s instead of halting
    cmd += ["-boot", "reboot-timeout=5000"]
    return cmd


def make_disk(path: Path, size_mib: int) -> None:
    """A sparse raw disk of ``size_mib`` MiB (all zero: a blank disk)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size_mib << 20)
    finally:
        os.close(fd)


# -- what the VM is doing -------------------------------------------------------------------

# the markers on the serial console, each after the last kernel banner (the latest boot)
_KERNEL = "Linux version "
_STATES = (
    ("running", "[talos] boot sequence: done"),
    ("rebooting", "[talos] install: done; rebooting"),
    ("rebooting", "[talos] rebooting"),
    ("installing", "[talos] install: partitioning"),
    ("maintenance", "[talos] waiting for a machine config"),
)


def console_state(text: str) -> str:
    """``booting``, ``maintenance``, ``installing``, ``rebooting`` or ``running``, from the
    console of a VM that is running: the marker printed last since its latest kernel banner."""
    boot = text.rfind(_KERNEL)
    since = text[boot:] if boot >= 0 else text
    best, state = -1, "booting"
    for name, marker in _STATES:
        at = since.rfind(marker)
        if at > best:
            best, state = at, name
    return state


def api_open(ip: str, timeout: float = 1.0) -> bool:
    """Whether something accepts a TCP connection on ``ip``:50000 (from this namespace)."""
    try:
        with socket.create_connection((ip, API_PORT), timeout=timeout):
            return True
    except OSError:
        return False


# -- QMP --------------------------------------------------------------------------------------


class QmpError(Exception):
    """QMP did not answer as expected (the VM is then killed)."""


def qmp(path: Path, command: str, timeout: float = QMP_TIMEOUT) -> dict[str, object]:
    """Run one QMP ``command`` on the socket at ``path``; its reply (``return`` or ``error``)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except OSError as exc:
            raise QmpError(f"{path}: {exc.strerror}") from None
        reader = s.makefile("rb")
        with reader:

            def message() -> dict[str, object]:
                while time.monotonic() < deadline:
                    line = reader.readline()
                    if not line:
                        raise QmpError(f"{path}: closed")
                    msg = json.loads(line)
                    if isinstance(msg, dict) and "event" not in msg:
                        return msg
                raise QmpError(f"{path}: no answer within {timeout:g}s")

            try:
                if "QMP" not in message():
                    raise QmpError(f"{path}: no QMP greeting")
                for execute in ("qmp_capabilities", command):
                    s.sendall(json.dumps({"execute": execute}).encode() + b"\n")
                    reply = message()
                    if "error" in reply:
                        raise QmpError(f"{path}: {execute}: {reply['error']}")
            except (OSError, ValueError) as exc:
                raise QmpError(f"{path}: {type(exc).__name__}") from None
            return reply


def quit_vm(path: Path) -> bool:
    """QMP ``quit``: QEMU exits at once; False when QMP did not answer."""
    try:
        qmp(path, "quit")
    except QmpError as exc:
        # quit may close the socket before its reply arrives: that is a success too
        return "closed" in str(exc)
    return True


# -- the accelerator --------------------------------------------------------------------------

_PANIC = re.compile(rb"Kernel panic|VFS: Unable to mount root")


def kvm_works(kernel: Path, timeout: float = KVM_PROBE_TIMEOUT) -> bool:
    """Whether ``/dev/kvm`` runs a stock kernel: booted with KVM and no root, it must reach its
    "no root filesystem" panic within ``timeout`` (some paravirtual KVMs stall it instead)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="talos-kvm-probe-") as tmp:
        serial = Path(tmp) / "serial"
        cmd = [
            QEMU,
            "-nodefaults",
            "-nographic",
            "-monitor",
            "none",
            "-no-reboot",
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-kernel",
            str(kernel),
            "-append",
            "console=ttyS0 panic=-1",
            "-serial",
            f"file:{serial}",
        ]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if serial.exists() and _PANIC.search(serial.read_bytes()):
                    return True
                if proc.poll() is not None:
                    return bool(serial.exists() and _PANIC.search(serial.read_bytes()))
                time.sleep(0.1)
            return False
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def choose_accel(kernel: Path, cache: Path) -> Accel:
    """KVM when it runs a stock kernel (:func:`kvm_works`), else TCG. The answer is kept in
    ``cache`` for this boot of the machine and this kernel, so only the first create waits."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        st = kernel.stat()
    except OSError:
        boot_id, st = "", None
    key = f"{boot_id} {kernel} {st.st_size if st else 0} {st.st_mtime_ns if st else 0}"
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads(cache.read_text())
        if saved.get("key") == key and saved.get("accel") in ("tcg", "kvm"):
            return "kvm" if saved["accel"] == "kvm" else "tcg"
    accel: Accel = "kvm" if kvm_works(kernel) else "tcg"
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "accel": accel}) + "\n")
    return accel
