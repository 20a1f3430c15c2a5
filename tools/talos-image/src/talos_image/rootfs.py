"""The read-only root filesystem of the image, built from Debian bookworm packages.

The build, in order:

1. wheels of the checkout's runtime packages (libtalos, talos-init, talos-luks, talos-vip) and
   binary wheels of their dependencies at the versions the workspace's venv pins;
2. mmdebstrap: Debian's essential set plus :data:`PACKAGES`, with downloaded .debs kept in a
   cache directory between builds (mmdebstrap's ``sync-in``/``sync-out`` hooks);
3. the wheels installed into Debian's ``/usr/lib/python3/dist-packages``, byte-compiled with
   hash-based pycs, and ``#!/usr/bin/python3`` console scripts in ``/usr/bin``;
4. the package list (from dpkg's database, read from outside), then everything a node must not
   carry is removed (:func:`forbidden` lists it: shells, apt/dpkg, perl, debconf, docs, ...),
   with what no process of the node reads (:data:`REMOVED_EXTRA`), and the kernel modules but
   those :func:`kept_modules` keeps (``depmod`` runs again); ``/etc/resolv.conf`` links to the
   file talos-init writes;
5. ``/etc/talos-image/version.json`` and ``/etc/os-release``, every mtime clamped to the epoch,
   and the squashfs made with fixed times and owners (zstd, 256 KiB blocks), so that
   two builds of the same packages and commit are identical byte for byte.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from libtalos.errors import TalosError
from talos_image import __version__, layout

MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
"""apt's sources for the root: Debian's own mirror, as Debian 12's ``debian.sources`` names it."""

PACKAGES = (
    "linux-image-amd64",  # the kernel (copied out of /boot) and its modules
    "python3",
    "libcryptsetup12",  # talos-luks's cffi binding
    "etcd-server",
    "etcd-client",  # etcdctl: talos-init's health check of etcd
    "xfsprogs",  # mkfs.xfs, xfs_growfs
    "dosfstools",  # mkfs.vfat (the EFI partition)
    "fdisk",  # sfdisk
    "kmod",  # modprobe
    "ca-certificates",
    "grub-pc-bin",  # GRUB's install files, for the installer
    "grub-efi-amd64-bin",
    # The kernel wants an initramfs tool; the image has its own initramfs: tiny-initramfs is
    # the one without udev, klibc or busybox.
    "tiny-initramfs",
)
"""Debian packages installed on top of the essential set (util-linux, in it, has blkid, partx)."""

RUNTIME_PROJECTS = ("libtalos", "tools/talos-init", "tools/talos-luks", "tools/talos-vip")
"""The checkout's packages a node runs (paths relative to the checkout)."""

CONSOLE_SCRIPTS = {
    "talos-init": "talos_init.cli",
    "talos-luks": "talos_luks.cli",
    "talos-vip": "talos_vip.cli",
}
"""``/usr/bin`` scripts: talos-init finds the others beside its interpreter (``/usr/bin``)."""

SITE_PACKAGES = Path("usr/lib/python3/dist-packages")

RESOLV_CONF = "/system/resolved/resolv.conf"
"""Where ``/etc/resolv.conf`` links: the resolver file talos-init writes on the ``/system`` tmpfs
(docs/talos-facts.md#network)."""

SHELLS = ("sh", "sh.distrib", "bash", "rbash", "dash", "ash", "busybox", "ksh", "mksh", "zsh")
FORBIDDEN_NAMES = (
    *SHELLS,
    "apt",
    "apt-*",
    "dpkg",
    "dpkg-*",
    "perl",
    "perl5*",
    "debconf*",
    "cc",
    "gcc*",
    "c++",
    "g++*",
    "cpp*",
    "clang*",
    "tcc",
    "sshd",
    "dropbear",
)
"""Program names (globs) that must not be in any of :data:`BIN_DIRS`."""

BIN_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin")

FORBIDDEN_PATHS = (
    "etc/apt",
    "etc/dpkg",
    "etc/debconf.conf",
    "etc/ssh",
    "usr/lib/apt",
    "usr/lib/dpkg",
    "usr/share/dpkg",
    "usr/share/debconf",
    "usr/share/perl5",
    "usr/share/perl",
    "usr/lib/x86_64-linux-gnu/perl-base",
    "usr/lib/x86_64-linux-gnu/perl",
    "usr/lib/x86_64-linux-gnu/perl5",
    "usr/share/man",
    "usr/share/doc",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/cache/debconf",
    "var/lib/apt",
    "var/lib/dpkg",
    "boot",
)
"""Files and directories that must not be in the root."""

REMOVED_CONTENTS = ("var/log", "var/cache", "var/tmp", "tmp", "run")
"""Directories kept, but emptied: what a build leaves there is not part of the image."""

REMOVED_EXTRA = (
    "etc/tiny-initramfs",  # the kernel's initramfs hooks: the image has its own initramfs
    "etc/kernel",
    "usr/share/bug",
    "usr/share/common-licenses",
    "usr/share/bash-completion",
    "usr/share/zsh",
    "usr/share/menu",
    "usr/share/gdb",
    "usr/share/python3/debian_defaults",
    "etc/python3",
    # xfs_scrub (the only user of ICU's 37 MB) is an online checker the node never runs
    "usr/sbin/xfs_scrub",
    "usr/sbin/xfs_scrub_all",
    "usr/lib/x86_64-linux-gnu/libicu*",
    "usr/lib/python3.11/pydoc_data",  # help() topics: no interactive interpreter on a node
    # Debian's sitecustomize installs apport's hook when apport is there (it is not): every
    # interpreter start would look for apport_python_hook along the whole path
    "etc/python3.11/sitecustomize.py",
    "usr/lib/python3.11/sitecustomize.py",
    # GRUB: the modules and grub-mkimage, grub-probe, grub-editenv stay for an installer;
    # Debian's prebuilt EFI images (for its signed and netboot packages), GRUB's font, ISO,
    # FUSE and test tools and its shell scripts (no shell) go
    "usr/lib/grub/x86_64-efi/monolithic",
    *(
        f"usr/bin/grub-{tool}"
        for tool in (
            "fstest",
            "glue-efi",
            "kbdcomp",
            "menulst2cfg",
            "mkfont",
            "mklayout",
            "mknetdir",
            "mkpasswd-pbkdf2",
            "mkrescue",
            "mkstandalone",
            "mount",
            "render-label",
            "script-check",
            "syslinux2cfg",
        )
    ),
    *(f"usr/sbin/grub-{tool}" for tool in ("macbless", "mkconfig", "mkdevicemap")),
    # the kernel package's links into /boot, which is not kept
    "vmlinuz",
    "vmlinuz.old",
    "initrd.img",
    "initrd.img.old",
)
"""Build-time leftovers that no process of the node reads (globs)."""

MODULES_KEPT = (
    # crypto (dm-crypt, IPsec, WireGuard, TLS), the libraries of the modules kept, the block layer
    "kernel/arch/x86/crypto/*",
    "kernel/arch/x86/kernel/*",  # cpuid, msr
    "kernel/crypto/*",
    "kernel/lib/*",
    "kernel/block/*",
    "kernel/mm/*",
    # filesystems: the system disk, EFI, the ISO, the root, containers
    "kernel/fs/xfs/*",
    "kernel/fs/ext4/*",
    "kernel/fs/jbd2/*",
    "kernel/fs/mbcache.ko",
    "kernel/fs/fat/*",
    "kernel/fs/nls/nls_ascii.ko",
    "kernel/fs/nls/nls_cp437.ko",
    "kernel/fs/nls/nls_iso8859-1.ko",
    "kernel/fs/nls/nls_utf8.ko",
    "kernel/fs/isofs/*",
    "kernel/fs/squashfs/*",
    "kernel/fs/overlayfs/*",
    "kernel/fs/fuse/*",
    "kernel/fs/efivarfs/*",
    "kernel/fs/configfs/*",
    "kernel/fs/binfmt_misc.ko",
    # disks and boot media
    "kernel/drivers/ata/*",
    "kernel/drivers/nvme/*",
    "kernel/drivers/block/*",
    "kernel/drivers/cdrom/*",
    "kernel/drivers/md/*",  # dm-crypt, RAID
    "kernel/drivers/scsi/*.ko",  # the SCSI core, sd, sr, sg, virtio, VMware, Hyper-V, SAS ...
    "kernel/drivers/scsi/aacraid/*",
    "kernel/drivers/scsi/device_handler/*",
    "kernel/drivers/scsi/megaraid/*",
    "kernel/drivers/scsi/mpi3mr/*",
    "kernel/drivers/scsi/mpt3sas/*",
    "kernel/drivers/scsi/smartpqi/*",
    "kernel/drivers/mmc/*",
    "kernel/drivers/usb/common/*",
    "kernel/drivers/usb/core/*",
    "kernel/drivers/usb/host/*",
    "kernel/drivers/usb/storage/*",
    "kernel/drivers/hid/hid.ko",
    "kernel/drivers/hid/hid-generic.ko",
    "kernel/drivers/hid/usbhid/*",
    "kernel/drivers/input/evdev.ko",
    # virtual machines and clouds
    "kernel/drivers/virtio/*",
    "kernel/drivers/hv/*",
    "kernel/drivers/xen/*",
    "kernel/drivers/firmware/*",  # qemu_fw_cfg, EFI, DMI
    # the platform: ACPI, power, watchdogs, TPM, entropy, IPMI, ECC reports
    "kernel/drivers/acpi/*",
    "kernel/drivers/cpufreq/*",
    "kernel/drivers/thermal/*",
    "kernel/drivers/watchdog/*",
    "kernel/drivers/edac/*",
    "kernel/drivers/pci/*",
    "kernel/drivers/char/hw_random/*",
    "kernel/drivers/char/ipmi/*",
    "kernel/drivers/char/tpm/*",
    # network interfaces: virtual ones and the Ethernet NICs of servers and clouds
    "kernel/drivers/net/*.ko",  # virtio_net, veth, tun, macvlan, vrf, dummy, geneve, ...
    "kernel/drivers/net/bonding/*",
    "kernel/drivers/net/team/*",
    "kernel/drivers/net/vxlan/*",
    "kernel/drivers/net/ipvlan/*",
    "kernel/drivers/net/wireguard/*",
    "kernel/drivers/net/hyperv/*",
    "kernel/drivers/net/vmxnet3/*",
    "kernel/drivers/net/usb/*",
    *(
        f"kernel/drivers/net/ethernet/{vendor}/*"
        for vendor in (
            "amazon",
            "amd",
            "aquantia",
            "broadcom",
            "chelsio",
            "cisco",
            "emulex",
            "google",
            "huawei",
            "intel",
            "marvell",
            "mellanox",
            "microsoft",
            "qlogic",
            "realtek",
            "sfc",
        )
    ),
    # the network stack: netfilter, bridges, VLANs, tunnels, traffic control, IPsec, SCTP, vsock
    "kernel/net/*",
)
"""Kernel modules kept in the root (:func:`module_glob` patterns relative to
``/lib/modules/VERSION``), with every
module they depend on: what a server node may need for its disks, boot media, NICs,
filesystems and networking. The others (sound, GPUs, cameras, radios, Bluetooth, InfiniBand,
Fibre Channel, staging, exotic filesystems, ...) are dropped."""

MODULES_DROPPED = (
    "kernel/drivers/md/bcache/*",
    "kernel/drivers/block/drbd/*",
    "kernel/drivers/nvme/target/*",  # the node is an NVMe-oF initiator at most
    "kernel/drivers/net/usb/cdc-phonet.ko",  # USB modems (radios)
    "kernel/drivers/net/usb/hso.ko",
    "kernel/lib/test_*.ko",
    "kernel/drivers/net/ethernet/mellanox/mlx4/*",
    *(
        f"kernel/net/{proto}/*"
        for proto in (
            "6lowpan",
            "9p",
            "appletalk",
            "atm",
            "ax25",
            "batman-adv",
            "bluetooth",
            "can",
            "ceph",
            "dccp",
            "ieee802154",
            "kcm",
            "l2tp",
            "lapb",
            "mac80211",
            "mac802154",
            "netrom",
            "nfc",
            "phonet",
            "qrtr",
            "rds",
            "rfkill",
            "rose",
            "rxrpc",
            "smc",
            "sunrpc",
            "tipc",
            "wireless",
        )
    ),
)
"""Trees inside :data:`MODULES_KEPT` that are dropped all the same (unless a kept module
depends on them)."""


SQUASHFS_COMPRESSION = ("-comp", "zstd", "-Xcompression-level", "19", "-b", "256K")
"""zstd at level 19 on 256 KiB blocks. Every file talos-init reads at boot is decompressed then
(the interpreter, its libraries, the .pyc files, the modules it loads), and zstd decompresses
several times faster than xz: under TCG, talos-init's first console line comes about 2.8 s
sooner after the root is mounted than with xz (x86 filter, same blocks), for a squashfs 12 %
larger (81.6 MB against 72.6 MB; the ISO stays under 100 MB). Larger blocks pack better but
every read that misses the cache then decompresses the whole block (1 MiB made talos-init's
start under TCG 13-15 s slower with xz)."""


@dataclass(frozen=True)
class RootImage:
    """What :func:`build` made: the squashfs, the kernel, the package list and the tree."""

    squashfs: Path
    kernel: Path
    packages: Path
    root_dir: Path
    kernel_version: str


class BuildError(TalosError):
    """A step of the image build failed (its command and the end of its output are given)."""


Log = Callable[[str], None]


_START = time.monotonic()


def _stderr(message: str) -> None:
    sys.stderr.write(f"talos-image: [{time.monotonic() - _START:6.1f}s] {message}\n")
    sys.stderr.flush()


def checkout() -> Path:
    """The source checkout: the directory holding ``libtalos/`` and ``tools/`` above this file."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "libtalos" / "pyproject.toml").is_file() and (parent / "tools").is_dir():
            return parent
    raise BuildError(
        "cannot find the source checkout (libtalos/pyproject.toml) above talos_image",
        hint="install talos-image editable from the checkout: bash scripts/setup",
    )


def default_epoch(source: Path | None = None) -> int:
    """The commit time of the checkout's HEAD (SOURCE_DATE_EPOCH when none is given)."""
    out = _run(["git", "log", "-1", "--format=%ct"], cwd=source or checkout())
    return int(out.strip())


def commit_id(source: Path) -> str:
    """HEAD's commit id, with ``-dirty`` when the work tree has changes."""
    head = _run(["git", "rev-parse", "HEAD"], cwd=source).strip()
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source)
    return f"{head}-dirty" if status.strip() else head


def _run(
    argv: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    log: Log | None = None,
) -> str:
    if log is not None:
        log(" ".join(str(a) for a in argv[:3]) + (" ..." if len(argv) > 3 else ""))
    try:
        done = subprocess.run(
            [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise BuildError(
            f"{argv[0]} is not installed", hint="install the build's packages: bash scripts/setup"
        ) from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise BuildError(f"{argv[0]} exited {done.returncode}:\n{tail}")
    return done.stdout


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def forbidden(root: Path) -> list[str]:
    """What of the forbidden set (shells, package managers, perl, debconf, compilers, sshd,
    docs, man pages, locales, /boot) is in the tree at ``root``, as sorted relative paths."""
    found: set[str] = set()
    for bindir in BIN_DIRS:
        directory = root / bindir
        if directory.is_symlink() or not directory.is_dir():
            continue  # /bin -> usr/bin: checked as usr/bin
        for name in os.listdir(directory):  # not Path.glob: it misses dangling symlinks
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in FORBIDDEN_NAMES):
                found.add(f"{bindir}/{name}")
    for rel in FORBIDDEN_PATHS:
        if os.path.lexists(root / rel):
            found.add(rel)
    return sorted(found)


def build_wheels(source: Path, wheels: Path, *, log: Log = _stderr) -> list[Path]:
    """Wheels of :data:`RUNTIME_PROJECTS` and of their dependencies (binary wheels, at the
    versions of the workspace's venv) into ``wheels``; returns them sorted."""
    if wheels.exists():
        shutil.rmtree(wheels)
    project = wheels / "project"
    project.mkdir(parents=True)
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    log("building the checkout's wheels")
    projects = [source / p for p in RUNTIME_PROJECTS]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", project, *projects], cwd=source)
    built = sorted(project.glob("*.whl"))
    names = {w.name.split("-")[0].replace("_", "-").lower() for w in built}
    pins = []
    for line in _run([*pip, "freeze", "--exclude-editable"]).splitlines():
        name = line.split("==")[0].replace("_", "-").lower()
        if line and not line.startswith(("#", "-e")) and name not in names:
            pins.append(line)
    constraints = wheels / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    log("downloading the dependencies' wheels")
    _run(
        [*pip, "download", "--only-binary=:all:", "-c", constraints, "-d", wheels / "deps", *built],
        cwd=source,
    )
    deps = [w for w in (wheels / "deps").glob("*.whl") if w.name not in {b.name for b in built}]
    return built + sorted(deps)


def _mmdebstrap(root: Path, cache: Path, epoch: int, *, log: Log) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "SOURCE_DATE_EPOCH": str(epoch),
        "LC_ALL": "C.UTF-8",
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
    }
    argv = [
        "mmdebstrap",
        "--quiet",
        "--mode=root",
        "--variant=essential",
        "--format=directory",
        "--include=" + ",".join(PACKAGES),
        "--aptopt=APT::Install-Recommends false",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        # merged /usr made by mmdebstrap's hook (with usr-is-merged), not by usrmerge (perl)
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        "--skip=essential/unlink",
        '--setup-hook=mkdir -p "$1/var/cache/apt/archives"',
        f"--setup-hook=sync-in {cache} /var/cache/apt/archives",
        f"--customize-hook=sync-out /var/cache/apt/archives {cache}",
        layout.SUITE,
        str(root),
        *MIRRORS,
    ]
    log(f"mmdebstrap {layout.SUITE} into {root} (cache {cache})")
    _run(argv, env=env)
    for stale in cache.glob("partial"):
        _remove(stale)
    (cache / "lock").unlink(missing_ok=True)


def _install_wheels(root: Path, wheels: Iterable[Path], *, log: Log) -> None:
    site = root / SITE_PACKAGES
    site.mkdir(parents=True, exist_ok=True)
    log(f"installing the wheels into /{SITE_PACKAGES}")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--disable-pip-version-check",
            "-q",
            "install",
            "--no-deps",
            "--no-compile",
            "--no-index",
            "--upgrade",
            "--target",
            site,
            *wheels,
        ]
    )
    _remove(site / "bin")  # pip's scripts name the venv's interpreter: ours are written below
    for direct_url in site.glob("*.dist-info/direct_url.json"):
        # the wheel's path on the build machine: not part of the image, nor in its RECORD
        direct_url.unlink()
        record = direct_url.with_name("RECORD")
        line = f"{direct_url.parent.name}/{direct_url.name},"
        kept = [x for x in record.read_text().splitlines(True) if not x.startswith(line)]
        record.write_text("".join(kept))
    for name, module in CONSOLE_SCRIPTS.items():
        script = root / "usr" / "bin" / name
        script.write_text(
            "#!/usr/bin/python3\nimport sys\n\n"
            f"from {module} import console\n\nsys.exit(console())\n"
        )
        script.chmod(0o755)


def _compile(root: Path, *, log: Log) -> None:
    """Hash-based pycs (no source timestamps) for Debian's Python and the project, made with
    the build machine's /usr/bin/python3 (Debian 12's: the same 3.11 as the root's)."""
    for cache in sorted(root.glob("usr/lib/python3*/**/__pycache__")):
        shutil.rmtree(cache)
    log("byte-compiling")
    dirs = [d for d in sorted(root.glob("usr/lib/python3*")) if d.is_dir()]
    _run(
        [
            "/usr/bin/python3",
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            root,
            "-p",
            "/",
            *dirs,
        ],
        # frozenset constants are marshalled in hash order: string hashes must not be random
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


def _package_list(root: Path) -> str:
    out = _run(
        [
            "dpkg-query",
            f"--admindir={root / 'var/lib/dpkg'}",
            "-W",
            "-f=${db:Status-Abbrev}${Package} ${Version}\n",
        ]
    )
    lines = sorted(line[3:].strip() for line in out.splitlines() if line.startswith("ii "))
    return "".join(f"{line}\n" for line in lines)


def _kernel_version(root: Path) -> str:
    versions = sorted(p.name for p in (root / "lib" / "modules").iterdir() if p.is_dir())
    if len(versions) != 1:
        raise BuildError(f"expected one kernel in /lib/modules, found {versions}")
    return versions[0]


def module_glob(path: str, pattern: str) -> bool:
    """Whether ``path`` matches ``pattern``: ``*`` stays inside one path component, except a
    last component ``*``, which matches a whole tree (``kernel/fs/xfs/*``)."""
    if pattern.endswith("/*"):
        return path.startswith(pattern[:-1])
    parts, globs = path.split("/"), pattern.split("/")
    return len(parts) == len(globs) and all(map(fnmatch.fnmatchcase, parts, globs))


def kept_modules(modules_dep: str) -> set[str]:
    """The modules (paths as ``modules.dep`` names them) that :data:`MODULES_KEPT` and
    :data:`MODULES_DROPPED` keep, with everything they depend on."""
    deps: dict[str, list[str]] = {}
    for line in modules_dep.splitlines():
        module, sep, rest = line.partition(":")
        if sep:
            deps[module] = rest.split()

    def matches(path: str, patterns: Iterable[str]) -> bool:
        return any(module_glob(path, pattern) for pattern in patterns)

    wanted = [m for m in deps if matches(m, MODULES_KEPT) and not matches(m, MODULES_DROPPED)]
    kept: set[str] = set()
    while wanted:
        module = wanted.pop()
        if module not in kept:
            kept.add(module)
            wanted.extend(deps.get(module, []))
    return kept


def _prune_modules(root: Path, version: str) -> None:
    """Remove the modules :func:`kept_modules` does not keep, then run ``depmod`` (the build
    machine's, on the root's tree: ``-b``) for what is left."""
    modules = layout.modules_dir(root, version)
    kept = kept_modules((modules / "modules.dep").read_text())
    tree = modules / "kernel"
    for dirpath, _, filenames in os.walk(tree, topdown=False):
        for name in filenames:
            path = Path(dirpath, name)
            if path.relative_to(modules).as_posix() not in kept:
                path.unlink()
        if not os.listdir(dirpath):
            os.rmdir(dirpath)
    _run(["depmod", "-b", root, version])


def _strip(root: Path) -> None:
    for rel in forbidden(root):
        _remove(root / rel)
    for pattern in REMOVED_EXTRA:
        # Path.glob misses dangling symlinks (/vmlinuz -> boot/...): plain names are looked up
        paths = root.glob(pattern) if any(c in pattern for c in "*?[") else [root / pattern]
        for path in paths:
            _remove(path)
    for rel in REMOVED_CONTENTS:
        directory = root / rel
        if directory.is_dir() and not directory.is_symlink():
            for child in directory.iterdir():
                _remove(child)
    for pattern in ("etc/*-", "etc/.pwd.lock", "etc/ld.so.cache~", "usr/sbin/policy-rc.d"):
        for path in root.glob(pattern):
            _remove(path)
    (root / "etc" / "machine-id").write_text("")  # made on the node at first boot
    for name in ("etc/hostname", "etc/resolv.conf", "etc/mtab"):
        path = root / name
        if path.is_symlink() or path.exists():
            path.unlink()
    # talos-init writes the resolvers under /system, a tmpfs (talos_init.network.RESOLV_CONF)
    (root / "etc" / "resolv.conf").symlink_to(RESOLV_CONF)


def _write_identity(root: Path, *, commit: str, kernel: str, packages: str) -> None:
    manifest = {
        "version": __version__,
        "commit": commit,
        "kernel": kernel,
        "packages": hashlib.sha256(packages.encode()).hexdigest(),
    }
    target = root / layout.VERSION_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (root / "usr" / "share" / "talos-image").mkdir(parents=True, exist_ok=True)
    (root / "usr" / "share" / "talos-image" / layout.PACKAGES).write_text(packages)
    release = root / "etc" / "os-release"
    if release.is_symlink():
        release.unlink()
    release.write_text(
        'NAME="Talos (talos-tools)"\n'
        "ID=talos\n"
        f'VERSION="{__version__}"\n'
        f"VERSION_ID={__version__}\n"
        f'PRETTY_NAME="Talos (talos-tools) {__version__}"\n'
        f'BUILD_ID="{commit}"\n'
        "ID_LIKE=debian\n"
        'HOME_URL="https://www.talos.dev/"\n'
    )


def clamp_mtimes(root: Path, epoch: int) -> None:
    """Set every mtime later than ``epoch`` to ``epoch`` (symlinks themselves included)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames, "."):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_mtime > epoch:
                os.utime(path, (epoch, epoch), follow_symlinks=False)


def _mksquashfs(root: Path, target: Path, epoch: int, *, log: Log) -> None:
    target.unlink(missing_ok=True)
    log(f"mksquashfs into {target}")
    _run(
        [
            "mksquashfs",
            root,
            target,
            "-noappend",
            "-quiet",
            "-no-progress",
            *SQUASHFS_COMPRESSION,
            "-all-root",
            "-no-xattrs",
            "-reproducible",
            "-mkfs-time",
            str(epoch),
            "-all-time",
            str(epoch),
        ]
    )


def load(out: Path, work: Path) -> RootImage:
    """The :class:`RootImage` an earlier :func:`build` left in ``out`` and ``work``."""
    root = layout.root_dir(work).absolute()
    image = RootImage(
        squashfs=layout.rootfs(out),
        kernel=layout.kernel(out),
        packages=layout.packages(out),
        root_dir=root,
        kernel_version=_kernel_version(root),
    )
    for path in (image.squashfs, image.kernel, image.packages):
        if not path.is_file():
            raise BuildError(f"{path} is missing", hint="build it: talos-image rootfs")
    return image


def build(
    out: Path,
    work: Path,
    *,
    epoch: int,
    cache: Path | None = None,
    source: Path | None = None,
    log: Log = _stderr,
) -> RootImage:
    """Build the root: ``rootfs-amd64.sqsh``, ``vmlinuz-amd64`` and ``packages-amd64.txt`` in
    ``out``, the unpacked tree in ``work/root``; .debs are cached in ``cache``
    (``work/cache/debs`` by default)."""
    if os.geteuid() != 0:
        raise BuildError("building the image needs root (mmdebstrap's root mode, chroot)")
    source = source or checkout()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    wheels = build_wheels(source, work / layout.WHEELS_DIR, log=log)
    root = layout.root_dir(work).absolute()
    if root.exists():
        shutil.rmtree(root)
    _mmdebstrap(root, (cache or layout.deb_cache(work)).absolute(), epoch, log=log)
    _install_wheels(root, wheels, log=log)
    _compile(root, log=log)
    packages_text = _package_list(root)
    kernel_version = _kernel_version(root)
    kernel = layout.kernel(out)
    shutil.copyfile(root / "boot" / f"vmlinuz-{kernel_version}", kernel)
    os.utime(kernel, (epoch, epoch))
    packages = layout.packages(out)
    packages.write_text(packages_text)
    _prune_modules(root, kernel_version)
    _strip(root)
    _write_identity(root, commit=commit_id(source), kernel=kernel_version, packages=packages_text)
    left = forbidden(root)
    if left:
        raise BuildError(f"the root still holds {', '.join(left)}")
    (root / "system").mkdir(mode=0o755, exist_ok=True)  # the initramfs mounts tmpfs here
    clamp_mtimes(root, epoch)
    squashfs = layout.rootfs(out)
    _mksquashfs(root, squashfs, epoch, log=log)
    return RootImage(
        squashfs=squashfs,
        kernel=kernel,
        packages=packages,
        root_dir=root,
        kernel_version=kernel_version,
    )
