"""The interactive installer against a metal node: ``talosctl apply-config --insecure
--interactive`` under tmux, a VM booted from the ISO with two empty virtio disks.

The test network of tests/image/netlab.py inside the pytest session's private network namespace,
one guest at a time (QEMU under TCG, SeaBIOS, ``-no-reboot``: the reboot after the install ends
QEMU, and the test starts the next boot with the disks alone). The disks differ in size (2 GiB
``/dev/vda``, 3 GiB ``/dev/vdb``), so that the one picked is the one written:

1. the ISO (``bootindex=0``) and both disks: maintenance mode; the real command runs in tmux with
   the fingerprint the console printed; the form lists both disks with their sizes as the
   installer shows them (SI units); the second one is picked from the list, a hostname typed,
   the review shows ``/dev/vdb``, Apply writes ``./talosconfig`` (0600) and sends the config;
   the node partitions ``/dev/vdb``, installs the system it booted and reboots. ``/dev/vda`` is
   still blank;
2. the disks alone, ``/dev/vdb`` first in the boot order (``bootindex=0``): GRUB on vdb boots
   slot A; the node loads its config from vdb's STATE, sets the chosen hostname and answers over
   mutual TLS with the talosconfig the installer wrote.

A text capture of the disk screen is kept with ``TALOS_TUI_CAPTURES=DIR`` (docs/tui.md).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from talos_image import installer, iso
from talos_image.media import Inputs
from tui.tmux import Tmux

from .netlab import NetLab, Nic, missing
from .vm import BOOT_SECONDS, QEMU, TALOSCTL, Guest, configured, version

pytestmark = [pytest.mark.image, pytest.mark.vm, pytest.mark.timeout(2400)]

GIB = 1 << 30
# name, size, the size as the installer shows it (go-humanize's SI units, as Talos's installer)
DISKS = (("vda", 2 * GIB, "2.1 GB"), ("vdb", 3 * GIB, "3.2 GB"))
CHOSEN = "/dev/vdb"
HOSTNAME = "metal-vdb"
STEP_TIMEOUT = 900.0
FINGERPRINT = r"^\[talos\] server certificate fingerprint:\r?\n\[talos\] \t(\S+)\r?$"
SCREEN_BOUND = 120.0  # the Disks/Interfaces calls to a node under TCG; only fails a stuck screen
MIB = 1 << 20
EPOCH = 1_700_000_000


@pytest.fixture(scope="module", autouse=True)
def _need_tools() -> None:
    for tool, package in (
        (QEMU, "qemu-system-x86"),
        ("tmux", "tmux; tools/talos-apply/apt-packages.txt"),
    ):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian package {package})")
    reason = missing() or installer.grub_missing()
    if reason is not None:
        pytest.skip(reason)
    reason = iso.missing()
    if reason is not None:
        pytest.skip(f"cannot build the ISO: missing {reason}")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetLab]:
    with NetLab(tmp_path / "net", guests=1) as net:
        yield net


class Metal:
    """The VM across its boots: two sparse disks, the NIC, one Guest per boot."""

    def __init__(self, work: Path, nic: Nic) -> None:
        self.work, self.nic = work, nic
        self.disks: dict[str, Path] = {}
        for name, size, _ in DISKS:
            path = work / f"{name}.img"
            with path.open("wb") as fh:
                fh.truncate(size)
            self.disks[name] = path
        self.guests: list[Guest] = []

    def boot(self, name: str, boot_from: str, extra: list[str] | None = None) -> Guest:
        """A boot with both disks (in DISKS' order: vda, vdb) and ``boot_from`` first."""
        machine: list[str] = []
        for disk, path in self.disks.items():
            # SeaBIOS boots the lowest bootindex that boots; vda (empty) has none
            index = f",bootindex={0 if boot_from == disk else 1}" if disk == "vdb" else ""
            machine += [
                "-drive",
                f"if=none,id={disk},file={path},format=raw",
                "-device",
                f"virtio-blk-pci,drive={disk}{index}",
            ]
        g = Guest(f"{len(self.guests) + 1}-{name}", self.work, self.nic, [*machine, *(extra or [])])
        self.guests.append(g)
        return g


def _blank(path: Path) -> bool:
    """No partition table or signature: the first and the last MiB are zeros."""
    with path.open("rb") as fh:
        head = fh.read(MIB)
        fh.seek(-MIB, os.SEEK_END)
        tail = fh.read(MIB)
    return head.count(0) == MIB and tail.count(0) == MIB


def _disk_rows(shown: str) -> list[str]:
    """The rows of the form's disk list (each starts with the device name)."""
    return [ln.strip() for ln in shown.splitlines() if ln.startswith("/dev/")]


def _wait_rc(tui: Tmux, rc_file: Path) -> int:
    deadline = time.monotonic() + SCREEN_BOUND
    while not rc_file.exists() or not rc_file.read_text().strip():
        if time.monotonic() > deadline:
            raise AssertionError(f"the command did not end; the screen:\n{tui.screen()}")
        time.sleep(0.2)
    return int(rc_file.read_text())


def _talosctl(talosconfig: Path, g: Guest, address: str, *args: str) -> str:
    done = subprocess.run(
        [TALOSCTL, "--talosconfig", str(talosconfig), "-e", address, "-n", address, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        g.fail(f"talosctl {' '.join(args)} exited {done.returncode}: {done.stdout}{done.stderr}")
    return done.stdout


def test_interactive_install_to_the_chosen_disk_of_a_metal_node(
    image_inputs: Inputs, lab: NetLab, tmp_path: Path
) -> None:
    nic = lab.nics[0]
    address = nic.address
    iso_image = iso.build_image(tmp_path / iso.ISO_NAME, image_inputs, epoch=EPOCH)
    v1 = "v" + json.loads(image_inputs.manifest.read_text())["version"]
    node = Metal(tmp_path, nic)
    work = tmp_path / "user"
    work.mkdir()
    rc_file = work / "rc"
    tui: Tmux | None = None
    try:
        # 1. the ISO first, both disks empty: maintenance mode
        cdrom = [
            "-drive",
            f"if=none,id=cd,media=cdrom,readonly=on,file={iso_image}",
            "-device",
            "ide-cd,drive=cd,bootindex=0",
        ]
        g = node.boot("iso-interactive", boot_from="cd", extra=cdrom)
        fingerprint = g.wait(FINGERPRINT, STEP_TIMEOUT, key="maintenance").group(1)

        # the real command, in the pytest session's network namespace (where the lab is),
        # whichever namespace the tmux server runs in
        talosctl = shlex.join(
            [
                "nsenter", f"--net=/proc/{os.getpid()}/ns/net", "--", TALOSCTL,
                "apply-config", "--insecure", "--cert-fingerprint", fingerprint,
                "--interactive", "-n", address,
            ]
        )  # fmt: skip
        tui = Tmux(f"{talosctl}; echo $? > {rc_file}; exec sleep 3600", work)
        tui.wait_for("Talos interactive installer", SCREEN_BOUND)
        shown = tui.wait_for("/dev/vdb", SCREEN_BOUND)
        rows = _disk_rows(shown)
        for name, _, size in DISKS:
            (row,) = [r for r in rows if r.split()[0] == f"/dev/{name}"]
            assert row.endswith(size), (row, shown)
        assert "eth0" in shown and f"{address}/24" in shown, shown
        tui.snap("metal-1-disks")

        # the list first proposes the first disk; pick the second from the list: Shift-Tab
        # leaves the field (its marker goes), Down moves the highlight, Enter fills the field
        tui.wait_row("▸ Install disk", lambda row: row.rstrip().endswith("/dev/vda"))
        tui.keys("BTab")
        tui.wait_gone("▸ Install disk")
        names = [r.split()[0] for r in rows]
        tui.keys(*["Down"] * names.index(CHOSEN), "Enter")
        tui.wait_row("▸ Install disk", lambda row: row.rstrip().endswith(CHOSEN))
        assert "the node has no disk" not in tui.screen()
        for field in ("Cluster name", "Control plane endpoint", "Machine type", "Hostname"):
            tui.keys("Tab")
            tui.wait_for(f"▸ {field}")
        tui.type(HOSTNAME)
        tui.wait_row("▸ Hostname", lambda row: row.rstrip().endswith(HOSTNAME))
        tui.snap("metal-2-form")

        # review: the node generated the config for the chosen disk and hostname
        tui.keys("C-r")
        tui.wait_for("Review the generated machine config", SCREEN_BOUND)
        shown = tui.wait_for(f"hostname: {HOSTNAME}", SCREEN_BOUND)
        assert f"install disk {CHOSEN}, hostname {HOSTNAME}" in shown, shown
        tui.snap("metal-3-review")
        tui.keys("Enter")  # Apply (focused); no ./talosconfig yet, so no question
        shown = tui.wait_for("Press Enter to exit.", SCREEN_BOUND)
        assert "done: the node applies it" in shown and "failed" not in shown, shown
        tui.keys("Enter")
        assert _wait_rc(tui, rc_file) == 0, tui.screen()
        talosconfig = work / "talosconfig"
        assert stat.S_IMODE(talosconfig.stat().st_mode) == 0o600

        # the node installs to the chosen disk and reboots (QEMU ends); the other stays blank
        g.wait_exit(STEP_TIMEOUT, "installed")
        text = g.text()
        assert f"[talos] install: partitioning {CHOSEN} (3072 MiB)" in text, text[-4000:]
        assert "install: partitioning /dev/vda" not in text
        assert "[talos] install: done; rebooting from the installed disk" in text
        assert _blank(node.disks["vda"])
        assert not _blank(node.disks["vdb"])  # negative control of _blank

        # 2. the disks alone, vdb first: its GRUB, its STATE, the chosen hostname
        g = node.boot("vdb-configured", boot_from="vdb")
        configured(g)
        text = g.text()
        assert "Talos: booting slot A" in text
        assert "maintenance" not in text and "[talos] config loaded from STATE" in text
        assert re.search(r"\[talos\] STATE mounted on /system/state \(/dev/vdb\d+\)", text), text
        assert f"[talos] hostname set to {HOSTNAME}" in text, text[-4000:]
        assert version(talosconfig, g, address)["Tag"] == v1  # mutual TLS, the new talosconfig
        live = _talosctl(talosconfig, g, address, "read", "/proc/sys/kernel/hostname")
        assert live.strip() == HOSTNAME
        saved = yaml.safe_load(
            _talosctl(talosconfig, g, address, "read", "/system/state/config.yaml")
        )
        assert saved["machine"]["install"]["disk"] == CHOSEN
        assert saved["machine"]["network"]["hostname"] == HOSTNAME
    finally:
        if tui is not None:
            tui.kill()
        for guest in node.guests:
            guest.stop()
        print(f"boot times: {BOOT_SECONDS}")
