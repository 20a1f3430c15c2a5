"""The root filesystem: what it holds, what it must not hold, and that it builds reproducibly."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from talos_image import __version__, layout
from talos_image.rootfs import RESOLV_CONF, RootImage, forbidden, kept_modules, module_glob

pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.timeout(900)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_python_imports_the_project_inside_the_root(built_root: RootImage) -> None:
    root = built_root.root_dir
    assert (root / "usr/bin/python3").exists()
    imports = "import talos_init.cli, talos_luks.binding, cryptography, grpclib, pyroute2, yaml"
    done = subprocess.run(
        ["chroot", str(root), "/usr/bin/python3", "-c", imports],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


# What talos-init imports before its maintenance banner: PID 1, the API it serves then, and the
# certificate child (python -m talos_init.api.issuer).
BOOT_IMPORTS = (
    "import talos_init.cli, talos_init.boot, talos_init.wiring, talos_init.api.lifecycle,"
    " talos_init.api.server, talos_init.api.trustd, talos_init.api.issuer, talos_init.disks,"
    " talos_init.network, libtalos.pki, talos_init.api.certs"
)


def _compiled_from_source(verbose_stderr: str) -> list[str]:
    """The modules ``python -v`` compiled from their source: no valid .pyc beside them (in a
    read-only root the interpreter then compiles them again at every start)."""
    prefix = "# code object from "  # then the .pyc quoted, or the source file as it is
    paths = [
        x[len(prefix) :].strip("'") for x in verbose_stderr.splitlines() if x.startswith(prefix)
    ]
    return [path for path in paths if not path.endswith(".pyc")]


def test_every_module_of_the_boot_is_read_from_a_valid_pyc(built_root: RootImage) -> None:
    done = subprocess.run(
        ["chroot", str(built_root.root_dir), "/usr/bin/python3", "-B", "-v", "-c", BOOT_IMPORTS],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("# code object from ") > 200  # the imports were seen
    assert _compiled_from_source(done.stderr) == []


def test_a_module_without_its_pyc_is_found(tmp_path: Path) -> None:
    """Negative control of the test above: a module with no .pyc is listed."""
    (tmp_path / "fresh_module.py").write_text("VALUE = 1\n")
    done = subprocess.run(
        ["/usr/bin/python3", "-B", "-v", "-c", "import fresh_module"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert _compiled_from_source(done.stderr) == [str(tmp_path / "fresh_module.py")]


def test_the_squashfs_is_zstd_on_256_kib_blocks(built_root: RootImage) -> None:
    """The superblock (squashfs 4.0: block size at byte 12, compressor id at 20, zstd is 6):
    the root decompresses fast enough for the boot-time goal (rootfs.SQUASHFS_COMPRESSION)."""
    head = built_root.squashfs.read_bytes()[:96]
    assert head[:4] == b"hsqs"
    assert int.from_bytes(head[12:16], "little") == 256 * 1024
    assert int.from_bytes(head[20:22], "little") == 6


def test_console_scripts_run_on_the_roots_python(built_root: RootImage) -> None:
    root = built_root.root_dir
    for name in ("talos-init", "talos-luks", "talos-vip"):
        script = root / "usr/bin" / name
        assert script.read_text().startswith("#!/usr/bin/python3\n")
        done = subprocess.run(
            ["chroot", str(root), f"/usr/bin/{name}", "--version"], capture_output=True, text=True
        )
        assert done.returncode == 0, (name, done.stderr)
        assert done.stdout.startswith(name), done.stdout


def test_the_tools_talos_init_runs_are_there(built_root: RootImage) -> None:
    root = built_root.root_dir
    for tool in (
        "etcd",
        "etcdctl",
        "mkfs.xfs",
        "xfs_growfs",
        "mkfs.vfat",
        "sfdisk",
        "blkid",
        "partx",
        "modprobe",
    ):
        assert any((root / d / tool).exists() for d in ("usr/bin", "usr/sbin")), tool
    assert (root / "usr/lib/grub/i386-pc").is_dir()
    assert (root / "usr/lib/grub/x86_64-efi").is_dir()
    assert (root / "etc/ssl/certs/ca-certificates.crt").is_file()
    modules = layout.modules_dir(root, built_root.kernel_version)
    assert (modules / "modules.dep").is_file()
    assert list(modules.rglob("xfs.ko*")), "no xfs module"


def test_nothing_forbidden_is_left(built_root: RootImage) -> None:
    assert forbidden(built_root.root_dir) == []
    assert not (built_root.root_dir / "boot").exists()
    assert (built_root.root_dir / "etc/machine-id").read_text() == ""


def test_forbidden_finds_a_shell_and_a_package_manager(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/sh").symlink_to("dash")
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/apt-get").write_text("")
    (tmp_path / "usr/bin/python3").write_text("")
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "usr/share/doc").mkdir(parents=True)
    assert forbidden(tmp_path) == ["bin/sh", "usr/bin/apt-get", "usr/share/doc", "var/lib/dpkg"]


def test_resolv_conf_links_to_the_file_talos_init_writes(built_root: RootImage) -> None:
    link = built_root.root_dir / "etc/resolv.conf"
    assert link.is_symlink()
    assert str(link.readlink()) == RESOLV_CONF == "/system/resolved/resolv.conf"
    for name in ("vmlinuz", "initrd.img"):  # the kernel package's links into /boot
        assert not (built_root.root_dir / name).is_symlink(), name


def test_the_modules_a_node_needs_and_no_others(built_root: RootImage) -> None:
    modules = layout.modules_dir(built_root.root_dir, built_root.kernel_version)
    present = {p.relative_to(modules).as_posix() for p in modules.rglob("*.ko")}
    names = {p.rsplit("/", 1)[-1] for p in present}
    needed = {
        "sr_mod.ko",
        "isofs.ko",
        "ata_piix.ko",
        "ahci.ko",
        "nvme.ko",
        "virtio_blk.ko",
        "virtio_scsi.ko",
        "virtio_net.ko",
        "e1000e.ko",
        "igb.ko",
        "ixgbe.ko",
        "mlx5_core.ko",
        "bnxt_en.ko",
        "r8169.ko",
        "xfs.ko",
        "ext4.ko",
        "vfat.ko",
        "overlay.ko",
        "squashfs.ko",
        "loop.ko",
        "dm-crypt.ko",
        "bridge.ko",
        "br_netfilter.ko",
        "8021q.ko",
        "bonding.ko",
        "vxlan.ko",
        "nf_tables.ko",
        "ip_vs.ko",
        "wireguard.ko",
        "efivarfs.ko",
    }
    assert needed <= names, sorted(needed - names)
    for tree in (
        "kernel/sound",
        "kernel/drivers/gpu",
        "kernel/drivers/media",
        "kernel/net/wireless",
    ):
        assert not (modules / tree).exists(), tree
    assert not any(p.startswith("kernel/drivers/scsi/lpfc/") for p in present)
    # depmod ran on the pruned tree: it lists exactly the modules left, and all they need
    listed = {}
    for line in (modules / "modules.dep").read_text().splitlines():
        module, _, deps = line.partition(":")
        listed[module] = deps.split()
    assert set(listed) == present
    assert all(dep in present for deps in listed.values() for dep in deps)


def test_module_globs_and_the_kept_closure() -> None:
    assert module_glob("kernel/fs/xfs/xfs.ko", "kernel/fs/xfs/*")
    assert module_glob("kernel/drivers/scsi/sr_mod.ko", "kernel/drivers/scsi/*.ko")
    assert not module_glob("kernel/drivers/scsi/lpfc/lpfc.ko", "kernel/drivers/scsi/*.ko")
    assert not module_glob("kernel/fs/xfsx/a.ko", "kernel/fs/xfs/*")
    dep = (
        "kernel/fs/xfs/xfs.ko: kernel/drivers/misc/helper.ko\n"
        "kernel/drivers/misc/helper.ko:\n"
        "kernel/sound/core/snd.ko: kernel/drivers/base/soundcore.ko\n"
        "kernel/drivers/base/soundcore.ko:\n"
        "kernel/drivers/md/bcache/bcache.ko:\n"
    )
    assert kept_modules(dep) == {"kernel/fs/xfs/xfs.ko", "kernel/drivers/misc/helper.ko"}


def test_package_list_has_versions(built_root: RootImage) -> None:
    lines = built_root.packages.read_text().splitlines()
    assert lines == sorted(lines)
    versions = dict(line.split(" ", 1) for line in lines)
    for name in ("linux-image-amd64", "python3", "etcd-server", "libcryptsetup12"):
        assert versions.get(name), name
    image_copy = built_root.root_dir / "usr/share/talos-image" / layout.PACKAGES
    assert image_copy.read_text() == built_root.packages.read_text()


def test_version_manifest_and_os_release(built_root: RootImage) -> None:
    manifest = json.loads((built_root.root_dir / layout.VERSION_FILE).read_text())
    assert manifest["version"] == __version__
    assert len(manifest["commit"].removesuffix("-dirty")) == 40
    assert manifest["kernel"] == built_root.kernel_version
    assert manifest["packages"] == _sha256(built_root.packages)
    release = (built_root.root_dir / "etc/os-release").read_text()
    assert "ID=talos\n" in release
    assert f'VERSION="{__version__}"' in release


def test_kernel_is_debians(built_root: RootImage) -> None:
    head = built_root.kernel.read_bytes()[:0x210]
    assert head[0x202:0x206] == b"HdrS"  # the x86 boot protocol's header
    assert built_root.kernel_version.endswith("-amd64")


def test_two_builds_are_identical(built_root: RootImage, again_root: RootImage) -> None:
    """``just image-builds`` built the root twice, into other directories, from the same
    packages and commit."""
    assert again_root.squashfs.resolve() != built_root.squashfs.resolve()  # two builds, not one
    assert again_root.root_dir.resolve() != built_root.root_dir.resolve()
    assert _sha256(again_root.packages) == _sha256(built_root.packages)
    assert _sha256(again_root.kernel) == _sha256(built_root.kernel)
    assert _sha256(again_root.squashfs) == _sha256(built_root.squashfs)
