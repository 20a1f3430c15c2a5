"""``talosctl cluster create --provisioner qemu``: one control plane and one worker, each a QEMU
VM (TCG here: this machine's KVM stalls a stock kernel, which create's probe finds) booted from
the image's ISO, configured over the API, installed to its own sparse disk with STATE and
EPHEMERAL encrypted (``--encrypt-state``, ``--encrypt-ephemeral``), rebooted from it,
bootstrapped; the worker upgraded to a second bundle (another version, streamed from here) and
rolled back; then a VM shut down from the API and one whose QEMU is killed, both reported by
``show``; and ``destroy``.

The ISO and the installer bundles are made for the test from the image build in ``_out/`` (as
the image tests make their boot media); without a build the test is skipped with the command
that makes one. The ISO's command line and the installed one carry ``talos.luks.pbkdf`` so
that the LUKS key slots are cheap to open under TCG. Everything runs in the pytest session's
private network namespace: the cluster's bridge, taps, dnsmasq and HTTP server are there and
nowhere else. Two VMs at once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.conftest import net_snapshot, processes_mentioning

pytestmark = [pytest.mark.image, pytest.mark.vm, pytest.mark.timeout(2400)]

BIN = Path(sys.executable).parent
TALOSCTL = str(BIN / "talosctl")
CREATE_TIMEOUT = 1800.0
STEP_TIMEOUT = 900.0
FAST_PBKDF = "talos.luks.pbkdf=pbkdf2:1000"  # LUKS key slots cheap to open under TCG
V2 = "0.9.99"
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ISO, the kernel, the installer bundle and a second one of version ``V2``, from
    ``_out``'s image build."""
    from image.conftest import OUT, WORK, _inputs, load_build
    from talos_cluster.qemu.options import missing_tools
    from talos_image import installer, iso, pxe

    reason = missing_tools(uefi=False)
    if reason is not None:
        pytest.skip(reason)
    reason = iso.missing() or installer.grub_missing()
    if reason is not None:
        pytest.skip(f"cannot build the ISO or the installer bundle: missing {reason}")
    built = load_build(OUT, WORK)  # skips, naming `just image-builds`, without one
    inputs = _inputs(built)
    out = tmp_path_factory.mktemp("qemu-media")
    epoch = 1_700_000_000
    started = time.monotonic()
    files = pxe.build(out, inputs, epoch=epoch)
    # the ISO formats STATE and EPHEMERAL at the install: its command line sets their PBKDF
    iso.build_image(out / iso.ISO_NAME, inputs, epoch=epoch, cmdline=f"{iso.CMDLINE} {FAST_PBKDF}")
    bundle = installer.build(out, inputs, epoch=epoch, initrd=files.initramfs)
    v2work = tmp_path_factory.mktemp("qemu-v2")
    v2_inputs = installer.reversioned(inputs, Path(built.root_dir), v2work, V2, epoch=epoch)
    v2_initrd = pxe.build_initramfs(v2work, v2_inputs, epoch=epoch)
    v2_bundle = installer.build(v2work / "out", v2_inputs, epoch=epoch, initrd=v2_initrd)
    FIGURES["boot media and two bundles, s"] = round(time.monotonic() - started, 1)
    return {
        "iso": out / iso.ISO_NAME,
        "kernel": files.kernel,
        "bundle": bundle,
        "v2": v2_bundle,
        "manifest": inputs.manifest,
    }


def _talosctl(
    *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TALOSCTL, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def _version(ip: str, env: dict[str, str]) -> dict[str, str]:
    """The server part of ``talosctl version``: Tag, Slot (the slot running, without a note
    such as "on trial"), Other slot; empty when it fails."""
    done = _talosctl("--nodes", ip, "version", env=env, timeout=120)
    if done.returncode != 0 or "Server:" not in done.stdout:
        return {}
    server = done.stdout.split("Server:", 1)[1]
    got = dict(re.findall(r"^\s*(Tag|Slot|Other slot):\s*(.*?)\s*$", server, re.M))
    if "Slot" in got:
        got["Slot"] = got["Slot"].split()[0]
    return got


def _latest_boot(console: Path) -> str:
    text = console.read_text(errors="replace")
    return text[text.rfind("Linux version ") :]


def _encrypted(text: str) -> None:
    for label, target in (("STATE", "/system/state"), ("EPHEMERAL", "/var")):
        assert f"[talos] {label} mounted on {target} (encrypted, " in text, text[-5000:]


def _shown(where: list[str], env: dict[str, str]) -> dict[str, list[str]]:
    """``cluster show``'s rows by node: ROLE ADDRESS STATE SERVICES API ETCD."""
    shown = _talosctl("cluster", "show", *where, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    return {r.split()[0]: r.split()[1:] for r in shown.stdout.splitlines()[1:] if r.strip()}


def test_qemu_cluster_from_the_iso_installs_bootstraps_and_is_destroyed(
    media: dict[str, Path], tmp_path: Path
) -> None:
    from talos_cluster import state
    from talos_cluster.qemu import proc, vm

    state_dir = tmp_path / "clusters"
    env = {
        **os.environ,
        "TALOSCONFIG": str(tmp_path / "talosconfig"),
        "KUBECONFIG": str(tmp_path / "kubeconfig"),
    }
    where = ["--name", "qv", "--state-dir", str(state_dir)]
    before = net_snapshot()
    started = time.monotonic()
    created = _talosctl(
        "cluster",
        "create",
        "--provisioner",
        "qemu",
        *where,
        "--iso-path",
        str(media["iso"]),
        "--vmlinuz-path",
        str(media["kernel"]),
        "--install-image",
        str(media["bundle"]),
        "--cpus",
        "1",
        "--cpus-workers",
        "1",
        "--memory",
        "1024",
        "--memory-workers",
        "1024",
        "--disk",
        "2048",
        "--encrypt-state",
        "--encrypt-ephemeral",
        "--config-patch",
        json.dumps({"machine": {"install": {"extraKernelArgs": [FAST_PBKDF]}}}),
        "--wait-timeout",
        "20m",
        env=env,
        timeout=CREATE_TIMEOUT,
    )
    FIGURES["create 1+1 to etcd healthy, s"] = round(time.monotonic() - started, 1)
    cdir = state_dir / "qv"
    try:
        consoles = {
            n: (cdir / n / "console.log").read_text(errors="replace")
            for n in ("qv-master-1", "qv-worker-1")
            if (cdir / n / "console.log").exists()
        }
        assert created.returncode == 0, created.stderr[-6000:] + "".join(
            f"\n--- {n} ---\n{c[-3000:]}" for n, c in consoles.items()
        )
        # progress per node on stderr: maintenance (the ISO), installing, rebooting, configured
        for node in ("qv-master-1", "qv-worker-1"):
            for st in ("booting", "maintenance", "installing", "rebooting", "configured"):
                assert f"  {node}: {st}" in created.stderr, created.stderr
        rows = {r.split()[0]: r.split() for r in created.stdout.splitlines()[1:]}
        assert rows["qv-master-1"][1:4] == ["controlplane", "10.5.0.2", "running"]
        assert rows["qv-worker-1"][1:4] == ["worker", "10.5.0.3", "running"]
        assert rows["qv-master-1"][-1] == "member"  # etcd healthy
        for node, text in consoles.items():
            # the ISO's boot installed the disk; the second boot is GRUB's slot A, from the disk
            assert "[talos] install: partitioning /dev/vda" in text, text[-4000:]
            assert "[talos] install: done; rebooting from the installed disk" in text
            second = text[text.rfind("Linux version ") :]
            assert "Talos: booting slot A" in text
            assert "talos.slot=A" in second and "[talos] config loaded from STATE" in second
            disk = (cdir / node / "disk.raw").stat()
            assert disk.st_size == 2048 << 20 and disk.st_blocks * 512 < disk.st_size  # sparse
            # STATE and EPHEMERAL are LUKS2 (--encrypt-*), opened with the node's ID key
            _encrypted(second)
        # both nodes answer over mutual TLS with the merged talosconfig
        v1 = "v" + json.loads(media["manifest"].read_text())["version"]
        for ip in ("10.5.0.2", "10.5.0.3"):
            assert _version(ip, env) == {"Tag": v1, "Slot": "A", "Other slot": "B (empty)"}
        rows = _shown(where, env)
        assert rows["qv-worker-1"][:3] == ["worker", "10.5.0.3", "running"]

        # the worker upgraded to V2, streamed from here (a worker has no etcd: EPHEMERAL wiped)
        worker_console = cdir / "qv-worker-1" / "console.log"
        started = time.monotonic()
        up = _talosctl(
            "--nodes", "10.5.0.3", "upgrade", "--image", str(media["v2"]), "--wait",
            env=env, timeout=STEP_TIMEOUT,
        )  # fmt: skip
        FIGURES["upgrade of the worker to answering on B, s"] = round(time.monotonic() - started, 1)
        assert up.returncode == 0, up.stderr + worker_console.read_text(errors="replace")[-4000:]
        assert f"10.5.0.3: upgraded: slot B, v{V2} (was slot A, {v1})" in up.stderr, up.stderr
        assert _version("10.5.0.3", env) == {
            "Tag": f"v{V2}",
            "Slot": "B",
            "Other slot": f"A ({v1})",
        }
        text = _latest_boot(worker_console)
        assert "talos.slot=B" in text and "Talos: booting slot B" in worker_console.read_text()
        _encrypted(text)  # EPHEMERAL made again, encrypted
        assert _version("10.5.0.2", env)["Tag"] == v1  # the control plane was not touched

        # and back: rollback makes A the default and reboots into it
        started = time.monotonic()
        back = _talosctl("--nodes", "10.5.0.3", "rollback", env=env, timeout=120)
        assert back.returncode == 0 and "10.5.0.3: rollback requested" in back.stderr, back.stderr
        deadline = time.monotonic() + STEP_TIMEOUT
        while (got := _version("10.5.0.3", env)).get("Slot") != "A":
            assert time.monotonic() < deadline, worker_console.read_text()[-4000:]
            time.sleep(2)
        FIGURES["rollback of the worker to answering on A, s"] = round(
            time.monotonic() - started, 1
        )
        assert got == {"Tag": v1, "Slot": "A", "Other slot": f"B (v{V2})"}
        assert "talos.slot=A" in _latest_boot(worker_console)

        # a shutdown from the API powers the worker off, which ends its QEMU
        record = state.load(cdir)
        assert record is not None
        qemus = {n.name: (n.pid, n.start_time) for n in record.nodes}
        off = _talosctl("--nodes", "10.5.0.3", "shutdown", env=env, timeout=120)
        assert off.returncode == 0 and "10.5.0.3: shutdown requested" in off.stderr, off.stderr
        assert proc.wait_gone(*qemus["qv-worker-1"], timeout=STEP_TIMEOUT)
        assert "[talos] powering off" in worker_console.read_text(errors="replace")
        rows = _shown(where, env)
        assert rows["qv-worker-1"][2] == "exited" and rows["qv-worker-1"][4] == "-"
        assert rows["qv-master-1"][2:5:2] == ["running", "listening"]  # negative control
        # a VM that dies (its QEMU killed) is reported too
        os.kill(qemus["qv-master-1"][0], signal.SIGKILL)
        assert proc.wait_gone(*qemus["qv-master-1"], timeout=30)
        rows = _shown(where, env)
        assert rows["qv-master-1"][2] == "exited" and rows["qv-master-1"][4] == "-"
    finally:
        started = time.monotonic()
        destroyed = _talosctl("cluster", "destroy", *where, env=env, timeout=300)
        FIGURES["destroy, s"] = round(time.monotonic() - started, 1)
        print(f"qemu cluster figures: {FIGURES}")
    assert destroyed.returncode == 0, destroyed.stderr
    assert "stopping VM" not in destroyed.stderr  # both were gone already
    assert processes_mentioning(str(state_dir)) == []  # no QEMU, dnsmasq or HTTP server
    assert not cdir.exists()  # disks, consoles, configs, record
    after = net_snapshot()
    assert after["link"] == before["link"] and after["addr"] == before["addr"]
    assert after["route"] == before["route"]
    assert not vm.api_open("10.5.0.2")  # negative control: nothing answers any more
    again = _talosctl("cluster", "destroy", *where, env=env, timeout=120)
    assert again.returncode == 0 and "nothing to destroy" in again.stderr
