"""``--provisioner qemu``'s flags, checked before anything is made: the boot medium, the installer
bundle, the disk size; the tools the VMs need. A bad value is a usage error (exit 2) naming the
flag; a missing file or tool is exit 1 with what to install or build."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from libtalos.errors import TalosError, UsageError
from talos_cluster.options import QemuOptions
from talos_cluster.plan import ClusterPlan
from talos_cluster.qemu import network, vm

ASSETS = Path("_out")  # talos-image's default output directory
KERNEL = "vmlinuz-amd64"
INITRD = "initramfs-amd64.xz"
BUNDLE = "installer-amd64.tar"
MIN_DISK_MIB = 1024  # Talos's partition layout takes about 600 MiB before EPHEMERAL
MAX_DISK_MIB = 1 << 24  # 16 TiB
INSTALL_DISK = "/dev/vda"
BUILD_HINT = {
    KERNEL: "talos-image rootfs -o _out",
    INITRD: "talos-image pxe -o _out",
    BUNDLE: "talos-image installer -o _out",
}


def _asset(given: Path | None, default: str, option: str) -> Path:
    path = (given if given is not None else ASSETS / default).absolute()
    if not path.is_file():
        raise TalosError(
            f"{option}: {path}: no such file",
            hint=f"build it with `{BUILD_HINT[default]}`, or name one with {option}",
        )
    return path


def missing_tools(uefi: bool) -> str | None:
    for tool, package in ((vm.QEMU, "qemu-system-x86"), (network.DNSMASQ, "dnsmasq-base")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package})"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing (the VMs' taps need it)"
    if uefi and not (vm.OVMF_CODE.is_file() and vm.OVMF_VARS.is_file()):
        return f"{vm.OVMF_CODE} is missing (Debian package ovmf)"
    return None


def make(
    plan: ClusterPlan,
    *,
    iso_path: Path | None,
    vmlinuz_path: Path | None,
    initrd_path: Path | None,
    install_image: str | None,
    disk_mib: int,
    with_bootloader: bool,
    uefi: bool,
    cpus: float,
    cpus_workers: float,
    isolated: bool,
    stand_in: bool,
    encrypt_state: bool = False,
    encrypt_ephemeral: bool = False,
) -> QemuOptions:
    if isolated:
        raise UsageError("--isolated: the qemu provisioner's bridge is in this network namespace")
    if stand_in:
        raise UsageError("--node-command: only for the namespace provisioner")
    if not MIN_DISK_MIB <= disk_mib <= MAX_DISK_MIB:
        raise UsageError(f"--disk: {disk_mib}: must be from {MIN_DISK_MIB} to {MAX_DISK_MIB} MiB")
    if iso_path is not None and initrd_path is not None:
        raise UsageError("--iso-path excludes --initrd-path (the ISO carries its initramfs)")
    reason = missing_tools(uefi)
    if reason is not None:
        raise TalosError(f"--provisioner qemu: {reason}")
    if iso_path is not None:
        iso = iso_path.absolute()
        if not iso.is_file():
            raise TalosError(f"--iso-path: {iso}: no such file")
        # the kernel is then only the accelerator probe's (the ISO's own is booted)
        kernel = (vmlinuz_path or ASSETS / KERNEL).absolute()
        boot_kernel, initrd = (kernel if kernel.is_file() else None), None
    else:
        iso = None
        boot_kernel = _asset(vmlinuz_path, KERNEL, "--vmlinuz-path")
        initrd = _asset(initrd_path, INITRD, "--initrd-path")
    port = network.free_port()
    if install_image is not None and install_image.startswith(("http://", "https://")):
        bundle, url = None, install_image
    else:
        bundle = _asset(Path(install_image) if install_image else None, BUNDLE, "--install-image")
        url = f"http://{plan.gateway}:{port}/{BUNDLE}"
    return QemuOptions(
        boot="iso" if iso is not None else "pxe",
        kernel=boot_kernel,
        initrd=initrd,
        iso=iso,
        install_bundle=bundle,
        install_url=url,
        disk_mib=disk_mib,
        with_bootloader=with_bootloader,
        uefi=uefi,
        http_port=port,
        cpus=(vm.smp(cpus), vm.smp(cpus_workers)),
        encrypt_state=encrypt_state,
        encrypt_ephemeral=encrypt_ephemeral,
    )


NODEID_KEY: dict[str, Any] = {"provider": "luks2", "keys": [{"nodeID": {}, "slot": 0}]}
"""An encrypted system volume as ``--encrypt-state``/``--encrypt-ephemeral`` ask for it (Talos's
default key type for them): LUKS2 with one key derived from the node's ID (the VM's SMBIOS UUID,
stable for the cluster's name and the node's), so it opens on every boot with no secret kept."""


def install_patch(q: QemuOptions) -> tuple[Any, str]:
    """The configs' ``machine.install``: the VM's disk, the bundle from the gateway, GRUB (or not,
    ``--with-bootloader=false``); ``machine.systemDiskEncryption`` for ``--encrypt-state`` and
    ``--encrypt-ephemeral``; applied before the user's patches."""
    install = {"disk": INSTALL_DISK, "image": q.install_url, "bootloader": q.with_bootloader}
    machine: dict[str, Any] = {"install": install}
    what = "machine.install"
    encryption = {
        volume: NODEID_KEY
        for volume, wanted in (("state", q.encrypt_state), ("ephemeral", q.encrypt_ephemeral))
        if wanted
    }
    if encryption:
        machine["systemDiskEncryption"] = encryption
        what += ", machine.systemDiskEncryption"
    return ({"machine": machine}, f"--provisioner qemu ({what})")
