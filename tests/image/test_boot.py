"""The boot media boot: the ISO with SeaBIOS and with OVMF, and the PXE kernel and initramfs,
each to talos-init's maintenance banner on the serial console; two builds are identical.

QEMU under TCG, no network (``-nic none``): the banner then names no address. At most two
guests run at once.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from talos_image import initramfs, installer, iso, layout, pxe
from talos_image.media import Inputs

pytestmark = [pytest.mark.image, pytest.mark.vm]

EPOCH = 1_700_000_000
QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
BANNER = ("[talos] starting maintenance service", "[talos] server certificate fingerprint:")
BOOT_TIMEOUT = 180.0  # TCG on a shared 2-core machine; the goal to the banner is 20 s


def _missing() -> str | None:
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (Debian package qemu-system-x86)"
    if not OVMF_CODE.exists():
        return f"{OVMF_CODE} is missing (Debian package ovmf)"
    reason = iso.missing()
    return None if reason is None else f"cannot build the ISO: missing {reason}"


@pytest.fixture(scope="module")
def inputs(built_root) -> Inputs:
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
    files = pxe.build(out, inputs, epoch=EPOCH)
    iso.build(out / iso.ISO_NAME, files.kernel, files.initramfs, epoch=EPOCH)
    return out


def _sha256(path: Path) -> str:
    return installer.sha256(path)


@dataclass
class Boot:
    name: str
    proc: subprocess.Popen[bytes]
    serial: Path
    started: float
    seconds: float | None = None

    def text(self) -> str:
        return self.serial.read_bytes().decode("utf-8", "replace")


def _start(name: str, work: Path, machine: list[str]) -> Boot:
    serial = work / f"{name}.serial"
    cmd = [
        QEMU,
        "-nodefaults",
        "-nographic",
        "-monitor",
        "none",
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
    return Boot(name, proc, serial, started)


def _wait_for_banner(boots: list[Boot]) -> None:
    """Until each guest's console shows the banner (then it is stopped), or the timeout."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    try:
        while any(b.seconds is None for b in boots) and time.monotonic() < deadline:
            for b in boots:
                if b.seconds is None and b.serial.exists():
                    if all(line in b.text() for line in BANNER):
                        b.seconds = time.monotonic() - b.started
                        b.proc.kill()
                    elif b.proc.poll() is not None:
                        b.seconds = -1.0  # QEMU ended without the banner
            time.sleep(0.2)
    finally:
        for b in boots:
            if b.proc.poll() is None:
                b.proc.kill()
            _, err = b.proc.communicate()
            if b.seconds is None or b.seconds < 0:
                text = b.text() if b.serial.exists() else ""
                pytest.fail(
                    f"{b.name}: no maintenance banner within {BOOT_TIMEOUT:.0f} s\n"
                    f"--- console (end) ---\n{text[-6000:]}\n--- qemu ---\n{err.decode()[-2000:]}"
                )
            print(f"{b.name}: maintenance banner after {b.seconds:.1f} s")


def _banner_checks(boot: Boot) -> None:
    text = boot.text()
    assert "initramfs:" not in text, text  # /init reported no failure
    assert "talos-init mode metal, pid 1" in text, text
    assert "[talos] platform metal" in text, text


def test_iso_boots_with_seabios_and_ovmf(media: Path, tmp_path: Path) -> None:
    image = media / iso.ISO_NAME
    vars_copy = tmp_path / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, vars_copy)
    bios = _start("seabios", tmp_path, ["-cdrom", str(image)])
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
            "-cdrom",
            str(image),
        ],
    )
    _wait_for_banner([bios, uefi])
    for boot in (bios, uefi):
        _banner_checks(boot)
        assert f"BOOT_IMAGE=/boot/vmlinuz {iso.CMDLINE}" in boot.text()


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
    _wait_for_banner([boot])
    _banner_checks(boot)


def test_two_builds_are_identical(inputs: Inputs, media: Path, tmp_path: Path) -> None:
    files = pxe.build(tmp_path, inputs, epoch=EPOCH)
    again = iso.build(tmp_path / iso.ISO_NAME, files.kernel, files.initramfs, epoch=EPOCH)
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
        listed = dict(reversed(line.split("  ")) for line in sums.read().decode().splitlines())
        for member in tar.getmembers():
            assert (member.mtime, member.uid, member.gid) == (EPOCH, 0, 0)
    assert names == ["vmlinuz", "initramfs.xz", "rootfs.sqsh", "version.json", installer.SUMS]
    assert listed["rootfs.sqsh"] == _sha256(inputs.squashfs)
    assert listed["initramfs.xz"] == _sha256(media / pxe.INITRAMFS)


def test_initramfs_holds_no_more_than_it_needs(inputs: Inputs) -> None:
    modules = initramfs.module_order(inputs.modules_dir, initramfs.BOOT_MODULES)
    names = {Path(m).name for m in modules}
    assert {"loop.ko", "squashfs.ko", "virtio_blk.ko"} <= names
    order = [Path(m).name for m in modules]
    assert order.index("virtio.ko") < order.index("virtio_pci.ko")  # dependencies first
