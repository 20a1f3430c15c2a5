"""A/B upgrades, automatic rollback, ``talosctl rollback`` and ``reset`` on one installed VM.

One sparse virtio disk, the test network (tests/image/netlab.py) inside the pytest session's
private network namespace, one guest at a time (QEMU under TCG, ``-no-reboot``: every reboot
ends QEMU, and the next boot is started here with the disk alone). STATE and EPHEMERAL are LUKS2
with nodeID keys (the guest's SMBIOS UUID is fixed), opened on every boot. Bundles: the build's
(version V1) and one made from it by ``talos-image installer --version`` (V2); two broken ones
are V2 with a command line that makes the kernel panic (``rdinit=`` naming no file: no init, no
root) and one whose talos-init stops with a fatal error (``talos.platform=`` naming no platform).

1. the ISO (SeaBIOS) and the empty disk: maintenance mode; ``talosctl apply-config --insecure``
   with the fingerprint the console printed, a config whose ``machine.install.image`` is the
   generated container reference: the node installs the system it booted (slot A, V1) and
   reboots; the ISO is removed;
2. disk, SeaBIOS: A (V1), configured; ``talosctl bootstrap``; etcd healthy; A marked good;
   ``talosctl upgrade --image FILE --preserve`` streams V2 to the node, which writes slot B;
3. disk, OVMF: GRUB tries B; V2 answers over mutual TLS, ``version`` shows slot B and A's V1;
   etcd kept its member (EPHEMERAL preserved) and B is marked good once etcd is healthy; an
   upgrade without ``--preserve`` is refused (etcd's only member cannot leave); ``talosctl
   rollback``;
4. disk: A (V1) is the default again; ``upgrade --stage`` to the panicking bundle (a URL): the
   node goes on running V1; ``talosctl reboot``;
5. disk: GRUB tries B, the kernel panics and reboots (``panic=10``): QEMU ends by itself;
6. disk: GRUB goes back to A (V1) by itself; ``version`` says B failed; upgrade to the bundle
   whose talos-init fails;
7. disk: B's talos-init reports the fatal error and reboots;
8. disk: A (V1) again, B named as failed; ``talosctl reset`` (STATE and EPHEMERAL);
9. disk: maintenance mode, from the installed disk.

Boot times and the upgrade figures are printed (tests/image/vm.py's BOOT_SECONDS); nothing
asserts on them.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from talos_image import installer, iso, pxe
from talos_image.media import Inputs
from talos_image.rootfs import RootImage

from .netlab import NetLab, Nic
from .vm import BOOT_SECONDS, OVMF_VARS, TALOS_GEN, TALOSCTL, Guest, skip_without_tools, uefi_args

pytestmark = [pytest.mark.image, pytest.mark.vm, pytest.mark.timeout(3600)]

DISK_SIZE = 2 << 30
UUID = "5b0c7d4e-2f1a-4e8b-9c3d-6a7f8e9d0c1b"  # the nodeID keys derive from it
FAST_PBKDF = "talos.luks.pbkdf=pbkdf2:1000"  # key slots cheap to open under TCG
NODEID = {"provider": "luks2", "keys": [{"nodeID": {}, "slot": 0}]}
STEP_TIMEOUT = 900.0
CONFIGURED = r"^\[talos\] boot sequence: done"
API = r"^\[talos\] machine API listening on :50000 \(mutual TLS\)"
FINGERPRINT = r"^\[talos\] server certificate fingerprint:\r?\n\[talos\] \t(\S+)\r?$"
V2 = "0.9.99"


@pytest.fixture(scope="module", autouse=True)
def _need_tools() -> None:
    skip_without_tools()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetLab]:
    with NetLab(tmp_path / "net", guests=1) as net:
        yield net


def with_cmdline(src: Path, dst: Path, extra: str) -> Path:
    """The bundle ``src`` with ``extra`` appended to its ``cmdline`` and SHA256SUMS made again."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(src, "r:") as tar:
        members = tar.getmembers()
        data = {}
        for m in members:
            fh = tar.extractfile(m)
            if fh is not None:
                data[m.name] = fh.read()
    data["cmdline"] = data["cmdline"].rstrip(b"\n") + f" {extra}\n".encode()
    sums = [ln.split("  ", 1) for ln in data["SHA256SUMS"].decode().splitlines()]
    data["SHA256SUMS"] = "".join(
        f"{hashlib.sha256(data[name]).hexdigest()}  {name}\n" for _, name in sums
    ).encode()
    with tarfile.open(dst, "w:") as out:
        for m in members:
            m.size = len(data[m.name])
            out.addfile(m, io.BytesIO(data[m.name]))
    return dst


class Node:
    """The VM across its boots: the disk, the NIC, the talosconfig, one Guest per boot."""

    def __init__(self, work: Path, nic: Nic, talosconfig: Path) -> None:
        self.work, self.nic, self.talosconfig = work, nic, talosconfig
        self.disk = work / "disk.img"
        with self.disk.open("wb") as fh:
            fh.truncate(DISK_SIZE)
        self.vars = work / "OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, self.vars)
        self.guests: list[Guest] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.boots = 0

    def boot(self, name: str, *, uefi: bool = False, extra: list[str] | None = None) -> Guest:
        self.boots += 1
        machine = [
            "-uuid",
            UUID,
            "-drive",
            f"file={self.disk},format=raw,if=virtio",
            *(uefi_args(self.vars) if uefi else []),
            *(extra or []),
        ]
        g = Guest(f"{self.boots}-{name}", self.work, self.nic, machine)
        self.guests.append(g)
        return g

    def talosctl(
        self, g: Guest, *args: str, timeout: float = 300, insecure: bool = False, code: int = 0
    ) -> str:
        address = self.nic.address
        argv = [TALOSCTL, "--talosconfig", str(self.talosconfig), "-e", address, "-n", address]
        if insecure:  # maintenance mode: the node alone, no talosconfig
            argv = [TALOSCTL, "-n", address]
        done = subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != code:
            g.fail(
                f"talosctl {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done.stdout + done.stderr

    def talosctl_async(self, *args: str) -> subprocess.Popen[str]:
        """``talosctl ARGS`` running while the test goes on (its output: stdout and stderr)."""
        address = self.nic.address
        argv = [TALOSCTL, "--talosconfig", str(self.talosconfig), "-e", address, "-n", address]
        proc = subprocess.Popen(
            [*argv, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.procs.append(proc)
        return proc

    def version(self, g: Guest) -> dict[str, str]:
        out = self.talosctl(g, "version").split("Server:", 1)[1]
        return dict(
            re.findall(r"^\s*(Tag|SHA|Slot|Rolled back|Other slot):\s*(.*?)\s*$", out, re.M)
        )

    def etcd_member_id(self, g: Guest) -> str:
        """The ID of etcd's one member (retried while etcd starts)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            done = subprocess.run(
                [TALOSCTL, "--talosconfig", str(self.talosconfig), "-e", self.nic.address,
                 "-n", self.nic.address, "etcd", "members"],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            rows = [ln.split() for ln in done.stdout.splitlines()[1:] if ln.strip()]
            if done.returncode == 0 and len(rows) == 1:
                return rows[0][1]
            time.sleep(3)
        g.fail("etcd members: no single member")
        raise AssertionError  # pragma: no cover


def _configured(g: Guest, key: str) -> str:
    g.wait(CONFIGURED, STEP_TIMEOUT, key=key)
    g.wait(API, STEP_TIMEOUT)
    return g.text()


def _opened_encrypted(text: str) -> None:
    for label, target in (("STATE", "/system/state"), ("EPHEMERAL", "/var")):
        assert f"[talos] {label} mounted on {target} (encrypted, " in text, text[-5000:]


def _gen(out: Path, endpoint: str, image_url: str | None = None) -> Path:
    patch = out.parent / "install.yaml"
    patch.write_text(
        json.dumps(
            {
                "machine": {
                    "install": {"extraKernelArgs": [FAST_PBKDF]},
                    "systemDiskEncryption": {"state": NODEID, "ephemeral": NODEID},
                }
            }
        )
    )
    argv = [
        TALOS_GEN, "config", "upgrades", f"https://{endpoint}:6443", "-o", str(out),
        "--install-disk", "/dev/vda", "--config-patch", f"@{patch}",
        *(["--install-image", image_url] if image_url else []),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return out


def test_upgrade_rollback_and_reset_on_an_installed_disk(
    image_inputs: Inputs,
    built_root: RootImage,
    lab: NetLab,
    tmp_path: Path,
) -> None:
    epoch = 1_700_000_000
    started = time.monotonic()
    v2_inputs = installer.reversioned(
        image_inputs, Path(built_root.root_dir), tmp_path / "v2work", V2, epoch=epoch
    )
    v2_bundle = installer.build(
        tmp_path / "v2",
        v2_inputs,
        epoch=epoch,
        initrd=pxe.build_initramfs(tmp_path / "v2work", v2_inputs, epoch=epoch),
    )
    BOOT_SECONDS["build the V2 bundle"] = round(time.monotonic() - started, 1)
    panics = with_cmdline(v2_bundle, tmp_path / "panic" / "installer.tar", "rdinit=/no-such-init")
    fails = with_cmdline(v2_bundle, tmp_path / "fatal" / "installer.tar", "talos.platform=none")
    v1 = "v" + json.loads(image_inputs.manifest.read_text())["version"]
    v2 = f"v{V2}"
    assert v1 != v2

    panic_url = lab.serve("/panic.tar", panics.read_bytes())
    fatal_url = lab.serve("/fatal.tar", fails.read_bytes())
    nic = lab.nics[0]
    configs = _gen(tmp_path / "gen", nic.address)
    iso_image = iso.build_image(
        tmp_path / iso.ISO_NAME, image_inputs, epoch=epoch, cmdline=f"{iso.CMDLINE} {FAST_PBKDF}"
    )
    node = Node(tmp_path, nic, configs / "talosconfig")
    try:
        # 1. the ISO in maintenance mode; apply-config; install slot A (V1), LUKS on STATE and
        # EPHEMERAL (formatted with the ISO's command line plus the fast PBKDF), then the
        # reboot ends QEMU
        medium = ["-drive", f"if=ide,media=cdrom,readonly=on,file={iso_image}", "-boot", "dc"]
        g = node.boot("iso-install", extra=medium)
        found = g.wait(FINGERPRINT, STEP_TIMEOUT, key="maintenance")
        started = time.monotonic()
        node.talosctl(
            g, "apply-config", "--insecure", "--cert-fingerprint", found.group(1),
            "-f", str(configs / "controlplane.yaml"), insecure=True,
        )  # fmt: skip
        g.wait_exit(STEP_TIMEOUT, "installed")
        text = g.text()
        assert "is not a bundle: writing slot A with the system this node booted" in text
        assert "[talos] install: slot A written from the booted system" in text
        assert "[talos] install: done; rebooting from the installed disk" in text

        # 2. slot A, V1; bootstrap; A marked good once etcd is healthy; upgrade to V2 (FILE)
        g = node.boot("A-v1")
        text = _configured(g, "configured")
        BOOT_SECONDS["apply-config to configured after the install"] = round(
            time.monotonic() - started, 1
        )
        _opened_encrypted(text)
        assert "maintenance" not in text and "[talos] config loaded from STATE" in text
        assert "Talos: booting slot A" in text
        assert node.version(g)["Tag"] == v1
        node.talosctl(g, "bootstrap")
        member = node.etcd_member_id(g)
        g.wait(r"^\[talos\] bootloader: slot A marked good", STEP_TIMEOUT)
        started = time.monotonic()
        # --wait: the client sees the node go down and come back, and checks its slot
        waiting = node.talosctl_async("upgrade", "-i", str(v2_bundle), "--preserve", "--wait")
        g.wait_exit(STEP_TIMEOUT, "upgrade call to reboot")
        text = g.text()
        assert "[talos] upgrade: writing slot B from upload installer-amd64.tar" in text
        assert "[talos] upgrade: slot B written (v0.9.99); sha256 of each member matches" in text
        assert "wiping EPHEMERAL" not in text  # --preserve

        # 3. OVMF: GRUB tries B; V2 answers; EPHEMERAL kept (etcd's member); B marked good
        g = node.boot("B-v2-uefi", uefi=True)
        text = _configured(g, "configured")
        out, _ = waiting.communicate(timeout=STEP_TIMEOUT)
        assert waiting.returncode == 0, out
        assert "Upgrade request received: rebooting into slot B (v0.9.99)" in out, out
        assert f"upgraded: slot B, {v2} (was slot A, {v1})" in out, out
        BOOT_SECONDS["upgrade call to V2 answering"] = round(time.monotonic() - started, 1)
        _opened_encrypted(text)
        assert "Talos: booting slot B" in text and "talos.slot=B" in text
        assert "grubenv: default=A next=B tries=0 failed=" in text  # GRUB counted B's try
        got = node.version(g)
        assert got["Tag"] == v2 and got["Slot"].startswith("B"), got
        assert got["Other slot"] == f"A ({v1})"
        assert node.etcd_member_id(g) == member  # etcd's data survived the upgrade
        g.wait(r"^\[talos\] bootloader: etcd is healthy", STEP_TIMEOUT)
        g.wait(r"^\[talos\] bootloader: slot B marked good", STEP_TIMEOUT)
        assert node.version(g)["Slot"] == "B"  # not on trial any more
        # without --preserve a control plane leaves etcd first: its only member cannot
        refused = node.talosctl(g, "upgrade", "-i", panic_url, code=1)
        assert "this node is etcd's only member" in refused, refused
        assert "upgrade: writing slot" not in g.text().split("slot B marked good", 1)[1]
        node.talosctl(g, "rollback")
        g.wait_exit(STEP_TIMEOUT, "rollback to reboot")

        # 4. A (V1) by default; upgrade to the bundle whose kernel panics
        g = node.boot("A-v1-rolled")
        text = _configured(g, "configured")
        assert "Talos: booting slot A" in text
        got = node.version(g)
        assert got["Tag"] == v1 and got["Slot"] == "A" and got["Other slot"] == f"B ({v2})"
        # staged: written now, booted at the next reboot (the node keeps running)
        out = node.talosctl(g, "upgrade", "--image", panic_url, "--preserve", "--stage")
        assert "Upgrade staged: slot B (v0.9.99) boots at the next reboot" in out, out
        assert node.version(g)["Tag"] == v1
        started = time.monotonic()
        node.talosctl(g, "reboot")
        g.wait_exit(STEP_TIMEOUT, "reboot")

        # 5. B's kernel panics; panic=10 reboots it, which ends QEMU
        g = node.boot("B-panics")
        g.wait_exit(STEP_TIMEOUT, "panic to reboot")
        text = g.text()
        assert "Talos: booting slot B" in text and "Kernel panic" in text, text[-4000:]
        assert "[talos]" not in text  # no talos-init ran

        # 6. GRUB goes back to A by itself; the node says why; upgrade to the failing bundle
        g = node.boot("A-after-panic")
        text = _configured(g, "configured")
        BOOT_SECONDS["broken upgrade (panic) to V1 answering"] = round(
            time.monotonic() - started, 1
        )
        _opened_encrypted(text)
        assert "Talos: booting slot A" in text
        assert "[talos] bootloader: slot B failed to boot" in text
        got = node.version(g)
        assert got["Tag"] == v1 and got["Slot"] == "A", got
        assert got["Rolled back"] == "slot B failed to boot; slot A runs again"
        started = time.monotonic()
        node.talosctl(g, "upgrade", "--image", fatal_url, "--preserve")
        g.wait_exit(STEP_TIMEOUT, "upgrade call to reboot")

        # 7. B's talos-init stops with a fatal error and reboots
        g = node.boot("B-init-fails")
        g.wait_exit(STEP_TIMEOUT, "fatal to reboot")
        text = g.text()
        assert "Talos: booting slot B" in text
        assert "unknown platform 'none'" in text and "[talos] rebooting in 1 seconds" in text

        # 8. back on A again; reset STATE and EPHEMERAL
        g = node.boot("A-after-fatal")
        text = _configured(g, "configured")
        BOOT_SECONDS["broken upgrade (fatal) to V1 answering"] = round(
            time.monotonic() - started, 1
        )
        assert "[talos] bootloader: slot B failed to boot" in text
        assert node.version(g)["Tag"] == v1
        node.talosctl(g, "reset", "--no-graceful", "--reboot")
        g.wait_exit(STEP_TIMEOUT, "reset to reboot")

        # 9. maintenance mode, from the installed disk (no ISO, no PXE)
        g = node.boot("A-maintenance")
        g.wait(FINGERPRINT, STEP_TIMEOUT, key="maintenance")
        text = g.text()
        assert "Talos: booting slot A" in text
        assert "no config: entering maintenance mode" in text
        # a plain reboot of the same VM, for the figures: reset's reboot to the banner
        BOOT_SECONDS["reset to maintenance banner"] = BOOT_SECONDS.get(f"{g.name} maintenance", 0)
    finally:
        for guest in node.guests:
            guest.stop()
        for proc in node.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        print(f"boot times: {BOOT_SECONDS}")
