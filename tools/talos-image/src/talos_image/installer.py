"""The installer bundle: one uncompressed tar of what an install or upgrade writes to disk.

Members, in order: ``vmlinuz``, ``initramfs.xz``, ``rootfs.sqsh``, ``version.json`` (the
root's manifest), ``cmdline`` (the kernel command line the installed system boots with:
:data:`INSTALLED_CMDLINE`, the ISO's with ``panic=10``, so that a system whose kernel panics
or whose init exits reboots and GRUB's boot counting goes back to the previous slot), GRUB's
images ``grub/boot.img``, ``grub/core.img`` (BIOS) and
``grub/BOOTX64.EFI`` (UEFI), and ``SHA256SUMS`` (``sha256sum`` format, one line for each of the
others). The initramfs is the PXE one, which holds the squashfs too: a boot from disk runs from
RAM like the ISO until an initramfs that mounts the squashfs from its partition exists.

GRUB's images are made here with ``grub-mkimage`` (:func:`grub_images`), every module the
installed system's grub.cfg uses built in, so that the node installs GRUB without GRUB's tools
in its root (Debian's grub-common brings debconf and perl, which the root must not hold): the
node writes the BIOS boot sector and core image itself and copies the UEFI image to the EFI
partition's removable path (talos-init's ``talos_init.bootloader``). Both images find the BOOT
partition by its filesystem label and read ``grub/grub.cfg`` there.

``--version`` makes a bundle whose root names another version (:func:`reversioned`): the
unpacked root of the last build, copied, its manifest and os-release rewritten, packed again.
It is how a second bundle to upgrade to is made from one build (the upgrade tests use it).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from libtalos.errors import TalosError
from talos_image import iso, layout, pxe, tarball
from talos_image.media import Inputs

BUNDLE = f"installer-{layout.ARCH}.tar"
SUMS = "SHA256SUMS"
GRUB_LIB = Path("/usr/lib/grub")
GRUB_MODULES = (
    "part_gpt",
    "xfs",
    "fat",
    "search",
    "search_label",
    "normal",
    "configfile",
    "linux",
    "test",
    "loadenv",
    "serial",
    "terminfo",
    "terminal",
    "echo",
)
"""Built into both images: what grub.cfg's script and entries use, and BOOT's filesystem."""
GRUB_PLATFORM_MODULES = {"i386-pc": ("biosdisk",), "x86_64-efi": ("efi_gop",)}
GRUB_EARLY_CFG = "search --no-floppy --label BOOT --set=root\nset prefix=($root)/grub\n"
"""The images' embedded config: BOOT by its label; normal mode then reads grub/grub.cfg."""


INSTALLED_CMDLINE = iso.CMDLINE.replace("panic=0", "panic=10")
VERSION_RE = re.compile(r"v?[0-9][0-9A-Za-z.+~-]{0,63}")


class InstallerError(TalosError):
    """grub-mkimage failed or GRUB's platform files are missing (the message says which)."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def grub_missing() -> str | None:
    """The first tool or GRUB platform the bundle needs that is not installed, or ``None``."""
    if shutil.which("grub-mkimage") is None:
        return "grub-mkimage (Debian package grub-common)"
    for platform, package in (("i386-pc", "grub-pc-bin"), ("x86_64-efi", "grub-efi-amd64-bin")):
        if not (GRUB_LIB / platform / "moddep.lst").exists():
            return f"{GRUB_LIB / platform} (Debian package {package})"
    return None


def grub_images(work: Path) -> list[tuple[str, Path]]:
    """``grub/boot.img``, ``grub/core.img`` and ``grub/BOOTX64.EFI`` made in ``work``
    (reproducible: grub-mkimage writes no dates)."""
    reason = grub_missing()
    if reason is not None:
        raise InstallerError(f"installer: missing {reason}")
    early = work / "early.cfg"
    early.write_text(GRUB_EARLY_CFG)
    made = []
    for platform, name in (("i386-pc", "core.img"), ("x86_64-efi", "BOOTX64.EFI")):
        out = work / name
        argv = [
            "grub-mkimage",
            "-O",
            platform,
            "-d",
            str(GRUB_LIB / platform),
            "-o",
            str(out),
            "-c",
            str(early),
            "-p",
            "/grub",
            *GRUB_PLATFORM_MODULES[platform],
            *GRUB_MODULES,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise InstallerError(
                f"grub-mkimage -O {platform} exited {done.returncode}: {done.stderr}"
            )
        made.append((f"grub/{name}", out))
    return [("grub/boot.img", GRUB_LIB / "i386-pc" / "boot.img"), *made]


def reversioned(inputs: Inputs, root: Path, work: Path, version: str, *, epoch: int) -> Inputs:
    """``inputs`` with a root whose manifest and os-release say ``version``: ``root`` (the
    unpacked root of the build) copied into ``work``, rewritten and packed into a squashfs
    there. The kernel and modules stay the build's."""
    from talos_image import rootfs

    if not VERSION_RE.fullmatch(version):
        raise InstallerError(
            f"--version {version!r}: expected a version such as 0.9.3 or v0.9.4-rc1"
            " (digits first; letters, digits and . + ~ - after)"
        )
    version = version.removeprefix("v")
    copy = work / "root"
    if copy.exists():
        shutil.rmtree(copy)
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(root), str(copy)], check=True)
    manifest = copy / layout.VERSION_FILE
    data = json.loads(manifest.read_text())
    old = str(data["version"])
    data["version"] = version
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    release = copy / "etc" / "os-release"
    release.write_text(release.read_text().replace(old, version))
    rootfs.clamp_mtimes(copy, epoch)
    squashfs = work / layout.rootfs(work).name
    rootfs._mksquashfs(copy, squashfs, epoch, log=lambda _: None)
    return Inputs(squashfs, inputs.kernel, inputs.modules_dir, manifest)


def build(
    out: Path,
    inputs: Inputs,
    *,
    epoch: int,
    initrd: Path | None = None,
    cmdline: str = INSTALLED_CMDLINE,
) -> Path:
    """Write ``installer-amd64.tar`` to ``out`` (with ``initrd``, else a fresh initramfs)."""
    out.mkdir(parents=True, exist_ok=True)
    initrd = initrd or pxe.build_initramfs(out, inputs, epoch=epoch)
    with tempfile.TemporaryDirectory(prefix="talos-installer-") as tmp:
        line = Path(tmp, "cmdline")
        line.write_text(cmdline + "\n")
        members = [
            ("vmlinuz", inputs.kernel),
            ("initramfs.xz", initrd),
            ("rootfs.sqsh", inputs.squashfs),
            ("version.json", inputs.manifest),
            ("cmdline", line),
            *grub_images(Path(tmp)),
        ]
        sums = Path(tmp, SUMS)
        sums.write_text("".join(f"{sha256(path)}  {name}\n" for name, path in members))
        return tarball.write(out / BUNDLE, [*members, (SUMS, sums)], epoch=epoch, compress=False)
