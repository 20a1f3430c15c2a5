"""Metal mode's system disk in a QEMU guest: install on a blank disk, LUKS2 STATE and EPHEMERAL.

Two boots of one sparse disk image, talos-init as the machine's PID 1 with the KSPP parameters:

1. ``talos.config=file://…`` with ``machine.install.disk: /dev/vda``, ``wipe: true`` and nodeID
   encryption for STATE and EPHEMERAL, on a disk that holds an old partition table and data:
   talos-init zeroes the disk, partitions it with Talos's layout, formats STATE
   and EPHEMERAL as LUKS2 through ``talos-luks apply`` (a child process), makes xfs inside,
   mounts them, persists the config into STATE; a probe service writes a marker to /var.
2. The disk image is made 256 MiB bigger, then no ``talos.config``: STATE is opened with the key
   recorded in META, the config comes from STATE, the disk is not installed again, EPHEMERAL
   grows to the new end of the disk (partition, then xfs inside LUKS), opens with the same
   nodeID key and the marker is read back.

The host then reads the raw image: the GPT names, LUKS2 headers at STATE's and EPHEMERAL's
offsets (``cryptsetup luksDump``), the nodeID key opening them, and neither the marker nor the
config's secrets in plaintext anywhere, nor the old data. The host-only tests at the end check the partition
script on a sparse file and the refusal of a disk that holds data (no VM needed).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .harness import TALOS_INIT, base_config, write_config

UUID = "8c1f4e2a-6b3d-4a97-b2e5-1d9f07c3a654"
KSPP = ["slab_nomerge", "pti=on", "talos.platform=metal"]
FAST_PBKDF = "talos.luks.pbkdf=pbkdf2:1000"  # key slots cheap to open under TCG
DISK_BYTES = 1 << 30  # sparse: 502 MiB of fixed partitions, EPHEMERAL takes the rest
GROWTH = 256 << 20  # the disk grows between the boots
NODEID = {"provider": "luks2", "keys": [{"nodeID": {}, "slot": 0}]}
LABELS = ["EFI", "BIOS", "BOOT", "META", "STATE", "EPHEMERAL"]


def _vmlib() -> Any:
    import vmlib  # tests/ is on sys.path (tests/init/conftest.py)

    reason = vmlib.missing()
    if reason is not None:
        pytest.skip(f"cannot boot a VM: {reason}")
    return vmlib


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


def contains(path: Path, needle: bytes, start: int = 0, size: int | None = None) -> bool:
    """Whether ``needle`` occurs in the file's bytes [start, start+size) (chunked, overlapped)."""
    overlap = len(needle) - 1
    tail = b""
    left = size if size is not None else path.stat().st_size - start
    with path.open("rb") as fh:
        fh.seek(start)
        while left > 0 and (chunk := fh.read(min(8 << 20, left))):
            left -= len(chunk)
            if needle in tail + chunk:
                return True
            tail = chunk[-overlap:]
    return False


def gpt(image: Path) -> dict[str, dict[str, int]]:
    """Partition name -> start and size in bytes, from the image's GPT (sfdisk --json)."""
    out = subprocess.run(
        ["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True
    ).stdout
    table = json.loads(out)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    return {
        p.get("name", ""): {"start": p["start"] * sector, "size": p["size"] * sector}
        for p in table["partitions"]
    }


def header_of(image: Path, start: int, out: Path) -> Path:
    """The first 16 MiB of a partition (LUKS2 header and key slots) copied into a file."""
    with image.open("rb") as src, out.open("wb") as dst:
        src.seek(start)
        dst.write(src.read(16 << 20))
    return out


PROBE = (
    "set -e; o={out}; : > $o; "
    "grep -E ' (/var|{state}) ' /proc/mounts >> $o; "
    "ls /dev/mapper >> $o; "
    "test -s {state}/config.yaml && echo config-in-state >> $o; "
    "stat -c 'config-mode %a' {state}/config.yaml >> $o; "
    "stat -f -c 'var-size %b %S' /var >> $o; "
    "{action}; "
    "sync; kill -TERM 1"
)


def _probe(share: Path, name: str, action: str) -> None:
    services = share / "services"
    services.mkdir(exist_ok=True)
    for old in services.iterdir():
        old.unlink()
    script = PROBE.format(out=f"/run/vmlib/{name}", state="/run/node/state", action=action)
    (services / "probe.yaml").write_text(
        f"name: probe\ncommand: /bin/sh\nargs: ['-c', {json.dumps(script)}]\nrestart: never\n"
    )


def _used_disk(path: Path, size: int, old: bytes) -> Path:
    """A disk someone used: an MBR partition table and data in the middle."""
    _sparse(path, size)
    subprocess.run(
        ["sfdisk", "--quiet", str(path)], input="label: dos\n,,L\n", text=True, check=True
    )
    with path.open("r+b") as fh:
        fh.seek(size // 2 + (1 << 20))  # for the VM's disk: within what becomes EPHEMERAL
        fh.write(old)
    return path


def _boot(vmlib: Any, share: Path, disk: Path, cmdline: list[str]) -> Any:
    argv = [
        sys.executable,
        TALOS_INIT,
        "--mode",
        "metal",
        "--state-dir",
        "/run/node",
        "--services-dir",
        f"{vmlib.GUEST_SHARE}/services",
        "--no-api",
    ]
    g = vmlib.boot(
        argv, share=share, disks={"system": disk}, smbios_uuid=UUID, cmdline=cmdline, timeout=400
    )
    print(f"guest ran {g.seconds:.1f} s")
    print("\n".join(line for line in g.console.splitlines() if "[talos]" in line))
    return g


@pytest.fixture(scope="module")
def two_boots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    vmlib = _vmlib()
    share = tmp_path_factory.mktemp("share")
    old = ("OLD-DATA-" + secrets.token_hex(8)).encode()
    disk = _used_disk(tmp_path_factory.mktemp("disk") / "system.img", DISK_BYTES, old)
    assert contains(disk, old)
    marker = "TALOS-VAR-MARKER-" + secrets.token_hex(8)
    config = write_config(
        share / "config.yaml",
        "init",
        "disk-1",
        install={**base_config("init")["machine"]["install"], "disk": "/dev/vda", "wipe": True},
        systemDiskEncryption={"state": NODEID, "ephemeral": NODEID},
    )
    # the same marker also goes through BOOT, xfs in the clear: the scan's negative control
    control = (
        f"mkdir /tmp/boot && mount -t xfs /dev/vda3 /tmp/boot && "
        f"echo {marker} > /tmp/boot/marker && umount /tmp/boot"
    )
    _probe(share, "first.txt", f"echo {marker} > /var/marker; {control}")
    first = _boot(
        vmlib,
        share,
        disk,
        [*KSPP, FAST_PBKDF, f"talos.config=file://{vmlib.GUEST_SHARE}/config.yaml"],
    )
    assert "[talos] powering off" in first.console, first.console[-6000:]
    layout = gpt(disk)  # read between the boots
    os.truncate(disk, DISK_BYTES + GROWTH)
    _probe(share, "second.txt", "cat /var/marker >> $o")
    second = _boot(vmlib, share, disk, [*KSPP, FAST_PBKDF])
    assert "[talos] powering off" in second.console, second.console[-6000:]
    return {
        "first": first.console,
        "second": second.console,
        "first_out": (share / "first.txt").read_text(),
        "second_out": (share / "second.txt").read_text(),
        "disk": disk,
        "layout": layout,
        "layout_after": gpt(disk),
        "marker": marker.encode(),
        "old": old,
        "config": config.read_text(),
    }


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_first_boot_installs_and_encrypts(two_boots: dict[str, Any]) -> None:
    console = two_boots["first"]
    assert "[talos] no STATE partition: the system disk is not installed" in console
    zeroing = "[talos] install: zeroing /dev/vda (1024 MiB): machine.install.wipe is true"
    assert zeroing in console
    assert console.index(zeroing) < console.index("[talos] install: partitioning")
    assert "[talos] install: partitioning /dev/vda (1024 MiB): " + ", ".join(LABELS) in console
    assert "[talos] task install (1/1): done" in console
    for label, n in (("STATE", 5), ("EPHEMERAL", 6)):
        assert f"{label}: made an xfs filesystem on /dev/mapper/vda{n}-encrypted" in console
    assert (
        "[talos] STATE mounted on /run/node/state (encrypted, /dev/mapper/vda5-encrypted)"
        in console
    ), console[-6000:]
    assert "[talos] EPHEMERAL mounted on /var (encrypted, /dev/mapper/vda6-encrypted)" in console
    assert "[talos] STATE encryption config saved to META (/dev/vda4)" in console
    assert "[talos] config saved to /run/node/state/config.yaml" in console
    # at power off, after the services stopped: unmounted, then the mappings closed
    shutdown = console[console.index("[talos] shutdown sequence") :]
    for label, n, target in (("EPHEMERAL", 6, "/var"), ("STATE", 5, "/run/node/state")):
        assert f"[talos] {label} unmounted from {target}" in shutdown, shutdown
        assert f"[talos] {label}: closed /dev/mapper/vda{n}-encrypted" in shutdown
    out = two_boots["first_out"].splitlines()
    assert any(line.startswith("/dev/mapper/vda5-encrypted /run/node/state xfs ") for line in out)
    assert any(line.startswith("/dev/mapper/vda6-encrypted /var xfs ") for line in out)
    assert "config-in-state" in out and "config-mode 600" in out


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_disk_has_talos_layout_and_luks2_headers(two_boots: dict[str, Any], tmp_path: Path) -> None:
    layout = two_boots["layout"]
    assert list(layout) == LABELS
    mib = 1 << 20
    assert [layout[n]["size"] // mib for n in LABELS[:5]] == [100, 1, 300, 1, 100]
    assert layout["EPHEMERAL"]["start"] + layout["EPHEMERAL"]["size"] > DISK_BYTES - 2 * mib
    # the second boot did not install again; it grew EPHEMERAL alone, to the disk's new end
    after = two_boots["layout_after"]
    assert {k: v for k, v in after.items() if k != "EPHEMERAL"} == {
        k: v for k, v in layout.items() if k != "EPHEMERAL"
    }
    assert after["EPHEMERAL"]["start"] == layout["EPHEMERAL"]["start"]
    assert after["EPHEMERAL"]["size"] >= layout["EPHEMERAL"]["size"] + GROWTH - mib
    assert after["EPHEMERAL"]["start"] + after["EPHEMERAL"]["size"] > DISK_BYTES + GROWTH - mib
    disk = two_boots["disk"]
    from talos_luks.volume import Volume

    for label in ("STATE", "EPHEMERAL"):
        header = header_of(disk, layout[label]["start"], tmp_path / f"{label}.hdr")
        dump = subprocess.run(
            ["cryptsetup", "luksDump", str(header)], capture_output=True, text=True, check=True
        ).stdout
        assert "Version:       \t2" in dump, dump
        assert "aes-xts-plain64" in dump and "pbkdf2" in dump
        with Volume.load(str(header)) as vol:  # Talos's nodeID key: SMBIOS UUID + label
            assert vol.try_key((UUID + label).encode(), 0) == 0
            other = "EPHEMERAL" if label == "STATE" else "STATE"
            assert vol.try_key((UUID + other).encode()) is None
    # BOOT is xfs and EFI vfat in the clear, as the installer leaves them
    for label, magic, offset in (("BOOT", b"XFSB", 0), ("EFI", b"FAT32", 82)):
        with disk.open("rb") as fh:
            fh.seek(layout[label]["start"] + offset)
            assert fh.read(len(magic)) == magic, label


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_no_plaintext_on_the_raw_disk(two_boots: dict[str, Any], tmp_path: Path) -> None:
    disk, marker, layout = two_boots["disk"], two_boots["marker"], two_boots["layout"]
    control = tmp_path / "control.img"  # negative control of the scan itself
    control.write_bytes(os.urandom(5000) + marker + os.urandom(5000))
    assert contains(control, marker)
    # negative control on the disk: the marker written through BOOT (xfs, not encrypted) by the
    # same guest is found in BOOT's bytes, so the scan would see /var's copy if it were clear
    assert contains(disk, marker, **layout["BOOT"])
    for label in ("STATE", "EPHEMERAL"):
        assert not contains(disk, marker, **layout[label]), f"marker in plaintext on {label}"
    outside_boot = [
        (0, layout["BOOT"]["start"]),
        (layout["BOOT"]["start"] + layout["BOOT"]["size"], disk.stat().st_size),
    ]
    for start, end in outside_boot:
        assert not contains(disk, marker, start, end - start), "the /var marker is in the clear"
    # the persisted config's secrets (its machine token, its CA key) are not readable either
    config = two_boots["config"]
    token = base_token(config)
    assert token in config
    assert not contains(disk, token.encode()), "the persisted config is on the raw disk"
    # the data of the disk's earlier life is gone (machine.install.wipe zeroed it)
    assert not contains(disk, two_boots["old"]), "old data survived machine.install.wipe"


def base_token(config_text: str) -> str:
    import yaml

    return str(yaml.safe_load(config_text)["machine"]["token"])


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_second_boot_opens_with_the_same_key_and_finds_the_config(
    two_boots: dict[str, Any],
) -> None:
    console = two_boots["second"]
    assert "STATE encryption config read from META (/dev/vda4)" in console, console[-6000:]
    assert "[talos] config loaded from STATE (/run/node/state/config.yaml)" in console
    assert "fetching config" not in console and "config loaded from file" not in console
    assert "[talos] install: /dev/vda is installed already (STATE and EPHEMERAL found)" in console
    assert "made an xfs filesystem" not in console and "formatted LUKS2" not in console
    assert "[talos] EPHEMERAL mounted on /var (encrypted, /dev/mapper/vda6-encrypted)" in console
    out = two_boots["second_out"].splitlines()
    assert two_boots["marker"].decode() in out  # /var's content survived, read through LUKS
    assert "config-in-state" in out
    # the disk grew by GROWTH: EPHEMERAL's partition, LUKS mapping and xfs followed
    assert "EPHEMERAL: grew /dev/vda6 from 520 MiB to 776 MiB, the rest of /dev/vda" in console
    assert "[talos] EPHEMERAL: xfs on /var: data blocks changed from" in console
    assert "grew" not in two_boots["first"]  # negative control: nothing to grow on the first

    def var_size(lines: list[str]) -> int:
        (line,) = [x for x in lines if x.startswith("var-size ")]
        blocks, bsize = line.split()[1:]
        return int(blocks) * int(bsize)

    first = var_size(two_boots["first_out"].splitlines())
    assert var_size(out) - first > GROWTH - (16 << 20), (first, var_size(out))


# -- host only: the partition script and the refusal, on sparse files ---------------------------


def test_sfdisk_script_writes_talos_layout(tmp_path: Path) -> None:
    if shutil.which("sfdisk") is None:
        pytest.skip("sfdisk is not installed (Debian package fdisk)")
    from talos_init.install import LAYOUT, sfdisk_script

    image = _sparse(tmp_path / "disk.img", DISK_BYTES)
    subprocess.run(["sfdisk", "--quiet", str(image)], input=sfdisk_script(), text=True, check=True)
    layout = gpt(image)
    assert list(layout) == [p.label for p in LAYOUT] == LABELS
    dump = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True
        ).stdout
    )
    parts = dump["partitiontable"]["partitions"]
    assert parts[0]["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    assert parts[1]["type"] == "21686148-6449-6E6F-744E-656564454649"
    assert parts[1].get("attrs") == "LegacyBIOSBootable"


class _Console:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def test_install_refuses_a_disk_with_data_and_leaves_it_untouched(tmp_path: Path) -> None:
    from talos_init.configsource import parse
    from talos_init.install import install, is_blank
    from talos_init.reaper import Reaper

    image = _sparse(tmp_path / "used.img", 700 << 20)
    with image.open("r+b") as fh:  # one byte of someone's data near the end
        fh.seek((700 << 20) - 4096)
        fh.write(b"x")
    assert not is_blank(str(image))
    assert is_blank(str(_sparse(tmp_path / "blank.img", 700 << 20)))  # the control
    before = image.read_bytes()
    data = base_config("init")
    data["machine"]["install"]["disk"] = str(image)
    from libtalos.yamlio import dump

    config = parse(dump(data), "test.yaml", "container")
    console = _Console()
    done = asyncio.run(install(console, Reaper(), config))  # type: ignore[arg-type]
    assert done is False
    assert any(
        "holds data" in line
        and "refusing to touch it" in line
        and "machine.install.wipe: true" in line
        for line in console.lines
    )
    assert image.read_bytes() == before


def test_zero_empties_a_disk_image_and_wipe_is_read_from_the_config(tmp_path: Path) -> None:
    from talos_init.configsource import parse
    from talos_init.install import is_blank, wipe_requested, zero

    image = _used_disk(tmp_path / "used.img", 64 << 20, b"OLD-DATA")
    assert not is_blank(str(image)) and contains(image, b"OLD-DATA")
    assert zero(str(image)) == 64 << 20
    assert image.stat().st_size == 64 << 20 and is_blank(str(image))
    assert not contains(image, b"OLD-DATA")
    from libtalos.yamlio import dump

    data = base_config("init")
    assert wipe_requested(parse(dump(data), "c.yaml", "container")) is False  # gen's default
    data["machine"]["install"]["wipe"] = True
    assert wipe_requested(parse(dump(data), "c.yaml", "container")) is True


def test_wipe_leaves_a_disk_too_small_for_the_layout_untouched(tmp_path: Path) -> None:
    from talos_init.configsource import parse
    from talos_init.install import install
    from talos_init.reaper import Reaper

    image = _used_disk(tmp_path / "small.img", 64 << 20, b"OLD-DATA")
    before = image.read_bytes()
    data = base_config("init")
    data["machine"]["install"].update(disk=str(image), wipe=True)
    from libtalos.yamlio import dump

    console = _Console()
    config = parse(dump(data), "c.yaml", "container")
    done = asyncio.run(install(console, Reaper(), config))  # type: ignore[arg-type]
    assert done is False
    assert any("is 64 MiB" in line and "refusing to install" in line for line in console.lines)
    assert not any("zeroing" in line for line in console.lines)
    assert image.read_bytes() == before


def _fake_sysfs(root: Path) -> Path:
    """/sys/class/block as the kernel lays it out: links into /sys/devices/.../block/<disk>/."""
    devices = root / "devices" / "virtio1" / "block"
    klass = root / "class" / "block"
    klass.mkdir(parents=True)
    entries = {
        "vda": None,
        "vda4": ("META", 4),
        "vda5": ("STATE", 5),
        "vdb": None,
        "vdb1": ("STATE", 1),
        "loop0": None,
    }
    for name, part in entries.items():
        disk = name.rstrip("0123456789") if part else name
        path = devices / disk if part is None else devices / disk / name
        path.mkdir(parents=True, exist_ok=True)
        uevent = f"MAJOR=254\nDEVNAME={name}\n"
        if part is not None:
            (path / "partition").write_text(f"{part[1]}\n")
            uevent += f"DEVTYPE=partition\nPARTN={part[1]}\nPARTNAME={part[0]}\n"
        (path / "uevent").write_text(uevent)
        (klass / name).symlink_to(path)
    return klass


def test_partitions_found_by_gpt_name_in_sysfs(tmp_path: Path) -> None:
    from talos_init.disks import Partition, find, partitions

    sys_block = _fake_sysfs(tmp_path)
    assert [p.name for p in partitions(sys_block)] == ["vda4", "vda5", "vdb1"]
    assert find("STATE", sys_block=sys_block) == Partition("vda5", "STATE", "vda", 5)
    assert find("STATE", "/dev/vdb", sys_block=sys_block) == Partition("vdb1", "STATE", "vdb", 1)
    assert find("META", "vdb", sys_block=sys_block) is None
    assert find("EPHEMERAL", sys_block=sys_block) is None
    assert find("STATE", sys_block=sys_block).device == "/dev/vda5"  # type: ignore[union-attr]


def test_meta_record_round_trip_and_torn_record(tmp_path: Path) -> None:
    from talos_init.disks import encryption_document, read_meta, write_meta

    meta = _sparse(tmp_path / "meta.img", 1 << 20)
    assert read_meta(str(meta)) is None  # zeros: nothing recorded
    text = encryption_document("STATE", NODEID)
    write_meta(str(meta), text)
    assert read_meta(str(meta)) == text
    assert meta.stat().st_size == 1 << 20  # written in place, the partition is not grown
    from talos_luks.config import read_encryption

    spec = read_encryption(text, "META", "STATE")  # what talos-luks apply reads on stdin
    assert spec is not None and spec.keys[0].kind == "nodeID" and spec.keys[0].slot == 0
    with meta.open("r+b") as fh:  # a torn write: one payload byte differs from the checksum
        fh.seek(30)
        byte = fh.read(1)
        fh.seek(30)
        fh.write(bytes([byte[0] ^ 1]))
    assert read_meta(str(meta)) is None


@pytest.mark.parametrize(
    ("value", "args"),
    [
        (None, []),
        ("pbkdf2:1000", ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]),
        ("argon2id", ["--pbkdf", "argon2id"]),
    ],
)
def test_pbkdf_kernel_parameter(value: str | None, args: list[str]) -> None:
    from talos_init.disks import SystemDisk
    from talos_init.reaper import Reaper

    cmdline = {} if value is None else {"talos.luks.pbkdf": value}
    disk = SystemDisk(_Console(), Reaper(), cmdline)  # type: ignore[arg-type]
    assert disk.pbkdf_args() == args


@pytest.mark.parametrize("value", ["scrypt", "pbkdf2:many", "pbkdf2:-1"])
def test_pbkdf_kernel_parameter_rejected_with_its_name(value: str) -> None:
    from talos_init.disks import DiskError, SystemDisk
    from talos_init.reaper import Reaper

    disk = SystemDisk(_Console(), Reaper(), {"talos.luks.pbkdf": value})  # type: ignore[arg-type]
    with pytest.raises(DiskError, match=f"talos.luks.pbkdf={value}: expected one of"):
        disk.pbkdf_args()
