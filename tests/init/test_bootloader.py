"""GRUB's files as talos-init writes them, checked with GRUB's own tools, and the slot logic.

- grub.cfg passes ``grub-script-check`` (grub-common), with A and B entries, timeout 3 and the
  extra kernel arguments; a broken script is refused by the same check (the control);
- grubenv is exactly 1024 bytes and ``grub-editenv FILE list`` reads back what was written; a
  block GRUB's tool changed is read back by talos-init;
- boot counting: a slot on trial boots once, then GRUB goes back to the default one;
- the BIOS boot code: the boot sector keeps the disk's partition table and points at the core
  image, whose first sector lists the rest of it;
- the installer bundle: members written to the slot when every sha256 matches SHA256SUMS, the
  member named and the slot's previous system kept when one does not;
- each slot boots with its own command line (the bundle's ``cmdline``), ``panic=10`` by default;
- an upgrade's environment puts the other slot on trial with the running one as the default;
  the status a node reports (slot, trial, rolled back from, the other slot's version).
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
    assert args.startswith(bl.INSTALLED_CMDLINE) and args.endswith("reboot=k talos.hostname=n1")
    assert "console=ttyS0" in args and "talos.platform=metal" in args
    # an installed system reboots after a panic (the ISO's panic=0 would wait forever)
    assert " panic=10 " in args and "panic=0" not in args

    broken = tmp_path / "broken.cfg"  # the control: the check does refuse a bad script
    broken.write_text(text.replace("\nfi\n", "\n", 1))
    refused = subprocess.run([check, str(broken)], capture_output=True, text=True, check=False)
    assert refused.returncode != 0


def test_extra_kernel_args_that_would_break_the_script_are_refused() -> None:
    for bad in ('a"b', "x=$y", "a\nb", "a\\b"):
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
    # a slot that holds a system keeps it when a bundle for it is refused
    bl.unpack(io.BytesIO(_bundle(MEMBERS)), tmp_path, "A", "bundle")
    with pytest.raises(bl.BundleError, match="sha256 of vmlinuz does not match"):
        bl.unpack(io.BytesIO(_bundle({**MEMBERS, "vmlinuz": b"new"}, MEMBERS)), tmp_path, "A", "b")
    assert (tmp_path / "A" / "vmlinuz").read_bytes() == MEMBERS["vmlinuz"]
    assert sorted(p.name for p in (tmp_path / "A").iterdir()) == [
        "initramfs.xz",
        "version.json",
        "vmlinuz",
    ]
    missing = {k: v for k, v in MEMBERS.items() if k != bl.CORE_IMG}
    with pytest.raises(bl.BundleError, match="the bundle has no grub/core.img"):
        bl.unpack(io.BytesIO(_bundle(missing)), tmp_path, "A", "bundle")
    with pytest.raises(bl.BundleError, match="cannot read the bundle"):
        bl.unpack(io.BytesIO(b"not a tar" * 100), tmp_path, "A", "bundle")


def test_bundle_source_accepts_urls_and_paths_only() -> None:
    assert bl.bundle_source("http://10.0.0.1/installer-amd64.tar") is not None
    assert bl.bundle_source("/var/installer-amd64.tar") is not None
    assert bl.bundle_source("ghcr.io/talos-systems/installer:v0.9.3") is None


def test_each_slot_boots_with_its_bundles_command_line(tmp_path: Path) -> None:
    check = _need("grub-script-check")
    own = "console=ttyS0 talos.platform=metal panic=10 slab_nomerge pti=on rdinit=/nowhere"
    bl.unpack(io.BytesIO(_bundle({**MEMBERS, "cmdline": own.encode() + b"\n"})), tmp_path, "B", "b")
    bl.unpack(io.BytesIO(_bundle(MEMBERS)), tmp_path, "A", "bundle")  # no cmdline: the default
    bl.write_config(tmp_path, ["talos.x=1"], bl.installed_env("A"))
    cfg = tmp_path / "grub" / "grub.cfg"
    text = cfg.read_text()
    assert f"  linux /A/vmlinuz {bl.INSTALLED_CMDLINE} talos.x=1 talos.slot=A\n" in text
    assert f"  linux /B/vmlinuz {own} talos.x=1 talos.slot=B\n" in text
    done = subprocess.run([check, str(cfg)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # a later bundle without a cmdline takes the slot back to the default one
    bl.unpack(io.BytesIO(_bundle(MEMBERS)), tmp_path, "B", "bundle")
    assert not (tmp_path / "B" / "cmdline").exists()
    assert bl.slot_cmdline(tmp_path, "B") == bl.INSTALLED_CMDLINE
    # a command line grub.cfg cannot carry is refused, naming the file
    (tmp_path / "B" / "cmdline").write_text('quiet "x"\n')
    with pytest.raises(DiskError, match=r"B/cmdline: newlines, quotes"):
        bl.write_config(tmp_path, [], bl.installed_env("A"))


def test_an_upgrade_puts_the_other_slot_on_trial_and_the_status_tells_the_outcome(
    tmp_path: Path,
) -> None:
    assert bl.other_slot("A") == "B" and bl.other_slot("B") == "A"
    assert bl.booted_slot({"talos.slot": "B"}) == "B"
    assert bl.booted_slot({"talos.slot": "C"}) is None and bl.booted_slot({}) is None
    good = {"default": "A", "next": "", "tries": "", "failed": ""}
    env = bl.upgraded_env(good, "A", "B")
    assert env == {"default": "A", "next": "B", "tries": "1", "failed": ""}
    # upgrading again from a slot still on trial keeps the good default
    trial = {"default": "A", "next": "B", "tries": "0", "failed": ""}
    assert bl.upgraded_env(trial, "B", "A")["default"] == "A"

    bl.unpack(io.BytesIO(_bundle(MEMBERS)), tmp_path, "B", "bundle")
    slot, after = bl.next_boot(env)  # the upgrade's boot: B on trial
    status = bl.status_of(after, slot, tmp_path)
    assert status == bl.BootStatus("B", "A", "", "", trial=True)  # A holds nothing here
    slot, after = bl.next_boot(after)  # B never marked itself good: back to A
    status = bl.status_of(after, slot, tmp_path)
    assert status == bl.BootStatus("A", "B", "v0.9.3", rolled_back_from="B", trial=False)
    marked = bl.mark_good(bl.next_boot(env)[1], "B")
    assert marked is not None
    assert bl.status_of(marked, "B", tmp_path).trial is False


def test_the_booted_system_is_written_as_a_slot_whose_initramfs_holds_the_root(
    tmp_path: Path,
) -> None:
    import lzma

    from talos_image import initramfs

    cpio = shutil.which("cpio") or pytest.skip("cpio is not installed (Debian package cpio)")
    booted = tmp_path / "booted"
    (booted / "grub").mkdir(parents=True)
    (booted / "vmlinuz").write_bytes(b"K" * 5000)
    head = initramfs.xz(initramfs.newc([initramfs.Entry("init", 0o100755, b"#!x\n")], mtime=0))
    (booted / "initramfs.xz").write_bytes(head)
    for name in bl.GRUB_FILES:
        (booted / name).write_bytes(name.encode() * 10)
    assert bl.booted_complete(booted)
    assert not bl.booted_complete(tmp_path / "nowhere")  # the control: no ISO, no booted files
    root = tmp_path / "loop0"
    squash = bytes(range(256)) * 4097  # not a multiple of 4: the archive pads it
    root.write_bytes(squash)
    boot = tmp_path / "boot"
    (boot / "A").mkdir(parents=True)
    (boot / "A" / "cmdline").write_text("left from an earlier bundle\n")
    got = bl.write_booted(boot, "A", booted, root=str(root))
    assert sorted(p.name for p in (boot / "A").iterdir()) == ["initramfs.xz", "vmlinuz"]
    assert got.grub == {n: n.encode() * 10 for n in bl.GRUB_FILES}
    data = (boot / "A" / "initramfs.xz").read_bytes()
    assert data.startswith(head)
    dec = lzma.LZMADecompressor()
    dec.decompress(data)
    rest = dec.unused_data.lstrip(b"\0")  # the archive after the head, 4-byte aligned
    listed = subprocess.run([cpio, "-t"], input=rest, capture_output=True, check=True)
    assert listed.stdout.decode().split() == ["rootfs.sqsh"]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run([cpio, "-i", "--quiet"], input=rest, cwd=out, check=True)
    assert (out / "rootfs.sqsh").read_bytes() == squash


def test_the_root_device_is_read_from_mountinfo() -> None:
    info = (
        "22 1 7:0 / / ro,relatime shared:1 - squashfs /dev/loop0 ro,errors=continue\n"
        "23 22 0:21 / /run rw,nosuid,nodev shared:2 - tmpfs tmpfs rw,mode=755\n"
    )
    assert bl.root_device(info) == "/dev/loop0"
    assert bl.root_device(info.replace("squashfs", "ext4")) is None  # not a squashfs root
