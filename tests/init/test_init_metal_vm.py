"""Metal mode in a QEMU guest (Debian's kernel): talos-init as the machine's own PID 1."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
import vmlib

from .harness import TALOS_INIT, base_config, write_config

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(600)]


def _need_vm() -> None:
    reason = vmlib.missing()
    if reason is not None:
        pytest.skip(f"cannot boot a VM: {reason}")


def test_refuses_to_boot_without_kspp_parameters_and_reboots(tmp_path: Path) -> None:
    """vmlib's command line has neither slab_nomerge nor pti=on: boot must stop, then reboot."""
    _need_vm()
    share = tmp_path / "share"
    (share / "node").mkdir(parents=True)
    g = vmlib.boot(
        [sys.executable, TALOS_INIT, "--mode", "metal", "--state-dir", f"{vmlib.GUEST_SHARE}/node"],
        share=share,
        timeout=300,
    )
    console = g.console
    assert "[talos] talos-init mode metal, pid 1" in console, console[-3000:]
    assert (
        "[talos] task enforceKSPPRequirements (1/5): failed, KSPP: missing kernel parameters: "
        "slab_nomerge pti=on" in console
    ), console[-3000:]
    assert "[talos] rebooting in 1 seconds" in console
    # PID 1 never exited (that would be a kernel panic) and never reported a status itself:
    # the reboot syscall ended the guest (QEMU runs with -no-reboot).
    assert "Attempted to kill init" not in console
    assert g.status is None
    assert "task mountPseudoFilesystems" not in console


SYSCTLS = [
    "kernel/kptr_restrict=1",
    "kernel/dmesg_restrict=1",
    "kernel/perf_event_paranoid=3",
    "kernel/yama/ptrace_scope=1",
    "user/max_user_namespaces=0",
    "kernel/unprivileged_bpf_disabled=1",
    "net/core/bpf_jit_harden=2",
    "vm/swappiness=7",  # from machine.sysctls
    "kernel/hostname=metal-1",  # from machine.network.hostname
]


def test_boots_with_kspp_parameters_writes_sysctls_and_powers_off(tmp_path: Path) -> None:
    _need_vm()
    if "cmdline" not in inspect.signature(vmlib.boot).parameters:
        pytest.skip("vmlib.boot cannot add kernel parameters (no cmdline= argument yet)")
    share = tmp_path / "share"
    (share / "node").mkdir(parents=True)
    (share / "services").mkdir()
    # The install sequence is not part of talos-init yet; metal validation wants the install disk
    # to exist, and the guest has no disk driver loaded: any existing path stands for it.
    write_config(
        share / "config.yaml",
        "init",
        "metal-1",
        install={**base_config("init")["machine"]["install"], "disk": "/dev/null"},
        sysctls={"vm.swappiness": "7"},
    )
    keys = " ".join(line.split("=")[0] for line in SYSCTLS)
    out = f"{vmlib.GUEST_SHARE}/out.txt"
    probe = (
        f"for k in {keys}; do echo $k=$(cat /proc/sys/$k); done > {out}; "
        f'grep -E " / | /sys/fs/cgroup " /proc/mounts >> {out}; kill -TERM 1'
    )
    (share / "services" / "probe.yaml").write_text(
        f"name: probe\ncommand: /bin/sh\nargs: ['-c', '{probe}']\nrestart: until-success\n"
    )
    g = vmlib.boot(
        [
            sys.executable,
            TALOS_INIT,
            "--mode",
            "metal",
            "--state-dir",
            f"{vmlib.GUEST_SHARE}/node",
            "--services-dir",
            f"{vmlib.GUEST_SHARE}/services",
        ],
        share=share,
        cmdline=[
            "slab_nomerge",
            "pti=on",
            "talos.platform=metal",
            f"talos.config=file://{vmlib.GUEST_SHARE}/config.yaml",
        ],
        timeout=300,
    )
    assert "[talos] powering off" in g.console, g.console[-3000:]
    assert g.status is None  # the reboot syscall (power off) ended the guest, not an exit
    lines = (share / "out.txt").read_text().splitlines()
    assert lines[: len(SYSCTLS)] == SYSCTLS
    root, cgroup = lines[len(SYSCTLS) :]
    assert root.split()[1] == "/" and " ro," in f" {root.split()[3]},"
    assert cgroup.split()[2] == "cgroup2"
