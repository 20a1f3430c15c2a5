"""The boot media boot: the ISO with SeaBIOS and with OVMF, and the PXE kernel and initramfs,
each to talos-init's maintenance banner on the serial console; the ISO's node runs from RAM
(the CD is ejected once the initramfs has copied the root, and the boot goes on); the ISO's
initramfs takes only its own medium; the ISO stays within its size; two builds are identical.

QEMU under TCG, no network (``-nic none``): the banner then names no address. At most two
guests run at once.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from talos_image import initramfs, installer, iso, layout, pxe
from talos_image.media import Inputs
from talos_image.rootfs import RootImage

pytestmark = [pytest.mark.image, pytest.mark.vm]

EPOCH = 1_700_000_000
QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
BANNER = ("[talos] starting maintenance service", "[talos] server certificate fingerprint:")
BOOT_TIMEOUT = 180.0  # TCG on a shared 2-core machine; the goal to the banner is 20 s
COPIED = "initramfs: root copied to RAM from "
NO_MEDIUM = "initramfs: no boot medium"
CD = "cd0"  # the QEMU drive id of the CD


def _missing() -> str | None:
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (Debian package qemu-system-x86)"
    if not OVMF_CODE.exists():
        return f"{OVMF_CODE} is missing (Debian package ovmf)"
    reason = iso.missing()
    return None if reason is None else f"cannot build the ISO: missing {reason}"


@pytest.fixture(scope="module")
def inputs(built_root: RootImage) -> Inputs:
    """The root the session built, as the boot media's inputs."""
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    root = Path(built_root.root_dir)
    return Inputs(
        squashfs=Path(built_root.squashfs),
        kernel=Path(built_root.kernel),
        modules_dir=layout.modules_dir(root, built_root.kernel_version),
        manifest=root / layout.VERSION_FILE,
    )


@pytest.fixture(scope="module")
def media(inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the PXE files and the ISO, built once."""
    out = tmp_path_factory.mktemp("media")
    pxe.build(out, inputs, epoch=EPOCH)
    iso.build_image(out / iso.ISO_NAME, inputs, epoch=EPOCH)
    return out


def _sha256(path: Path) -> str:
    return installer.sha256(path)


@dataclass
class Boot:
    name: str
    proc: subprocess.Popen[bytes]
    serial: Path
    started: float
    monitor: Path | None = None
    eject_after: str | None = None  # eject the CD once the console shows this
    until: tuple[str, ...] = BANNER  # the lines the boot is waited for
    seconds: float | None = None
    ejected: str = ""  # the monitor's replies to the eject and to "info block" after it

    def text(self) -> str:
        return self.serial.read_bytes().decode("utf-8", "replace")


def _start(
    name: str,
    work: Path,
    machine: list[str],
    *,
    eject_after: str | None = None,
    until: tuple[str, ...] = BANNER,
) -> Boot:
    serial = work / f"{name}.serial"
    monitor = work / f"{name}.monitor" if eject_after else None
    cmd = [
        QEMU,
        "-nodefaults",
        "-nographic",
        "-monitor",
        f"unix:{monitor},server=on,wait=off" if monitor else "none",
        "-no-reboot",
        "-accel",
        "tcg,tb-size=64",
        "-smp",
        "1",
        "-m",
        "1024",
        "-nic",
        "none",
        "-serial",
        f"file:{serial}",
        *machine,
    ]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return Boot(name, proc, serial, started, monitor, eject_after, until)


def _cdrom(image: Path) -> list[str]:
    return ["-drive", f"if=ide,media=cdrom,readonly=on,id={CD},file={image}"]


def _monitor(path: Path, *commands: str) -> str:
    """The human monitor's replies to ``commands``."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        replies = []
        for command in ("", *commands):
            if command:
                sock.sendall(f"{command}\n".encode())
            data = b""
            while not data.endswith(b"(qemu) "):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            replies.append(data.decode("utf-8", "replace"))
    return "".join(replies[1:])


def _eject(boot: Boot) -> None:
    """Eject the CD without force (QEMU refuses while the guest keeps the tray locked, as
    Linux does while the medium is mounted), then ask what is in the drive."""
    assert boot.monitor is not None
    boot.ejected = _monitor(boot.monitor, f"eject {CD}", "info block")
    boot.eject_after = None


def _wait_for(boots: list[Boot]) -> None:
    """Until each guest's console shows its ``until`` lines (then it is stopped), or the
    timeout."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    try:
        while any(b.seconds is None for b in boots) and time.monotonic() < deadline:
            for b in boots:
                if b.seconds is None and b.serial.exists():
                    text = b.text()
                    if b.eject_after is not None and b.eject_after in text:
                        _eject(b)
                    if all(line in text for line in b.until):
                        b.seconds = time.monotonic() - b.started
                        b.proc.kill()
                    elif b.proc.poll() is not None:
                        b.seconds = -1.0  # QEMU ended without the banner
            time.sleep(0.2)
    finally:
        failed = []
        for b in boots:
            if b.proc.poll() is None:
                b.proc.kill()
            _, err = b.proc.communicate()
            if b.seconds is None or b.seconds < 0:
                text = b.text() if b.serial.exists() else ""
                failed.append(
                    f"{b.name}: no {b.until} within {BOOT_TIMEOUT:.0f} s\n"
                    f"--- console (end) ---\n{text[-6000:]}\n--- qemu ---\n{err.decode()[-2000:]}"
                )
            else:
                print(f"{b.name}: {b.until[-1]!r} after {b.seconds:.1f} s")
        if failed:
            pytest.fail("\n".join(failed))


def _banner_checks(boot: Boot) -> None:
    text = boot.text()
    assert "cannot boot" not in text, text  # /init reported no failure
    assert "initramfs: insmod" not in text, text
    assert "talos-init mode metal, pid 1" in text, text
    assert "[talos] platform metal" in text, text


def test_iso_boots_with_seabios_and_ovmf_and_runs_from_ram(media: Path, tmp_path: Path) -> None:
    image = media / iso.ISO_NAME
    vars_copy = tmp_path / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, vars_copy)
    bios = _start("seabios", tmp_path, _cdrom(image), eject_after=COPIED)
    uefi = _start(
        "ovmf",
        tmp_path,
        [
            "-machine",
            "q35",
            "-drive",
            f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,file={vars_copy}",
            *_cdrom(image),
        ],
        eject_after=COPIED,
    )
    _wait_for([bios, uefi])
    for boot in (bios, uefi):
        _banner_checks(boot)
        text = boot.text()
        assert f"BOOT_IMAGE=/boot/vmlinuz {iso.CMDLINE}" in text
        assert f"{COPIED}/dev/sr0" in text, text
        # the CD left the drive before talos-init started, and the boot went on from RAM
        assert text.index(COPIED) < text.index("talos-init mode metal, pid 1")
        assert "is locked" not in boot.ejected, boot.ejected  # QEMU's refusal
        assert f"{CD}: [not inserted]" in boot.ejected, boot.ejected
        assert "I/O error" not in text, text


def test_iso_holds_the_root_as_a_file_within_its_size(inputs: Inputs, media: Path) -> None:
    image = media / iso.ISO_NAME
    size = image.stat().st_size
    print(f"{iso.ISO_NAME}: {size} bytes, root squashfs {inputs.squashfs.stat().st_size} bytes")
    assert size <= iso.MAX_SIZE
    listing = subprocess.run(
        ["xorriso", "-indev", str(image), "-find", "/boot", "-type", "f", "-exec", "lsdl"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sizes = {line.split()[-1].strip("'"): int(line.split()[4]) for line in listing.splitlines()}
    assert sizes[f"/{iso.ROOTFS_PATH}"] == inputs.squashfs.stat().st_size
    # the squashfs is on the ISO once: the initramfs GRUB loads holds none
    assert sizes["/boot/initramfs.xz"] < 8 << 20, sizes


def test_iso_initramfs_takes_only_its_own_medium(
    inputs: Inputs, media: Path, tmp_path: Path
) -> None:
    """An initramfs built for another squashfs (one byte longer) does not take this ISO's:
    it waits for its medium and stops, and the right one boots from the same CD."""
    other = initramfs.Medium(iso.VOLUME_ID, iso.ROOTFS_PATH, inputs.squashfs.stat().st_size + 1)
    wrong = initramfs.build(
        tmp_path / "other.xz", inputs.modules_dir, None, epoch=EPOCH, medium=other
    )
    right = iso.build_initramfs(tmp_path, inputs, epoch=EPOCH)
    boots = [
        _start(
            name,
            tmp_path,
            [
                "-kernel",
                str(inputs.kernel),
                "-initrd",
                str(initrd),
                "-append",
                iso.CMDLINE,
                *_cdrom(media / iso.ISO_NAME),
            ],
            until=(until,),
        )
        for name, initrd, until in (
            ("wrong-medium", wrong, NO_MEDIUM),
            ("right-medium", right, f"{COPIED}/dev/sr0"),
        )
    ]
    _wait_for(boots)
    assert "cannot boot" in boots[0].text()
    assert COPIED not in boots[0].text()


def test_pxe_kernel_and_initramfs_boot(media: Path, tmp_path: Path) -> None:
    boot = _start(
        "pxe",
        tmp_path,
        [
            "-kernel",
            str(media / pxe.KERNEL),
            "-initrd",
            str(media / pxe.INITRAMFS),
            "-append",
            iso.CMDLINE,
        ],
    )
    _wait_for([boot])
    _banner_checks(boot)
    assert COPIED not in boot.text()  # the root came in the initramfs


def test_two_builds_are_identical(inputs: Inputs, media: Path, tmp_path: Path) -> None:
    files = pxe.build(tmp_path, inputs, epoch=EPOCH)
    again = iso.build_image(tmp_path / iso.ISO_NAME, inputs, epoch=EPOCH)
    for name, path in (
        (pxe.INITRAMFS, files.initramfs),
        (pxe.BUNDLE, files.bundle),
        (iso.ISO_NAME, again),
    ):
        assert _sha256(path) == _sha256(media / name), name


def test_installer_bundle_lists_its_members(inputs: Inputs, media: Path, tmp_path: Path) -> None:
    import tarfile

    bundle = installer.build(tmp_path, inputs, epoch=EPOCH, initrd=media / pxe.INITRAMFS)
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        sums = tar.extractfile(installer.SUMS)
        assert sums is not None
        lines = sums.read().decode().splitlines()
        listed = {name: digest for digest, name in (line.split("  ", 1) for line in lines)}
        for member in tar.getmembers():
            assert (member.mtime, member.uid, member.gid) == (EPOCH, 0, 0)
        line = tar.extractfile("cmdline")
        assert line is not None
        cmdline = line.read().decode()
    assert names == [
        "vmlinuz", "initramfs.xz", "rootfs.sqsh", "version.json", "cmdline",
        "grub/boot.img", "grub/core.img", "grub/BOOTX64.EFI", installer.SUMS,
    ]  # fmt: skip
    # the installed system's command line: the ISO's, but a panic reboots (boot counting)
    assert cmdline == iso.CMDLINE.replace("panic=0", "panic=10") + "\n"
    assert listed["rootfs.sqsh"] == _sha256(inputs.squashfs)
    assert listed["initramfs.xz"] == _sha256(media / pxe.INITRAMFS)


def test_initramfs_holds_no_more_than_it_needs(inputs: Inputs) -> None:
    modules = initramfs.module_order(inputs.modules_dir, initramfs.BOOT_MODULES)
    names = {Path(m).name for m in modules}
    assert {"loop.ko", "squashfs.ko", "virtio_blk.ko"} <= names
    assert "sr_mod.ko" not in names  # the PXE initramfs looks for no medium
    order = [Path(m).name for m in modules]
    assert order.index("virtio.ko") < order.index("virtio_pci.ko")  # dependencies first
    medium = initramfs.module_order(
        inputs.modules_dir, (*initramfs.BOOT_MODULES, *initramfs.MEDIUM_MODULES)
    )
    order = [Path(m).name for m in medium]
    assert {"sr_mod.ko", "cdrom.ko", "isofs.ko", "ata_piix.ko", "usb-storage.ko"} <= set(order)
    assert order.index("cdrom.ko") < order.index("sr_mod.ko")
