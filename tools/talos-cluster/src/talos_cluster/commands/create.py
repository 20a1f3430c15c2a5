"""``talos-cluster create`` (``talosctl cluster create``): a local cluster in namespaces.

This module checks the command line once into a frozen
:class:`~talos_cluster.options.CreateOptions`; the named steps of :mod:`talos_cluster.pipeline`
do the rest, each announced on stderr: secrets and configs generated; the talosconfig context
merged, the configs and the admin kubeconfig written; the cluster's bridge (in this network
namespace, or with ``--isolated`` in a private one of its own); per node a network namespace, a
veth pair to the bridge, STATE/EPHEMERAL directories, cgroup limits, and talos-init as PID 1 of
new PID/mount/UTS namespaces with its config injected (``--config``), or none
(``--skip-injecting-config``: the node waits in maintenance mode); the nodes awaited
(``--wait``) and bootstrapped; the admin kubeconfig merged into the user's; a status table on
stdout. Every resource is recorded in the cluster's state file before it is made, so
``destroy`` removes exactly what was made, also when create is interrupted.

Every flag is checked, and the secrets and configs generated (patches applied), before anything
is made: a bad value is a usage error (exit 2) naming the flag, with nothing to undo; so is a
``--cidr`` that overlaps an address or route of this namespace or another cluster of the state
directory (the clash is named). A failure
once creation has started (a node that exits, a wait that times out, a failed bootstrap, an
unexpected error) removes what was made: the nodes, namespaces, cgroups, the state directory
and the directories create made above it, and the talosconfig as it was before the merge. Only
Ctrl-C keeps what was made, recorded for ``destroy``; a kubeconfig that cannot be merged once
the cluster is up leaves the cluster up.

``--provisioner qemu`` (the namespace provisioner is the default) checks its own flags into a
:class:`~talos_cluster.options.QemuOptions` and runs the steps of
:mod:`talos_cluster.qemu.provision` instead: VMs that boot the image, install to their disks
and reboot from them. Its flags given to the namespace provisioner are usage errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from libtalos.errors import UsageError
from talos_cluster import options as opt
from talos_cluster import plan as planmod

PROVISIONERS = ("namespace", "qemu")
DEFAULT_DISK_MIB = 6144


def create(
    provisioner: Annotated[
        str,
        typer.Option(
            help="namespace (the default: talos-init nodes in namespaces) or qemu (VMs that "
            "boot the Talos image and install to a virtual disk)"
        ),
    ] = "namespace",
    name: Annotated[str, typer.Option(help="the cluster's name")] = planmod.DEFAULT_NAME,
    masters: Annotated[
        int, typer.Option("--masters", "--controlplanes", help="control-plane nodes")
    ] = 1,
    workers: Annotated[int, typer.Option(help="worker nodes")] = 1,
    cidr: Annotated[str, typer.Option(help="the cluster's network")] = planmod.DEFAULT_CIDR,
    wait: Annotated[bool, typer.Option(help="wait until every node is up")] = True,
    wait_timeout: Annotated[
        str, typer.Option(help="bound on --wait (Go duration or seconds)")
    ] = "20m",
    kubernetes_version: Annotated[
        str | None, typer.Option(help="Kubernetes version of the control-plane images")
    ] = None,
    skip_injecting_config: Annotated[
        bool,
        typer.Option(
            "--skip-injecting-config", help="start the nodes without a config (maintenance mode)"
        ),
    ] = False,
    with_apply_config: Annotated[
        bool,
        typer.Option("--with-apply-config", help="deliver configs with apply-config over the API"),
    ] = False,
    skip_kubeconfig: Annotated[
        bool,
        typer.Option(
            "--skip-kubeconfig",
            help="do not merge the admin kubeconfig into $KUBECONFIG or ~/.kube/config",
        ),
    ] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="where clusters keep their state (default ~/.talos/clusters)"),
    ] = None,
    talosconfig: Annotated[
        str | None,
        typer.Option(
            help="talosconfig to merge the context into (default $TALOSCONFIG, ~/.talos/config)"
        ),
    ] = None,
    cpus: Annotated[float, typer.Option(help="CPUs per control-plane node")] = 2.0,
    cpus_workers: Annotated[float, typer.Option(help="CPUs per worker node")] = 1.0,
    memory: Annotated[int, typer.Option(help="memory per control-plane node, MiB")] = 2048,
    memory_workers: Annotated[int, typer.Option(help="memory per worker node, MiB")] = 1024,
    config_patch: Annotated[
        list[str] | None,
        typer.Option(help="patch for every config: RFC 6902 list or YAML mapping; @FILE reads one"),
    ] = None,
    config_patch_control_plane: Annotated[
        list[str] | None, typer.Option(help="patch for the control-plane config")
    ] = None,
    config_patch_worker: Annotated[
        list[str] | None, typer.Option(help="patch for the worker config")
    ] = None,
    isolated: Annotated[
        bool,
        typer.Option(
            "--isolated",
            help="put the bridge in a private network namespace named after the cluster "
            "(reach the nodes with 'ip netns exec NAME'), not in this one",
        ),
    ] = False,
    iso_path: Annotated[
        Path | None, typer.Option(help="qemu: boot the VMs from this ISO (configs over the API)")
    ] = None,
    vmlinuz_path: Annotated[
        Path | None,
        typer.Option(help="qemu: the kernel booted over iPXE (default _out/vmlinuz-amd64)"),
    ] = None,
    initrd_path: Annotated[
        Path | None,
        typer.Option(help="qemu: the initramfs booted over iPXE (default _out/initramfs-amd64.xz)"),
    ] = None,
    install_image: Annotated[
        str | None,
        typer.Option(
            help="qemu: the installer bundle the nodes install from, a file served on the "
            "gateway or an http(s) URL (default _out/installer-amd64.tar)"
        ),
    ] = None,
    disk: Annotated[int, typer.Option(help="qemu: each VM's sparse disk, MiB")] = DEFAULT_DISK_MIB,
    with_bootloader: Annotated[
        bool,
        typer.Option(
            "--with-bootloader/--without-bootloader",
            help="qemu: install GRUB and boot from the disk (else the medium every boot)",
        ),
    ] = True,
    with_uefi: Annotated[
        bool, typer.Option("--with-uefi", help="qemu: UEFI firmware (OVMF), else SeaBIOS")
    ] = False,
    encrypt_state: Annotated[
        bool,
        typer.Option(
            "--encrypt-state", help="qemu: STATE is LUKS2, keyed by the node's ID (nodeID)"
        ),
    ] = False,
    encrypt_ephemeral: Annotated[
        bool,
        typer.Option(
            "--encrypt-ephemeral", help="qemu: EPHEMERAL is LUKS2, keyed by the node's ID (nodeID)"
        ),
    ] = False,
    node_command: Annotated[
        str | None,
        typer.Option(
            hidden=True,
            help="stand-in PID 1 (tests of the launcher); up once it prints a line 'ready'",
        ),
    ] = None,
) -> int:
    """Create a local cluster on a bridge in this network namespace: talos-init nodes in
    namespaces (``--isolated``: the bridge in a private one), or with ``--provisioner qemu``
    VMs that install the Talos image to their disks."""
    if provisioner not in PROVISIONERS:
        raise UsageError(f"--provisioner: {provisioner!r} is not namespace or qemu")
    # 1. the command line itself (exit 2 on a bad value, nothing read or made yet)
    p = planmod.make_plan(
        name=name,
        cidr=cidr,
        masters=masters,
        workers=workers,
        cpus=cpus,
        memory_mib=memory,
        cpus_workers=cpus_workers,
        memory_workers_mib=memory_workers,
        layout="isolated" if isolated else "shared",
    )
    timeout = planmod.parse_duration(wait_timeout, "--wait-timeout")
    opt.check_kubernetes_version(kubernetes_version)
    opt.check_delivery(skip_injecting_config, with_apply_config)
    stand_in = opt.node_command_argv(node_command)
    state_root = opt.state_root(state_dir)
    tc_path = opt.talosconfig_path(talosconfig)
    # 2. what the flags name (exit 1 on a file that cannot be used), still nothing made
    cp_patches, join_patches = opt.read_patches(
        config_patch, config_patch_control_plane, config_patch_worker
    )
    qemu = None
    inject = not skip_injecting_config and not with_apply_config
    if provisioner != "qemu":
        given = {
            "--iso-path": iso_path is not None,
            "--vmlinuz-path": vmlinuz_path is not None,
            "--initrd-path": initrd_path is not None,
            "--install-image": install_image is not None,
            "--disk": disk != DEFAULT_DISK_MIB,
            "--without-bootloader": not with_bootloader,
            "--with-uefi": with_uefi,
            "--encrypt-state": encrypt_state,
            "--encrypt-ephemeral": encrypt_ephemeral,
        }
        for flag, used in given.items():
            if used:
                raise UsageError(f"{flag}: only with --provisioner qemu")
    else:
        from talos_cluster.qemu import options as qopt

        qemu = qopt.make(
            p,
            iso_path=iso_path,
            vmlinuz_path=vmlinuz_path,
            initrd_path=initrd_path,
            install_image=install_image,
            disk_mib=disk,
            with_bootloader=with_bootloader,
            uefi=with_uefi,
            encrypt_state=encrypt_state,
            encrypt_ephemeral=encrypt_ephemeral,
            cpus=cpus,
            cpus_workers=cpus_workers,
            isolated=isolated,
            stand_in=stand_in is not None,
        )
        install = qopt.install_patch(qemu)
        cp_patches, join_patches = (install, *cp_patches), (install, *join_patches)
        if qemu.boot == "iso" and inject:
            # the ISO's kernel command line has no talos.config=: the configs go over the API
            inject, with_apply_config = False, True
    if with_apply_config:
        opt.require_talos_apply()
    opt.check_talosconfig(tc_path)
    merge_kube = not skip_kubeconfig and not skip_injecting_config and stand_in is None
    options = opt.CreateOptions(
        plan=p,
        state_root=state_root,
        wait=wait,
        timeout=timeout,
        kubernetes_version=kubernetes_version,
        inject=inject,
        apply=with_apply_config,
        kubeconfig=not skip_kubeconfig,
        talosconfig=tc_path,
        stand_in=stand_in,
        controlplane_patches=cp_patches,
        join_patches=join_patches,
        kube_path=opt.user_kubeconfig() if merge_kube else None,
        qemu=qemu,
    )
    from talos_cluster.pipeline import run_create

    return run_create(options)
