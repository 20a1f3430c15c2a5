"""GRUB on the system disk: slots A and B on BOOT, boot counting in ``grubenv``.

The layout (docs/talos-facts.md#grub-layout-and-boot-counting):

- BOOT (xfs) holds ``A/`` and ``B/`` (each ``vmlinuz``, ``initramfs.xz``, ``version.json`` and
  the bundle's ``cmdline`` when it has one),
  ``grub/grub.cfg`` (:func:`grub_cfg`) and ``grub/grubenv`` (:func:`encode_env`: GRUB's
  environment block, exactly 1024 bytes);
- the BIOS boot partition holds GRUB's i386-pc core image and the disk's first sector its boot
  sector (:func:`setup_bios`, what ``grub-bios-setup`` does for a GPT disk);
- EFI (vfat) holds GRUB's x86_64-efi image at the removable path ``EFI/BOOT/BOOTX64.EFI``, so no
  NVRAM entry is needed.

Both GRUB images come ready-made in the installer bundle (``grub/boot.img``, ``grub/core.img``,
``grub/BOOTX64.EFI``, made by ``grub-mkimage`` when the image is built, every module they need
built in): the node's root then carries no GRUB tools, whose Debian packages bring debconf and
perl. Each image finds BOOT by its filesystem label and reads ``grub/grub.cfg`` there.

Boot counting (as RAUC and Bottlerocket do): ``grubenv`` holds ``default`` (the good slot),
``next`` (a slot to try) and ``tries`` (attempts left for it). At each boot grub.cfg's script
(:func:`next_boot` is the same logic in Python) boots ``next`` while ``tries`` is above 0,
counting one down first (``save_env``); once no try is left, it clears ``next``, records it in
``failed`` and boots ``default``. The booted system passes ``talos.slot=<slot>`` on its
command line and, when its boot sequence finished, marks itself good (:func:`mark_good`):
``default=<slot>``, ``next`` and ``tries`` empty. An install writes slot A with ``default=A``,
``next=A``, ``tries=1``: its first boot is a try like an upgrade's.

Each slot boots with its own command line: the bundle's ``cmdline`` member (kept in the slot),
else :data:`INSTALLED_CMDLINE`, then ``machine.install.extraKernelArgs``. An installed system
reboots 10 s after a kernel panic (``panic=10``, where the ISO waits with ``panic=0``), so a slot
whose kernel panics, whose root does not mount or whose init exits ends its try by itself.

An upgrade (:func:`upgrade`) writes the other slot and puts it on trial (``next``, ``tries=1``)
with the running slot as ``default``; a rollback (:func:`rollback`) makes the other slot the
default. :class:`BootStatus` is what the node reports of its slots (``talosctl version``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import struct
import tarfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from talos_init.disks import DiskError, find, run, wait_for

if TYPE_CHECKING:
    from talos_init.configsource import NodeConfig
    from talos_init.logring import Console
    from talos_init.reaper import Reaper

SLOTS = ("A", "B")
TIMEOUT = 3  # seconds GRUB's menu waits
TRIES = 1  # attempts a new slot gets before GRUB goes back to the default one
CMDLINE = (
    "init_on_alloc=1 slab_nomerge pti=on panic=0 consoleblank=0 printk.devkmsg=on"
    " earlyprintk=ttyS0 console=tty0 console=ttyS0 talos.platform=metal"
)
"""The ISO's kernel command line (docs/talos-facts.md#kernel-parameters); the installed entries
append ``machine.install.extraKernelArgs`` and ``talos.slot=``."""
SLOT_PARAM = "talos.slot"
PANIC_REBOOT = 10  # seconds an installed system waits after a panic before it reboots
INSTALLED_CMDLINE = CMDLINE.replace("panic=0", f"panic={PANIC_REBOOT}")
"""The command line of a slot whose bundle brings none."""

ENV_SIZE = 1024
ENV_HEADER = b"# GRUB Environment Block\n"
GRUB_DIR = "grub"
GRUB_CFG = "grub.cfg"
GRUBENV = "grubenv"

SLOT_FILES = ("vmlinuz", "initramfs.xz", "version.json", "cmdline")  # members kept in the slot
CMDLINE_FILE = "cmdline"  # optional: the slot's kernel command line
BOOT_IMG = "grub/boot.img"
CORE_IMG = "grub/core.img"
EFI_IMG = "grub/BOOTX64.EFI"
GRUB_FILES = (BOOT_IMG, CORE_IMG, EFI_IMG)
SUMS = "SHA256SUMS"
ROOTFS_NAME = "rootfs.sqsh"  # the root squashfs in an initramfs (talos-image's initramfs)
EFI_PATH = "EFI/BOOT/BOOTX64.EFI"  # the removable-media path of x86_64 UEFI

INSTALL_DIR = Path("/run/talos/install")  # mount points while installing (tmpfs)
BOOTED = Path("/run/talos-booted")  # /init keeps the booted system's boot files here (talos-image)
ROOT_VERSION = Path("/etc/talos-image/version.json")  # the booted root's manifest
BOOT_MOUNT = Path("/run/talos/boot")  # BOOT while marking a slot good, upgrading, rolling back

# the boot sector and the core image's first sector (grub-core/boot/i386/pc/{boot,diskboot}.S)
SECTOR = 512
KERNEL_SECTOR_AT = 0x5C  # boot.img: the sector of core.img, 64-bit LE
DRIVE_CHECK_AT = 0x66  # boot.img: a jump that a hard disk's boot replaces by two NOPs
TABLE_AT = 0x1B8  # boot.img: the disk signature and partition table follow; kept from the disk
BPB = slice(0x03, 0x5A)  # boot.img: a DOS BPB area; kept from the disk, as grub-bios-setup does
BLOCKLIST_AT = SECTOR - 12  # diskboot.img: start (u64), length (u16), segment (u16)
CORE_SEGMENT = 0x820  # where diskboot loads the rest of core.img


class BundleError(DiskError):
    """The installer bundle cannot be read or does not match its SHA256SUMS."""


class SlotWriteError(DiskError):
    """A slot on BOOT cannot be written (full, read-only, an I/O error)."""


# -- grub.cfg and grubenv ---------------------------------------------------------------------


def kernel_args(extra: list[str] | tuple[str, ...] = (), base: str = INSTALLED_CMDLINE) -> str:
    """A slot's command line without ``talos.slot``: ``base`` (the slot's own), then ``extra``."""
    return " ".join([base, *extra]).strip()


def check_args(args: str, what: str = "machine.install.extraKernelArgs") -> str:
    """``args`` when grub.cfg can carry it in an entry; raises DiskError naming ``what``."""
    if "\n" in args or '"' in args or "$" in args or "\\" in args:
        raise DiskError(f"{what}: newlines, quotes, backslashes and $ are not allowed")
    return args


def slot_cmdline(boot: Path, slot: str) -> str:
    """The command line ``boot/<slot>/cmdline`` holds, else :data:`INSTALLED_CMDLINE`."""
    path = boot / slot / CMDLINE_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return INSTALLED_CMDLINE
    except (OSError, UnicodeDecodeError) as exc:
        raise DiskError(f"{path}: cannot read: {exc}") from None
    return check_args(" ".join(text.split()), f"{path}") or INSTALLED_CMDLINE


GRUB_SCRIPT = """\
# GRUB for Talos's slots A and B; boot counting in grubenv (talos-init writes both files)
set timeout={timeout}
set timeout_style=menu
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set default=A
load_env
if [ -n "${{next}}" ]; then
  if [ "${{tries}}" = "3" ]; then
    set tries=2
  elif [ "${{tries}}" = "2" ]; then
    set tries=1
  elif [ "${{tries}}" = "1" ]; then
    set tries=0
  else
    set tries=
  fi
  if [ -n "${{tries}}" ]; then
    set default="${{next}}"
    save_env tries
  else
    set failed="${{next}}"
    set next=
    save_env failed next tries
  fi
fi
"""

GRUB_ENTRY = """\
menuentry "Talos (slot {slot})" --id {slot} {{
  echo "Talos: booting slot {slot}"
  linux /{slot}/vmlinuz {args} {param}={slot}
  initrd /{slot}/initramfs.xz
}}
"""


def grub_cfg(args: str | dict[str, str]) -> str:
    """grub.cfg: the boot-counting script, then one entry for each slot with its command line
    (``args``: one for both, or one for each slot)."""
    each = args if isinstance(args, dict) else dict.fromkeys(SLOTS, args)
    entries = "".join(
        GRUB_ENTRY.format(slot=s, args=check_args(each[s]), param=SLOT_PARAM) for s in SLOTS
    )
    return GRUB_SCRIPT.format(timeout=TIMEOUT) + entries


def encode_env(values: dict[str, str]) -> bytes:
    """GRUB's environment block: the header, ``key=value`` lines, ``#`` up to 1024 bytes."""
    body = bytearray(ENV_HEADER)
    for key, value in values.items():
        if not key or any(c in key for c in "=\n\\#") or any(c in value for c in "\n\\"):
            raise DiskError(f"grubenv: {key!r}={value!r} cannot be stored")
        body += f"{key}={value}\n".encode()
    if len(body) > ENV_SIZE:
        raise DiskError(f"grubenv: {len(body)} bytes do not fit in {ENV_SIZE}")
    return bytes(body) + b"#" * (ENV_SIZE - len(body))


def decode_env(data: bytes) -> dict[str, str]:
    """The variables of an environment block (``DiskError`` when it is not one)."""
    if not data.startswith(ENV_HEADER):
        raise DiskError("grubenv: not a GRUB environment block")
    values = {}
    for line in data[len(ENV_HEADER) :].decode("utf-8", "replace").split("\n"):
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def read_env(path: Path) -> dict[str, str]:
    try:
        return decode_env(path.read_bytes())
    except OSError as exc:
        raise DiskError(f"grubenv {path}: cannot read: {exc.strerror}") from None


def write_env(path: Path, values: dict[str, str]) -> None:
    """Write the block in place (GRUB's ``save_env`` writes the file's own sectors, so the file
    keeps its blocks) and sync it."""
    data = encode_env(values)
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, ENV_SIZE)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DiskError(f"grubenv {path}: cannot write: {exc.strerror}") from None


def installed_env(slot: str) -> dict[str, str]:
    """The environment an install (or an upgrade to ``slot``) leaves: ``slot`` on trial."""
    return {"default": "A", "next": slot, "tries": str(TRIES), "failed": ""}


def next_boot(env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The slot GRUB boots with ``env`` and the environment it saves (grub.cfg's script)."""
    env = dict(env)
    default = env.get("default") or "A"
    upcoming = env.get("next", "")
    if not upcoming:
        return default, env
    tries = {"3": "2", "2": "1", "1": "0"}.get(env.get("tries", ""), "")
    env["tries"] = tries
    if tries:
        return upcoming, env
    env["failed"], env["next"] = upcoming, ""
    return default, env


def mark_good(env: dict[str, str], slot: str) -> dict[str, str] | None:
    """The environment once ``slot`` booted well; ``None`` when nothing changes."""
    if env.get("next") != slot and env.get("default", "A") == slot:
        return None
    if env.get("next") not in ("", None, slot):
        return None  # another slot is waiting for its try: left to it
    return {**env, "default": slot, "next": "", "tries": ""}


# -- the BIOS boot sector and core image --------------------------------------------------------


def setup_bios(disk: str, core_sector: int, boot_img: bytes, core_img: bytes) -> None:
    """Write ``core_img`` at sector ``core_sector`` (the BIOS boot partition) of ``disk`` and
    ``boot_img`` in its first sector, the disk's partition table and BPB area kept.

    ``boot_img``'s kernel sector is patched to ``core_sector``; core.img's first sector (the
    diskboot loader) gets one blocklist entry for the rest of it.
    """
    if len(boot_img) != SECTOR:
        raise DiskError(f"GRUB boot.img is {len(boot_img)} bytes, not {SECTOR}")
    if len(core_img) < SECTOR:
        raise DiskError("GRUB core.img is shorter than one sector")
    sectors = -(-len(core_img) // SECTOR)
    core = bytearray(core_img + b"\0" * (sectors * SECTOR - len(core_img)))
    struct.pack_into("<QHH", core, BLOCKLIST_AT, core_sector + 1, sectors - 1, CORE_SEGMENT)
    try:
        fd = os.open(disk, os.O_RDWR | os.O_CLOEXEC)
        try:
            mbr = os.pread(fd, SECTOR, 0)
            if len(mbr) != SECTOR or mbr[510:] != b"\x55\xaa":
                raise DiskError(f"{disk}: no protective MBR in the first sector")
            boot = bytearray(boot_img)
            boot[BPB] = mbr[BPB]
            struct.pack_into("<Q", boot, KERNEL_SECTOR_AT, core_sector)
            boot[DRIVE_CHECK_AT : DRIVE_CHECK_AT + 2] = b"\x90\x90"
            boot[TABLE_AT:] = mbr[TABLE_AT:]
            os.pwrite(fd, bytes(core), core_sector * SECTOR)
            os.pwrite(fd, bytes(boot), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DiskError(f"{disk}: cannot write GRUB's BIOS boot code: {exc.strerror}") from None


def partition_start(name: str, sys_block: Path = Path("/sys/class/block")) -> tuple[int, int]:
    """The first sector and the size in sectors (512 bytes) of a partition, from sysfs."""
    base = sys_block / name
    try:
        return int((base / "start").read_text()), int((base / "size").read_text())
    except (OSError, ValueError):
        raise DiskError(f"/dev/{name}: cannot read its start and size from sysfs") from None


# -- the installer bundle ---------------------------------------------------------------------


def bundle_source(image: str) -> str | None:
    """``machine.install.image`` as something to read: an http(s)/file URL or an absolute
    path; ``None`` for anything else (a container image reference)."""
    if image.startswith(("http://", "https://", "file://", "/")):
        return image
    return None


@contextlib.contextmanager
def open_bundle(source: str, timeout: float = 120.0) -> Iterator[IO[bytes]]:
    import urllib.error  # here: urllib.request costs PID 1 MiBs
    import urllib.request
    from urllib.parse import urlsplit

    if source.startswith("file://"):
        source = urlsplit(source).path
    if source.startswith("/"):
        try:
            fh = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise BundleError(f"machine.install.image {source}: {exc.strerror}") from None
        with fh:
            yield fh
        return
    try:
        resp = urllib.request.urlopen(source, timeout=timeout)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as exc:
        raise BundleError(f"machine.install.image {source}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise BundleError(f"machine.install.image {source}: cannot fetch: {reason}") from None
    with resp:
        yield resp


def booted_complete(booted: Path = BOOTED) -> bool:
    """The booted system's files are all there: an install can write it (see :func:`booted`)."""
    return all((booted / name).is_file() for name in ("vmlinuz", "initramfs.xz", *GRUB_FILES))


def root_device(mountinfo: str) -> str | None:
    """The device the root (``/``) is mounted from, if it is a squashfs (a loop device)."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 10 or fields[4] != "/" or " - " not in line:
            continue
        fstype, source = line.split(" - ", 1)[1].split()[:2]
        if fstype == "squashfs":
            return source
    return None


def newc_header(name: str, size: int, mode: int = 0o100644, ino: int = 1) -> bytes:
    """A newc cpio header for a regular file ``name`` of ``size`` bytes, padded to 4 bytes."""
    raw = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(raw), 0]
    header = b"070701" + b"".join(b"%08X" % f for f in fields) + raw
    return header + b"\0" * (-len(header) % 4)


def _copy_stream(src: IO[bytes], dst: IO[bytes], limit: int | None = None) -> int:
    done = 0
    while limit is None or done < limit:
        block = src.read(1 << 20 if limit is None else min(1 << 20, limit - done))
        if not block:
            break
        dst.write(block)
        done += len(block)
    return done


def write_booted(boot: Path, slot: str, booted: Path = BOOTED, root: str | None = None) -> Unpacked:
    """Write the system this node booted into ``boot/<slot>``: the kernel, the initramfs it
    booted with (without the root) followed by an archive holding the root squashfs (read back
    from its loop device ``root``), the root's manifest; GRUB's images from ``booted/grub``.
    The ISO's /init and the PXE initramfs keep those files in :data:`BOOTED`."""
    if root is None:
        root = root_device(Path("/proc/self/mountinfo").read_text())
    if root is None:
        raise DiskError("install: the root is not a squashfs: no booted system to install")
    slot_dir = boot / slot
    slot_dir.mkdir(mode=0o755, exist_ok=True)
    clear_slot(boot, slot)
    try:
        shutil.copyfile(booted / "vmlinuz", slot_dir / ".vmlinuz.part")
        with open(slot_dir / ".initramfs.xz.part", "wb") as out:
            with open(booted / "initramfs.xz", "rb") as head:
                size = _copy_stream(head, out)
            out.write(b"\0" * (-size % 4))
            with open(root, "rb") as dev:
                length = dev.seek(0, os.SEEK_END)
                dev.seek(0)
                out.write(newc_header(ROOTFS_NAME, length))
                if _copy_stream(dev, out, length) != length:
                    raise DiskError(f"install: {root}: shorter than its size")
            out.write(b"\0" * (-length % 4))
            out.write(newc_header("TRAILER!!!", 0, mode=0, ino=2))
            out.flush()
            os.fsync(out.fileno())
        if ROOT_VERSION.is_file():
            shutil.copyfile(ROOT_VERSION, slot_dir / ".version.json.part")
        grub = {name: (booted / name).read_bytes() for name in GRUB_FILES}
    except OSError as exc:
        _empty(slot_dir)
        raise SlotWriteError(f"slot {slot}: cannot write the booted system: {exc}") from None
    for name in SLOT_FILES:
        part = slot_dir / f".{name}.part"
        if part.exists():
            part.replace(slot_dir / name)
    _fsync_dir(slot_dir)
    version = slot_dir / "version.json"
    return Unpacked(slot_dir, grub, version.read_text() if version.exists() else "")


@dataclass
class Unpacked:
    slot_dir: Path
    grub: dict[str, bytes]  # GRUB_FILES member -> content
    version: str  # version.json as text ("" when the bundle has none)


def unpack(stream: IO[bytes], boot: Path, slot: str, label: str) -> Unpacked:
    """Write the bundle read from ``stream`` into ``boot/<slot>`` and check every member named
    in its SHA256SUMS; members not kept (``rootfs.sqsh``: the initramfs holds the root) are
    hashed only. Members are written beside the slot's files and replace them only once every
    sum matched: on any mismatch :class:`BundleError` names the member and the slot keeps what
    it held. A slot file the new bundle lacks (``cmdline``) is removed.
    """
    slot_dir = boot / slot
    slot_dir.mkdir(mode=0o755, exist_ok=True)
    digests: dict[str, str] = {}
    grub: dict[str, bytes] = {}
    sums: dict[str, str] | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                name = member.name.removeprefix("./")
                if name == SUMS:
                    sums = _parse_sums(src.read().decode("utf-8", "replace"), label)
                    continue
                digests[name] = _copy(src, slot_dir / f".{name}.part", name, grub)
    except SlotWriteError as exc:
        _empty(slot_dir)
        raise SlotWriteError(f"slot {slot}: {exc.message}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        _empty(slot_dir)
        raise BundleError(f"{label}: cannot read the bundle: {exc}") from None
    problem = _check_sums(sums, digests, grub)
    if problem:
        _empty(slot_dir)
        raise BundleError(f"{label}: {problem}")
    for name in SLOT_FILES:
        part = slot_dir / f".{name}.part"
        if part.exists():
            part.replace(slot_dir / name)
        else:
            (slot_dir / name).unlink(missing_ok=True)
    _fsync_dir(slot_dir)
    version = slot_dir / "version.json"
    return Unpacked(slot_dir, grub, version.read_text() if version.exists() else "")


def _check_sums(
    sums: dict[str, str] | None, digests: dict[str, str], grub: dict[str, bytes]
) -> str | None:
    if sums is None:
        return f"no {SUMS} in the bundle"
    for name in ("vmlinuz", "initramfs.xz", *GRUB_FILES):
        if name not in digests:
            return f"the bundle has no {name}"
    for name, digest in digests.items():
        if sums.get(name) != digest:
            return f"sha256 of {name} does not match {SUMS}"
    missing = sorted(set(sums) - set(digests))
    if missing:
        return f"{SUMS} names {', '.join(missing)}, which the bundle does not hold"
    return None


def _parse_sums(text: str, label: str) -> dict[str, str]:
    sums = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise BundleError(f"{label}: {SUMS}: not in sha256sum format: {line[:80]!r}")
        sums[name.strip()] = digest
    return sums


def _copy(src: IO[bytes], part: Path, name: str, grub: dict[str, bytes]) -> str:
    """Hash one member; write it to ``part`` when the slot keeps it, or into ``grub``."""
    digest = hashlib.sha256()
    try:
        out = open(part, "wb") if name in SLOT_FILES else None  # noqa: SIM115 - closed below
    except OSError as exc:
        raise SlotWriteError(f"cannot write {name}: {exc.strerror}") from None
    try:
        while block := src.read(1 << 20):
            digest.update(block)
            if out is not None:
                try:
                    out.write(block)
                except OSError as exc:
                    raise SlotWriteError(f"cannot write {name}: {exc.strerror}") from None
            if name in GRUB_FILES:
                grub[name] = grub.get(name, b"") + block
        if out is not None:
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise SlotWriteError(f"cannot write {name}: {exc.strerror}") from None
    finally:
        if out is not None:
            with contextlib.suppress(OSError):
                out.close()
    return digest.hexdigest()


def clear_slot(boot: Path, slot: str) -> None:
    """Remove the system ``boot/<slot>`` holds (its files and any partial write)."""
    slot_dir = boot / slot
    if not slot_dir.is_dir():
        return
    for path in slot_dir.iterdir():
        try:
            path.unlink()
        except OSError as exc:
            reason = exc.strerror
            raise SlotWriteError(f"slot {slot}: cannot remove {path.name}: {reason}") from None


def _empty(slot_dir: Path) -> None:
    """Remove the members written so far (``.<name>.part``); the slot's own files stay."""
    for path in slot_dir.glob(".*.part"):
        with contextlib.suppress(OSError):
            path.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_config(boot: Path, extra: list[str] | tuple[str, ...], env: dict[str, str]) -> None:
    """grub.cfg (each slot's command line, then ``extra``) and grubenv on BOOT (mounted at
    ``boot``), synced."""
    grub_dir = boot / GRUB_DIR
    grub_dir.mkdir(mode=0o755, exist_ok=True)
    text = grub_cfg({s: kernel_args(extra, slot_cmdline(boot, s)) for s in SLOTS})
    tmp = grub_dir / f".{GRUB_CFG}.part"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(grub_dir / GRUB_CFG)
    write_env(grub_dir / GRUBENV, env)


# -- on the node ------------------------------------------------------------------------------


async def _mount(reaper: Reaper, device: str, target: Path, fstype: str) -> None:
    from talos_init import mounts

    if fstype == "vfat":  # fat, vfat and their code pages are modules in Debian's kernel
        await run(
            reaper, ["modprobe", "-q", "-a", "vfat", "nls_cp437", "nls_iso8859-1", "nls_utf8"]
        )
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        mounts.mount(device, str(target), fstype, mounts.MS_NOSUID | mounts.MS_NODEV)
    except mounts.MountError as exc:
        raise DiskError(f"install: {exc.message} ({device})") from None


def _umount(target: Path) -> None:
    from talos_init import mounts

    try:
        mounts.umount(str(target))
    except mounts.MountError as exc:
        raise DiskError(f"install: {exc.message}") from None


async def install(console: Console, reaper: Reaper, config: NodeConfig, disk: str) -> bool:
    """Slot A and GRUB on ``disk`` (just partitioned); True when the disk can now boot.

    The slot is the bundle ``machine.install.image`` names (an http(s) URL or a path), else
    the system this node booted from the ISO or over PXE (:func:`write_booted`: the generated
    configs name a container image, which nodes do not pull). Skipped (False, with a message) when
    ``machine.install.bootloader`` is false or there is neither.
    """
    section = config.model.machine.install
    if section is None or not section.bootloader:
        console.log("install: machine.install.bootloader is false: no bootloader installed")
        return False
    source = bundle_source(section.image)
    if source is None and not booted_complete():
        console.log(
            f"install: machine.install.image {section.image!r} is not an http(s) URL or a path"
            f" of an installer bundle, and the booted system's files are not kept ({BOOTED}):"
            " no bootloader installed"
        )
        return False
    parts = {}
    for label in ("EFI", "BIOS", "BOOT"):
        found = find(label, disk)
        if found is None or not await wait_for(found.device):
            raise DiskError(f"install: {disk}: no {label} partition")
        parts[label] = found
    slot = SLOTS[0]
    boot_dir, efi_dir = INSTALL_DIR / "boot", INSTALL_DIR / "efi"
    await _mount(reaper, parts["BOOT"].device, boot_dir, "xfs")
    try:
        if source is None:
            console.log(
                f"install: machine.install.image {section.image!r} is not a bundle: writing"
                f" slot {slot} with the system this node booted"
            )
            unpacked = await asyncio.to_thread(write_booted, boot_dir, slot)
            console.log(f"install: slot {slot} written from the booted system")
        else:
            console.log(f"install: writing slot {slot} from {source}")

            def fetch() -> Unpacked:
                with open_bundle(source) as stream:
                    return unpack(stream, boot_dir, slot, f"machine.install.image {source}")

            unpacked = await asyncio.to_thread(fetch)
            console.log(f"install: slot {slot} written; sha256 of each member matches {SUMS}")
        write_config(boot_dir, section.extra_kernel_args, installed_env(slot))
    finally:
        _umount(boot_dir)
    start, size = partition_start(parts["BIOS"].name)
    core = unpacked.grub[CORE_IMG]
    if len(core) > size * SECTOR:
        raise DiskError(f"install: GRUB core.img ({len(core)} bytes) does not fit in BIOS")
    setup_bios(disk, start, unpacked.grub[BOOT_IMG], core)
    await _mount(reaper, parts["EFI"].device, efi_dir, "vfat")
    try:
        target = efi_dir / EFI_PATH
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(unpacked.grub[EFI_IMG])
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        _umount(efi_dir)
    console.log(
        f"install: GRUB installed on {disk} (BIOS: boot sector and core image in"
        f" {parts['BIOS'].device}; UEFI: {EFI_PATH} on {parts['EFI'].device});"
        f" grubenv: {' '.join(f'{k}={v}' for k, v in installed_env(slot).items())}"
    )
    return True


# -- the slots of a booted system: status, marking good, upgrade, rollback ----------------------


@dataclass(frozen=True)
class BootStatus:
    """What a node booted by our GRUB knows of its slots (the Version call's ``boot``)."""

    slot: str
    other: str
    other_version: str = ""  # the other slot's image version ("" when it holds none)
    rolled_back_from: str = ""  # a slot GRUB tried that did not mark itself good
    trial: bool = False  # this slot is on trial: not marked good yet


def booted_slot(cmdline: dict[str, str]) -> str | None:
    """The slot on ``talos.slot=`` (None when the node was not booted by our GRUB)."""
    slot = cmdline.get(SLOT_PARAM)
    return slot if slot in SLOTS else None


def _installed_slot(cmdline: dict[str, str], what: str) -> str:
    slot = booted_slot(cmdline)
    if slot is None:
        raise DiskError(
            f"{what}: this node was not booted from an installed disk (no {SLOT_PARAM}= on its"
            " kernel command line): install it first"
        )
    return slot


def other_slot(slot: str) -> str:
    return SLOTS[1 - SLOTS.index(slot)]


def slot_version(boot: Path, slot: str) -> str:
    """The image version ``boot/<slot>/version.json`` names, as a tag (``v0.9.3``); ""."""
    import json

    try:
        version = str(json.loads((boot / slot / "version.json").read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return version if version.startswith("v") else f"v{version}"


def status_of(env: dict[str, str], slot: str, boot: Path) -> BootStatus:
    other = other_slot(slot)
    failed = env.get("failed", "")
    return BootStatus(
        slot=slot,
        other=other,
        other_version=slot_version(boot, other),
        rolled_back_from=failed if failed in SLOTS and failed != slot else "",
        trial=env.get("next") == slot,
    )


def upgraded_env(env: dict[str, str], slot: str, target: str) -> dict[str, str]:
    """The environment that puts ``target`` on trial from a system running ``slot``: the
    default stays the good slot (``slot``, or the default while ``slot`` is itself on trial)."""
    good = (env.get("default") or slot) if env.get("next") == slot else slot
    return {"default": good, "next": target, "tries": str(TRIES), "failed": ""}


_boot_lock: asyncio.Lock | None = None


@contextlib.asynccontextmanager
async def boot_mounted(reaper: Reaper) -> AsyncIterator[Path]:
    """BOOT mounted at :data:`BOOT_MOUNT` (one user at a time), unmounted after."""
    global _boot_lock  # noqa: PLW0603 - one lock for the process, made on its loop
    if _boot_lock is None:
        _boot_lock = asyncio.Lock()
    part = find("BOOT")
    if part is None:
        raise DiskError("no BOOT partition: this node was not installed to a disk")
    async with _boot_lock:
        await _mount(reaper, part.device, BOOT_MOUNT, "xfs")
        try:
            yield BOOT_MOUNT
        finally:
            _umount(BOOT_MOUNT)


def _env_text(env: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in env.items())


async def mark_booted_good(
    console: Console, reaper: Reaper, cmdline: dict[str, str], *, mark: bool = True
) -> BootStatus | None:
    """The booted slot's status; with ``mark``, a slot on trial first becomes the default
    (after a finished boot sequence). ``None`` when the node was not booted by our GRUB."""
    slot = cmdline.get(SLOT_PARAM)
    if slot is None:
        return None  # not booted by our GRUB
    if slot not in SLOTS:
        console.log(f"bootloader: {SLOT_PARAM}={slot}: expected A or B; nothing marked")
        return None
    async with boot_mounted(reaper) as boot:
        path = boot / GRUB_DIR / GRUBENV
        env = read_env(path)
        if not mark:
            console.log(f"bootloader: booted slot {slot}; grubenv: {_env_text(env)}")
            status = status_of(env, slot, boot)
            if status.rolled_back_from:
                console.log(
                    f"bootloader: slot {status.rolled_back_from} failed to boot (its try ended"
                    f" before it was marked good); rolled back to {slot}"
                )
            return status
        new = mark_good(env, slot)
        if new is not None:
            write_env(path, new)
            console.log(f"bootloader: slot {slot} marked good; grubenv: {_env_text(new)}")
            env = new
        return status_of(env, slot, boot)


async def upgrade(
    console: Console,
    reaper: Reaper,
    cmdline: dict[str, str],
    source: Callable[[], contextlib.AbstractContextManager[IO[bytes]]],
    label: str,
    extra: list[str] | tuple[str, ...],
    *,
    force: bool = False,
) -> tuple[str, str]:
    """Write the bundle ``source()`` reads into the slot not running and put it on trial for
    the next boot only; the running slot stays the default. Returns the slot and its version.

    Refused (DiskError) on a node not booted from its disk, and while the running slot is on
    trial itself (not marked good yet) unless ``force``. The slot written is emptied first:
    after a refused bundle it holds nothing, and the running slot stays the default.
    """
    slot = _installed_slot(cmdline, "upgrade")
    target = other_slot(slot)
    async with boot_mounted(reaper) as boot:
        path = boot / GRUB_DIR / GRUBENV
        env = read_env(path)
        if env.get("next") == slot and not force:
            raise DiskError(
                f"upgrade: slot {slot} is on trial (its boot has not been marked good yet):"
                " wait for it, or use --force"
            )
        # BOOT holds two systems, not three: the slot written is emptied first (the running
        # slot, the default, is not touched)
        clear_slot(boot, target)
        console.log(f"upgrade: writing slot {target} from {label}")

        def fetch() -> Unpacked:
            with source() as stream:
                return unpack(stream, boot, target, label)

        await asyncio.to_thread(fetch)
        new = upgraded_env(env, slot, target)
        write_config(boot, extra, new)
        version = slot_version(boot, target)
    console.log(
        f"upgrade: slot {target} written ({version or 'no version.json'}); sha256 of each"
        f" member matches {SUMS}; grubenv: {_env_text(new)}"
    )
    return target, version


async def rollback(console: Console, reaper: Reaper, cmdline: dict[str, str]) -> str:
    """Make the slot not running the default (the next boot runs it); returns that slot.

    Refused (DiskError) on a node not booted from its disk, or when that slot holds no system.
    """
    slot = _installed_slot(cmdline, "rollback")
    target = other_slot(slot)
    async with boot_mounted(reaper) as boot:
        if not all((boot / target / name).is_file() for name in ("vmlinuz", "initramfs.xz")):
            raise DiskError(f"rollback: slot {target} holds no system: nothing to roll back to")
        new = {"default": target, "next": "", "tries": "", "failed": ""}
        write_env(boot / GRUB_DIR / GRUBENV, new)
        version = slot_version(boot, target)
    console.log(
        f"rollback: slot {target} ({version or 'no version.json'}) is the default now;"
        f" grubenv: {_env_text(new)}"
    )
    return target
