"""The system disk in metal mode: find its partitions, open and mount STATE and EPHEMERAL.

Partitions are found by their GPT partition name (Talos's labels) in sysfs: each
``/sys/class/block/<name>/uevent`` of a partition carries ``PARTNAME=`` and ``DEVNAME=``. There is
no udev in the node, so the device drivers of the buses that carry disks are loaded here first
(``modprobe`` over the devices' ``modalias``, the way udev's coldplug does), with ``dm_crypt``
and ``xfs`` (docs/talos-facts.md#disk-encryption, #partition-layout).

Mounting a partition follows Talos's mount-time flow: when the config asks for encryption
(``machine.systemDiskEncryption.<state|ephemeral>``), ``talos-luks apply`` formats or opens it
and syncs its key slots, in a child process (libcryptsetup is never loaded into PID 1), and
prints the mapped device; a device with no filesystem is then made xfs (label STATE or
EPHEMERAL); then it is mounted: STATE on ``/system/state``, EPHEMERAL on ``/var``. EPHEMERAL,
the last partition, first grows to the end of a disk that has grown, and its xfs after the mount.

STATE must be opened before the config is read (the persisted config lives in it), so its
encryption config is also kept outside it, in META, as Talos keeps it (its ADV tag 9): here a
small record of ours (not Talos's ADV layout) holding a machine config with only that subtree.
As in Talos, a ``static`` passphrase for STATE is therefore readable from META: use nodeID keys
for STATE.

Installing (the ``install`` step, :mod:`talos_init.install`) lays Talos's partitions on a blank
``machine.install.disk`` (zeroed first with ``machine.install.wipe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from libtalos.errors import TalosError

if TYPE_CHECKING:
    from libtalos.config.v1alpha1 import InstallConfig
    from talos_init.configsource import NodeConfig
    from talos_init.logring import Console
    from talos_init.reaper import Reaper

SYS_BLOCK = Path("/sys/class/block")
SYS_MODULE = Path("/sys/module")  # a directory per module loaded (and some built in)
STATE_MOUNT = Path("/system/state")
EPHEMERAL_MOUNT = Path("/var")
LUKS_MAGIC = b"LUKS\xba\xbe"
MIB = 1 << 20
DEVICE_WAIT = 10.0  # seconds a disk or partition node gets to appear after a driver or sfdisk
GROW_MIN = 4 * MIB  # EPHEMERAL grows when its disk has at least this much more room after it
PIPE_FILL = (
    60_000  # bytes written into a child's stdin pipe before it starts (the pipe holds 64 KiB)
)
CHILD_POLL = 0.05  # seconds between reaps while waiting for a child before the signal loop runs
BUSES = ("pci", "virtio", "scsi", "nvme", "usb")  # where disks hang; their drivers are loaded
MODULES = ("dm_crypt", "xfs")
PBKDFS = ("argon2id", "argon2i", "pbkdf2")
# xfsprogs 5.19+ refuses filesystems under 300 MB except under fstests, which it recognises by
# these variables; Talos's STATE is 100 MiB. They are set for mkfs.xfs only.
XFS_SMALL_ENV = {"TEST_DIR": "/tmp", "TEST_DEV": "talos", "QA_CHECK_FS": "0"}

META_MAGIC = b"talos-init META\n"  # 16 bytes at the start of META, then length, YAML, sha256
META_HEADER = struct.Struct(">16sI")


class DiskError(TalosError):
    """A system-disk step cannot complete (the message names the device and the step)."""


@dataclass(frozen=True)
class Partition:
    name: str  # kernel name, e.g. vda5
    label: str  # GPT partition name, e.g. STATE
    disk: str  # kernel name of the whole disk, e.g. vda
    number: int

    @property
    def device(self) -> str:
        return f"/dev/{self.name}"


def _uevent(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def partitions(sys_block: Path = SYS_BLOCK) -> list[Partition]:
    """Every partition the kernel knows, with its GPT name (``PARTNAME``), in name order."""
    out = []
    for entry in sorted(sys_block.glob("*")):
        if not (entry / "partition").exists():
            continue
        info = _uevent(entry / "uevent")
        parent = entry.resolve().parent.name
        out.append(
            Partition(
                name=info.get("DEVNAME", entry.name),
                label=info.get("PARTNAME", ""),
                disk=parent,
                number=int(info.get("PARTN", "0") or 0),
            )
        )
    return out


def find(label: str, disk: str | None = None, sys_block: Path = SYS_BLOCK) -> Partition | None:
    """The partition named ``label`` (on ``disk`` when given: a kernel name or /dev path)."""
    want = os.path.basename(os.path.realpath(disk)) if disk else None
    for part in partitions(sys_block):
        if part.label == label and (want is None or part.disk == want):
            return part
    return None


def is_luks(device: str) -> bool:
    with open(device, "rb") as fh:
        return fh.read(len(LUKS_MAGIC)) == LUKS_MAGIC


def install_section(config: NodeConfig | None) -> InstallConfig | None:
    """``machine.install`` of the config (``None`` when absent)."""
    return config.model.machine.install if config is not None else None


def install_disk(config: NodeConfig | None) -> str | None:
    """``machine.install.disk`` of the config, or ``None``."""
    install = install_section(config)
    return (install.disk if install is not None else "") or None


def system_partition(label: str, *disks: str | None) -> Partition | None:
    """``label`` on the first of ``disks`` that has it, else on any disk."""
    for disk in disks:
        found = find(label, disk) if disk else None
        if found is not None:
            return found
    return find(label)


def encryption(config: NodeConfig | None, partition: str) -> dict[str, Any] | None:
    """``machine.systemDiskEncryption.<partition>`` of the config, as data, or ``None``."""
    from libtalos.config import schema

    sde = config.model.machine.system_disk_encryption if config is not None else None
    if sde is None:
        return None
    spec = {"STATE": sde.state, "EPHEMERAL": sde.ephemeral}[partition]
    return schema.to_data(spec) if spec is not None else None


def encryption_document(partition: str, spec: dict[str, Any]) -> str:
    """A machine config holding only one partition's encryption subtree: what talos-luks reads.

    The rest of the config (CA keys, tokens) never reaches the child, nor META.
    """
    from libtalos.yamlio import dump

    return dump(
        {
            "version": "v1alpha1",
            "machine": {"type": "join", "systemDiskEncryption": {partition.lower(): spec}},
            "cluster": {},
        }
    )


# -- META: the STATE encryption config, readable before STATE is open -------------------------


def read_meta(device: str) -> str | None:
    """The record kept in META (a machine config with STATE's encryption), or ``None``."""
    try:
        with open(device, "rb") as fh:
            head = fh.read(META_HEADER.size)
            if len(head) < META_HEADER.size:
                return None
            magic, length = META_HEADER.unpack(head)
            if magic != META_MAGIC or length > MIB:
                return None
            payload = fh.read(length)
            digest = fh.read(32)
    except OSError as exc:
        raise DiskError(f"META {device}: cannot read: {exc.strerror}") from None
    if len(payload) != length or hashlib.sha256(payload).digest() != digest:
        return None  # torn or foreign: as if absent
    return payload.decode("utf-8", "replace")


def write_meta(device: str, text: str) -> None:
    payload = text.encode()
    record = META_HEADER.pack(META_MAGIC, len(payload)) + payload
    record += hashlib.sha256(payload).digest()
    try:
        fd = os.open(device, os.O_WRONLY)
        try:
            os.pwrite(fd, record, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DiskError(f"META {device}: cannot write: {exc.strerror}") from None


# -- child processes (through the one reaper; never subprocess in PID 1) ----------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


async def run(
    reaper: Reaper,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 600.0,
) -> Result:
    """Run ``argv`` to its end through the reaper; capture its stdout and stderr.

    ``stdin`` is the child's standard input; without it the child reads ``/dev/null``. Works
    before the signal loop runs: the wait reaps by itself. A tool still running after
    ``timeout`` seconds (generous: mkfs of a large disk, key derivation) is killed and reported.
    """
    from talos_init.reaper import run as run_child

    data = stdin.encode() if stdin is not None else None
    try:
        done = await run_child(
            reaper, argv, timeout=timeout, env=env, stdin=data, reap_every=CHILD_POLL
        )
    except TalosError as exc:  # cannot be executed, or killed at the timeout
        raise DiskError(exc.message) from None
    text = (done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"))
    return Result(done.code, *text)


def tool(name: str) -> str:
    """A program of ours: beside the interpreter (the node's venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name) or name


def disk_size(path: str) -> int:
    """Size in bytes of a block device (or a file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


async def wait_for(path: str | Path, timeout: float = DEVICE_WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# -- the node's side ------------------------------------------------------------------------------


class SystemDisk:
    """STATE and EPHEMERAL of a metal node: found, opened (LUKS through talos-luks), mounted."""

    def __init__(self, console: Console, reaper: Reaper, cmdline: dict[str, str]) -> None:
        self.console = console
        self.reaper = reaper
        self.cmdline = cmdline
        self.mounted: dict[str, Path] = {}
        self.mapped: dict[str, str] = {}  # label -> /dev/mapper/<name> opened at this boot
        self._coldplugged = False
        self.system: str | None = None  # kernel name of the disk STATE was found on

    def log(self, message: str) -> None:
        self.console.log(message)

    async def coldplug(self, sys_module: Path = SYS_MODULE) -> None:
        """Load the drivers of the disks present and dm_crypt and xfs (once)."""
        if self._coldplugged:
            return
        self._coldplugged = True
        aliases = set()
        for bus in BUSES:
            for alias in Path("/sys/bus", bus, "devices").glob("*/modalias"):
                with contextlib.suppress(OSError):
                    aliases.add(alias.read_text().strip())
        # One modprobe for all (each one costs a start and reading its indexes). Most devices
        # have no module for their alias, which modprobe -q counts as a failure: its status
        # says nothing, /sys/module tells whether MODULES were loaded.
        done = await run(self.reaper, ["modprobe", "-q", "-a", *MODULES, *sorted(aliases)])
        self.log(f"loaded the drivers of {len(aliases)} devices, and {', '.join(MODULES)}")
        absent = [m for m in MODULES if not (sys_module / m).is_dir()]
        if absent:  # a kernel with them built in needs no module; mounts will tell
            said = done.err.strip().splitlines()[-1:] or ["no message"]
            self.log(f"modprobe: {', '.join(absent)}: not loaded as a module ({said[0]})")

    async def mount_state(self, config: NodeConfig | None, state_dir: Path) -> Path | None:
        """Open and mount STATE; its mount point, or ``None`` when there is no STATE (yet).

        Without a config (before it is loaded) the encryption config comes from META, and a
        STATE that cannot be opened or has no filesystem yet is left for the boot sequence.
        """
        if "STATE" in self.mounted:
            return self.mounted["STATE"]
        await self.coldplug()
        part = system_partition("STATE", install_disk(config))
        if part is None:
            self.log("no STATE partition: the system disk is not installed")
            return None
        self.system = part.disk
        spec_text: str | None = None
        spec = encryption(config, "STATE")
        meta = find("META", part.disk)
        if spec is not None:
            spec_text = encryption_document("STATE", spec)
        elif meta is not None:
            spec_text = read_meta(meta.device)
            if spec_text is not None:
                self.log(f"STATE encryption config read from META ({meta.device})")
        if spec_text is None and is_luks(part.device):
            if config is None:
                self.log(
                    f"STATE ({part.device}) is encrypted and META does not say how to open"
                    " it: waiting for the machine config"
                )
                return None
            raise DiskError(
                f"STATE ({part.device}) is LUKS2-encrypted but neither the machine"
                " config nor META sets machine.systemDiskEncryption.state"
            )
        target = STATE_MOUNT if STATE_MOUNT.parent.is_dir() else state_dir
        mounted = await self._mount(part, spec_text, target, may_format=config is not None)
        if mounted is None:
            return None
        saved = read_meta(meta.device) if meta is not None and spec is not None else None
        if meta is not None and spec is not None and spec_text and saved != spec_text:
            write_meta(meta.device, spec_text)
            self.log(f"STATE encryption config saved to META ({meta.device})")
        return mounted

    async def mount_ephemeral(self, config: NodeConfig) -> Path | None:
        if "EPHEMERAL" in self.mounted:
            return self.mounted["EPHEMERAL"]
        await self.coldplug()
        part = system_partition("EPHEMERAL", self.system, install_disk(config))
        if part is None:
            self.log("no EPHEMERAL partition: /var stays as it is")
            return None
        spec = encryption(config, "EPHEMERAL")
        text = encryption_document("EPHEMERAL", spec) if spec is not None else None
        if text is None and is_luks(part.device):
            raise DiskError(
                f"EPHEMERAL ({part.device}) is LUKS2-encrypted but the machine config"
                " does not set machine.systemDiskEncryption.ephemeral"
            )
        await self.grow_partition(part)
        mounted = await self._mount(part, text, EPHEMERAL_MOUNT, may_format=True)
        if mounted is not None:
            await self.grow_xfs(part.label, mounted)
        return mounted

    async def grow_partition(self, part: Partition) -> None:
        """EPHEMERAL takes the rest of its disk, also once the disk has grown (a bigger virtual
        disk, a cloned image), as Talos resizes it at mount: when it is the disk's last
        partition and at least GROW_MIN more fits after it, sfdisk moves the backup GPT to the
        disk's end and extends the partition, and partx tells the kernel (the disk is in use:
        STATE is mounted). Before LUKS opens it, so the mapping has the new size."""
        disk = f"/dev/{part.disk}"
        listed = await run(self.reaper, ["sfdisk", "--json", disk])
        try:
            table = json.loads(listed.out)["partitiontable"]
            sector = int(table.get("sectorsize", 512))
            starts = [int(p["start"]) for p in table["partitions"]]
            (mine,) = [p for p in table["partitions"] if p.get("node") == part.device]
            start, sectors = int(mine["start"]), int(mine["size"])
        except (ValueError, KeyError, TypeError):
            self.log(f"{part.label}: cannot read the partition table of {disk}; not grown")
            return
        size = disk_size(disk)
        backup = (1 + -(-128 * 128 // sector)) * sector  # the backup GPT: header and entries
        if start != max(starts) or size - (start + sectors) * sector - backup < GROW_MIN:
            return
        done = await run(
            self.reaper,
            ["sfdisk", "--no-reread", "--quiet", "-N", str(part.number), disk],
            stdin=", +\n",
        )
        if done.code != 0:
            tail = done.err.strip().splitlines()[-1:] or [""]
            raise DiskError(
                f"{part.label}: sfdisk -N {part.number} {disk} exited {done.code}: {tail[0]}"
            )
        told = await run(self.reaper, ["partx", "--update", "--nr", str(part.number), disk])
        if told.code != 0:
            tail = told.err.strip().splitlines()[-1:] or [""]
            raise DiskError(f"{part.label}: partx --update {disk} exited {told.code}: {tail[0]}")
        grown = disk_size(part.device)
        self.log(
            f"{part.label}: grew {part.device} from {sectors * sector // MIB} MiB to"
            f" {grown // MIB} MiB, the rest of {disk}"
        )

    async def grow_xfs(self, label: str, target: Path) -> None:
        """The filesystem fills its (maybe grown) device; xfs_growfs changes nothing otherwise."""
        result = await run(self.reaper, ["xfs_growfs", "-d", str(target)])
        if result.code != 0:
            tail = result.err.strip().splitlines()[-1:] or [""]
            self.log(f"{label}: xfs_growfs {target} exited {result.code}: {tail[0]}")
            return
        for line in result.out.splitlines():
            if line.startswith("data blocks changed"):
                self.log(f"{label}: xfs on {target}: {line}")

    async def _mount(
        self, part: Partition, spec_text: str | None, target: Path, *, may_format: bool
    ) -> Path | None:
        from talos_init import mounts

        device = part.device
        if spec_text is not None:
            device = await self.luks_apply(part, spec_text)
            self.mapped[part.label] = device
        fstype = await self.fs_type(device)
        if fstype is None:
            if not may_format:
                self.log(f"{part.label} ({device}) has no filesystem yet: left for the boot")
                return None
            await self.mkfs_xfs(device, part.label)
        elif fstype != "xfs":
            raise DiskError(
                f"{part.label} ({device}) holds a {fstype} filesystem, not xfs;"
                " refusing to mount or format it"
            )
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            mounts.mount(device, str(target), "xfs", mounts.MS_NOSUID | mounts.MS_NODEV)
        except mounts.MountError as exc:
            raise DiskError(f"{part.label}: {exc.message}") from None
        how = "encrypted, " if spec_text is not None else ""
        self.log(f"{part.label} mounted on {target} ({how}{device})")
        self.mounted[part.label] = target
        return target

    async def unmount(self) -> None:
        """At shutdown, after the services stopped: unmount EPHEMERAL then STATE, close LUKS."""
        from talos_init import mounts

        for label in ("EPHEMERAL", "STATE"):
            target = self.mounted.pop(label, None)
            if target is None:
                continue
            try:
                mounts.umount(str(target))
            except mounts.MountError as exc:
                self.log(f"{label}: {exc.message}; left mounted")
                continue
            self.log(f"{label} unmounted from {target}")
            mapped = self.mapped.pop(label, None)
            if mapped is None:
                continue
            name = os.path.basename(mapped)
            result = await run(self.reaper, [tool("talos-luks"), "close", name])
            if result.code != 0:
                self.log(f"{label}: talos-luks close {name} exited {result.code}")
            else:
                self.log(f"{label}: closed {mapped}")

    def pbkdf_args(self) -> list[str]:
        """``talos.luks.pbkdf=TYPE[:ITERATIONS]`` on the kernel command line (ours, not Talos's):
        the PBKDF of key slots written at this boot, for small machines and tests."""
        value = self.cmdline.get("talos.luks.pbkdf")
        if not value:
            return []
        kind, _, iterations = value.partition(":")
        if kind not in PBKDFS or (iterations and not iterations.isdigit()):
            raise DiskError(
                f"talos.luks.pbkdf={value}: expected one of {', '.join(PBKDFS)},"
                " optionally followed by :ITERATIONS"
            )
        args = ["--pbkdf", kind]
        if iterations:
            args += ["--pbkdf-force-iterations", iterations]
        return args

    async def luks_apply(self, part: Partition, spec_text: str) -> str:
        argv = [
            tool("talos-luks"),
            "apply",
            "--partition",
            part.label,
            "--device",
            part.device,
            *self.pbkdf_args(),
        ]
        result = await run(self.reaper, argv, stdin=spec_text)  # the config, on stdin
        for line in result.err.splitlines():
            self.log(f"talos-luks: {line}")
        if result.code != 0:
            raise DiskError(f"{part.label} ({part.device}): talos-luks apply exited {result.code}")
        mapped = result.out.strip().splitlines()[-1:] or [""]
        if not mapped[0].startswith("/dev/mapper/") or not await wait_for(mapped[0]):
            raise DiskError(f"{part.label}: talos-luks apply printed no mapped device")
        return mapped[0]

    async def fs_type(self, device: str) -> str | None:
        """The filesystem (or other signature) blkid finds on ``device``; ``None`` for none."""
        result = await run(self.reaper, ["blkid", "-p", "-o", "export", device])
        if result.code == 2:  # nothing found
            return None
        if result.code != 0:
            raise DiskError(f"{device}: blkid exited {result.code}")
        tags = dict(line.split("=", 1) for line in result.out.splitlines() if "=" in line)
        found = tags.get("TYPE") or tags.get("PTTYPE")
        if found:
            return found
        # an empty partition still reports its name and its entry (PART_ENTRY_*) in its disk's
        # partition table: that is no signature of its own
        other = [k for k in tags if k != "DEVNAME" and not k.startswith("PART_ENTRY_")]
        return "unknown" if other else None

    async def mkfs_xfs(self, device: str, label: str) -> None:
        env = {**os.environ, **XFS_SMALL_ENV}
        result = await run(self.reaper, ["mkfs.xfs", "-f", "-q", "-L", label, device], env=env)
        if result.code != 0:
            tail = result.err.strip().splitlines()[-1:] or [""]
            raise DiskError(f"{label}: mkfs.xfs {device} exited {result.code}: {tail[0]}")
        self.log(f"{label}: made an xfs filesystem on {device}")
