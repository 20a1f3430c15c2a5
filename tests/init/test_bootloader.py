"""GRUB's files as talos-init writes them, checked with GRUB's own tools, and the slot logic.

- grub.cfg passes ``grub-script-check`` (grub-common), with A and B entries, timeout 3 and the
  extra kernel arguments; a broken script is refused by the same check (the control);
- grubenv is exactly 1024 bytes and ``grub-editenv FILE list`` reads back what was written; a
  block GRUB's tool changed is read back by talos-init;
- boot counting: a slot on trial boots once, then GRUB goes back to the default one;
- the BIOS boot code: the boot sector keeps the disk's partition table and points at the core
  image, whose first sector lists the rest of it;
- the installer bundle: members written to the slot when every sha256 matches SHA256SUMS, the
  slot emptied and the member named when one does not.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from talos_init import bootloader as bl
from talos_init.disks import DiskError

GRUB_BOOT_IMG = Path("/usr/lib/grub/i386-pc/boot.img")


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package grub-common)")
    return path


def test_grub_cfg_passes_grub_script_check_with_both_slots(tmp_path: Path) -> None:
    check = _need("grub-script-check")
    args = bl.kernel_args(["reboot=k", "talos.hostname=n1"])
    cfg = tmp_path / "grub.cfg"
    cfg.write_text(bl.grub_cfg(args))
    done = subprocess.run([check, str(cfg)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    text = cfg.read_text()
    assert "set timeout=3\n" in text
    for slot in ("A", "B"):
        assert f'menuentry "Talos (slot {slot})" --id {slot} {{' in text
        assert f"  linux /{slot}/vmlinuz {args} talos.slot={slot}\n" in text
        assert f"  initrd /{slot}/initramfs.xz\n" in text
    assert args.startswith(bl.CMDLINE) and args.endswith("reboot=k talos.hostname=n1")
    assert "console=ttyS0" in args and "talos.platform=metal" in args

    broken = tmp_path / "broken.cfg"  # the control: the check does refuse a bad script
    broken.write_text(text.replace("\nfi\n", "\n", 1))
    refused = subprocess.run([check, str(broken)], capture_output=True, text=True, check=False)
    assert refused.returncode != 0


def test_extra_kernel_args_that_would_break_the_script_are_refused() -> None:
    for bad in ('a"b', "x=$y", "a\nb"):
        with pytest.raises(DiskError, match="machine.install.extraKernelArgs"):
            bl.grub_cfg(bl.kernel_args([bad]))


def test_grubenv_is_1024_bytes_and_grub_editenv_reads_it(tmp_path: Path) -> None:
    editenv = _need("grub-editenv")
    env = tmp_path / "grubenv"
    bl.write_env(env, bl.installed_env("A"))
    assert env.stat().st_size == 1024
    listed = subprocess.run(
        [editenv, str(env), "list"], capture_output=True, text=True, check=True
    ).stdout
    assert listed.splitlines() == ["default=A", "next=A", "tries=1", "failed="]
    # GRUB's tool changes it; talos-init reads the change
    subprocess.run([editenv, str(env), "set", "tries=0"], check=True)
    assert bl.read_env(env) == {"default": "A", "next": "A", "tries": "0", "failed": ""}
    # written again in place, shorter: still one 1024-byte block, nothing left over
    bl.write_env(env, {"default": "B"})
    assert env.stat().st_size == 1024
    listed = subprocess.run(
        [editenv, str(env), "list"], capture_output=True, text=True, check=True
    ).stdout
    assert listed.splitlines() == ["default=B"]
    with pytest.raises(DiskError, match="not a GRUB environment block"):
        bl.decode_env(b"x" * 1024)
    with pytest.raises(DiskError, match="cannot be stored"):
        bl.encode_env({"next": "a\nb"})


def test_a_slot_on_trial_boots_once_then_grub_goes_back_to_the_default() -> None:
    env = {"default": "A", "next": "B", "tries": "1", "failed": ""}  # an upgrade to B
    slot, env = bl.next_boot(env)
    assert (slot, env["tries"], env["next"]) == ("B", "0", "B")
    slot, env = bl.next_boot(env)  # B never marked itself good
    assert slot == "A" and env["next"] == "" and env["failed"] == "B"
    assert bl.next_boot(env)[0] == "A"  # and stays on A
    assert bl.mark_good(env, "A") is None  # A is the default already: nothing to write

    good = {"default": "A", "next": "B", "tries": "1", "failed": ""}
    slot, good = bl.next_boot(good)
    marked = bl.mark_good(good, slot)
    assert marked == {"default": "B", "next": "", "tries": "", "failed": ""}
    assert bl.next_boot(marked)[0] == "B"

    first = bl.installed_env("A")  # the install's first boot is a trial of A as well
    slot, first = bl.next_boot(first)
    assert slot == "A" and first["tries"] == "0"
    assert bl.mark_good(first, "A") == {"default": "A", "next": "", "tries": "", "failed": ""}
    # a slot chosen by hand from the menu while another waits for its try leaves it waiting
    assert bl.mark_good({"default": "A", "next": "B", "tries": "1"}, "A") is None


def _gpt_disk(path: Path) -> Path:
    from talos_init.install import sfdisk_script

    sfdisk = shutil.which("sfdisk") or pytest.skip("sfdisk is not installed (fdisk)")
    with path.open("wb") as fh:
        fh.truncate(700 << 20)
    subprocess.run([sfdisk, "--quiet", str(path)], input=sfdisk_script(), text=True, check=True)
    return path


def test_bios_boot_code_points_at_the_core_image_and_keeps_the_table(tmp_path: Path) -> None:
    if not GRUB_BOOT_IMG.exists():
        pytest.skip(f"{GRUB_BOOT_IMG} is missing (Debian package grub-pc-bin)")
    disk = _gpt_disk(tmp_path / "disk.img")
    before = disk.read_bytes()[:512]
    boot_img = GRUB_BOOT_IMG.read_bytes()
    core_img = b"\x11" * 512 + bytes(range(256)) * 5  # 1792 bytes: four sectors
    bl.setup_bios(str(disk), 206848, boot_img, core_img)
    with disk.open("rb") as fh:
        mbr = fh.read(512)
        fh.seek(206848 * 512)
        core = fh.read(4 * 512)
    assert mbr[0x1B8:] == before[0x1B8:]  # the protective MBR's table and signature
    assert mbr[:0x03] == boot_img[:0x03] and mbr[0x5A:0x5C] == boot_img[0x5A:0x5C]
    assert struct.unpack_from("<Q", mbr, 0x5C)[0] == 206848
    assert mbr[0x66:0x68] == b"\x90\x90"  # a hard disk: no floppy check
    assert struct.unpack_from("<QHH", core, 500) == (206849, 3, 0x820)
    assert core[:500] == core_img[:500] and core[512:1792] == core_img[512:]
    out = subprocess.run(["sfdisk", "-d", str(disk)], capture_output=True, text=True, check=True)
    assert 'name="BIOS"' in out.stdout and 'name="EPHEMERAL"' in out.stdout  # GPT intact

    with pytest.raises(DiskError, match="no protective MBR"):
        blank = tmp_path / "blank.img"
        blank.write_bytes(b"\0" * (1 << 20))
        bl.setup_bios(str(blank), 10, boot_img, core_img)


def _bundle(members: dict[str, bytes], sums: dict[str, bytes] | None = None) -> bytes:
    listed = sums if sums is not None else members
    text = "".join(f"{hashlib.sha256(v).hexdigest()}  {k}\n" for k, v in listed.items())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in [*members.items(), (bl.SUMS, text.encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


MEMBERS = {
    "vmlinuz": b"kernel" * 1000,
    "initramfs.xz": b"initramfs" * 3000,
    "rootfs.sqsh": b"squash" * 100,
    "version.json": b'{"version": "0.9.3"}\n',
    bl.BOOT_IMG: b"b" * 512,
    bl.CORE_IMG: b"c" * 2048,
    bl.EFI_IMG: b"e" * 4096,
}


def test_unpack_writes_the_slot_when_every_sha256_matches(tmp_path: Path) -> None:
    got = bl.unpack(io.BytesIO(_bundle(MEMBERS)), tmp_path, "A", "bundle")
    assert sorted(p.name for p in (tmp_path / "A").iterdir()) == [
        "initramfs.xz",
        "version.json",
        "vmlinuz",
    ]
    assert (tmp_path / "A" / "vmlinuz").read_bytes() == MEMBERS["vmlinuz"]
    assert got.grub == {k: MEMBERS[k] for k in bl.GRUB_FILES}
    assert got.version == '{"version": "0.9.3"}\n'


def test_unpack_refuses_a_member_whose_sha256_differs(tmp_path: Path) -> None:
    sums = {**MEMBERS, "initramfs.xz": b"something else"}
    with pytest.raises(bl.BundleError, match=r"bundle: sha256 of initramfs.xz does not match"):
        bl.unpack(io.BytesIO(_bundle(MEMBERS, sums)), tmp_path, "A", "bundle")
    assert list((tmp_path / "A").iterdir()) == []  # nothing half-written is left
    missing = {k: v for k, v in MEMBERS.items() if k != bl.CORE_IMG}
    with pytest.raises(bl.BundleError, match="the bundle has no grub/core.img"):
        bl.unpack(io.BytesIO(_bundle(missing)), tmp_path, "A", "bundle")
    with pytest.raises(bl.BundleError, match="cannot read the bundle"):
        bl.unpack(io.BytesIO(b"not a tar" * 100), tmp_path, "A", "bundle")


def test_bundle_source_accepts_urls_and_paths_only() -> None:
    assert bl.bundle_source("http://10.0.0.1/installer-amd64.tar") is not None
    assert bl.bundle_source("/var/installer-amd64.tar") is not None
    assert bl.bundle_source("ghcr.io/talos-systems/installer:v0.9.3") is None
