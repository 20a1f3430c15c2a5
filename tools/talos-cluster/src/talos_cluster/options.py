"""``create``'s options, checked once from the command line into a frozen :class:`CreateOptions`.

Each check raises before anything is made: a bad value is a :class:`~libtalos.errors.UsageError`
(exit 2) naming the flag; a file a flag names that cannot be used is a
:class:`~libtalos.errors.TalosError` (exit 1).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from libtalos.errors import TalosError, UsageError
from talos_cluster.plan import ClusterPlan, cluster_dir

Patch = tuple[Any, str]  # libtalos.patch.read_patch: the parsed patch and where it came from

# an image tag (what the version becomes: registry/component:vX.Y.Z)
_KUBERNETES_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z][0-9A-Za-z.-]*)?$")


@dataclass(frozen=True)
class CreateOptions:
    """What ``create`` was asked for, every value already checked."""

    plan: ClusterPlan
    state_root: Path  # absolute
    wait: bool
    timeout: float  # seconds (--wait-timeout)
    kubernetes_version: str | None
    inject: bool  # configs given to the nodes with talos-init --config
    apply: bool  # configs sent with apply-config over the API (--with-apply-config)
    kubeconfig: bool  # the admin kubeconfig written (not --skip-kubeconfig)
    talosconfig: Path  # where the cluster's context is merged
    stand_in: tuple[str, ...] | None  # --node-command, split
    controlplane_patches: tuple[Patch, ...]
    join_patches: tuple[Patch, ...]
    kube_path: Path | None  # the user's kubeconfig, merged once etcd is up (None: not merged)
    qemu: QemuOptions | None = None  # --provisioner qemu

    @property
    def provisioner(self) -> str:
        return "namespace" if self.qemu is None else "qemu"

    @property
    def cluster_dir(self) -> Path:
        return cluster_dir(self.state_root, self.plan.name)


@dataclass(frozen=True)
class QemuOptions:
    """What ``--provisioner qemu`` adds: how the VMs boot, what they install, their disks."""

    boot: Literal["iso", "pxe"]  # the ISO, or the kernel and initramfs over iPXE
    kernel: Path | None  # the kernel (pxe boot; also the accelerator probe's), absolute
    initrd: Path | None  # pxe boot
    iso: Path | None  # iso boot
    install_bundle: Path | None  # served by the cluster's HTTP server (None: install_url)
    install_url: str  # machine.install.image
    disk_mib: int
    with_bootloader: bool
    uefi: bool
    http_port: int
    cpus: tuple[int, int]  # vCPUs of a control plane, of a worker
    encrypt_state: bool = False  # machine.systemDiskEncryption.state, a nodeID key
    encrypt_ephemeral: bool = False  # machine.systemDiskEncryption.ephemeral, a nodeID key


def check_kubernetes_version(version: str | None) -> None:
    if version is not None and not (_KUBERNETES_VERSION.match(version) and len(version) <= 64):
        raise UsageError(
            f"--kubernetes-version: {version!r} is not a Kubernetes version (e.g. 1.20.4)"
        )


def check_delivery(skip_injecting_config: bool, with_apply_config: bool) -> None:
    if skip_injecting_config and with_apply_config:
        raise UsageError("--skip-injecting-config and --with-apply-config exclude each other")


def node_command_argv(command: str | None) -> tuple[str, ...] | None:
    """``--node-command`` split as a shell would; its program must exist."""
    if command is None:
        return None
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"--node-command: {command!r}: {exc}") from None
    if not argv:
        raise UsageError("--node-command: empty")
    if shutil.which(argv[0]) is None:
        raise UsageError(
            f"--node-command: {argv[0]!r} is not an executable file or a command on PATH"
        )
    return tuple(argv)


def check_path(path: Path, option: str, *, directory: bool) -> None:
    """``path`` is a directory (``directory``) or not one, or can be made: its nearest
    existing ancestor is a directory."""
    if path.is_symlink() or path.exists():
        if directory and not path.is_dir():
            raise UsageError(f"{option}: {path}: not a directory")
        if not directory and path.is_dir():
            raise UsageError(f"{option}: {path}: is a directory")
        return
    for parent in path.parents:
        if parent.is_symlink() or parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option}: {path}: {parent} is not a directory")
            return


def state_root(state_dir: Path | None) -> Path:
    """``--state-dir`` (default ~/.talos/clusters), absolute, checked."""
    from talos_cluster.state import default_state_dir

    root = (state_dir or default_state_dir()).absolute()
    check_path(root, "--state-dir", directory=True)
    return root


def talosconfig_path(talosconfig: str | None) -> Path:
    """``--talosconfig`` (default $TALOSCONFIG, ~/.talos/config), checked."""
    from libtalos import talosconfig as tc

    path = tc.default_path(talosconfig)
    check_path(path, "--talosconfig" if talosconfig else str(path), directory=False)
    return path


def read_patches(
    common: list[str] | None, controlplane: list[str] | None, worker: list[str] | None
) -> tuple[tuple[Patch, ...], tuple[Patch, ...]]:
    """The patches of the controlplane and the worker (join) config, read and parsed."""
    from libtalos.patch import read_patch

    every = tuple(read_patch(x) for x in common or [])
    return (
        every + tuple(read_patch(x) for x in controlplane or []),
        every + tuple(read_patch(x) for x in worker or []),
    )


def require_talos_apply() -> None:
    if importlib.util.find_spec("talos_apply") is None:
        raise TalosError(
            "--with-apply-config needs talos-apply (the machine API client), which is not "
            "installed",
            hint="leave the flag out: configs are then injected with --config",
        )


def check_talosconfig(path: Path) -> None:
    """A talosconfig the merge would fail on stops create up front."""
    from libtalos import talosconfig as tc

    tc.load(path)


def user_kubeconfig() -> Path:
    """The user's kubeconfig, checked: a file the merge would fail on stops create up front."""
    from talos_cluster import userkube

    path = userkube.default_path()
    userkube.check(path)
    return path
