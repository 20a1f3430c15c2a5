"""The image boots onto a network: DHCP, the maintenance API, apply-config, talos.config=.

Each guest has a virtio-net NIC on a tap of the test network (tests/image/netlab.py: a bridge,
dnsmasq with a fixed address per MAC, an HTTP server for configs), all inside the pytest
session's private network namespace. Two boots of at most two guests each (QEMU under TCG):

- the ISO with SeaBIOS and with OVMF: each maintenance banner names the address dnsmasq gave
  that MAC and a fingerprint equal to the SPKI fingerprint of the certificate the node serves
  on port 50000 (read by ``openssl s_client``); ``talosctl apply-config --insecure
  --cert-fingerprint`` configures one of them, which then answers ``talosctl version`` over
  mutual TLS with the talosconfig made with its config;
- the PXE kernel and initramfs with ``talos.config=URL?uuid=``: the node fetches its config
  (served gzipped) with its SMBIOS UUID filled in and comes up configured; over mutual TLS it
  reports the image's version and commit, talos-init as PID 1 and no shell, and its log shows
  that ``machine.files`` cannot write into the read-only root while /var takes them.

The configs come from ``talos-gen config`` with ``--install-disk /dev/null``: metal mode wants
an install disk that exists, and ``/dev/null`` has size 0, which the install step refuses
("refusing to install") without touching anything, so the node boots from its medium with
STATE and EPHEMERAL on tmpfs (the image's /system and /var).

Boot-to-banner (and boot-to-configured) times are kept in :data:`BOOT_SECONDS` and printed;
nothing asserts on them.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from talos_image import iso, pxe
from talos_image.media import Inputs

from libtalos import spki

from .netlab import GATEWAY, NetLab, Nic, missing

pytestmark = [pytest.mark.image, pytest.mark.vm, pytest.mark.timeout(1200)]

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
BIN = Path(sys.executable).parent
TALOSCTL = str(BIN / "talosctl")
TALOS_GEN = str(BIN / "talos-gen")
BOOT_TIMEOUT = 300.0  # TCG on a shared 2-core machine, two guests at once
CONFIGURED_TIMEOUT = 300.0
API_PORT = 50000
UUID = "8c3f1d52-6b1e-4d6f-9a57-3e2b0c4d5e6f"
BOOT_SECONDS: dict[str, float] = {}
"""Seconds from QEMU's start to the maintenance banner (or to the configured node), per boot."""

RO_PATH = "/usr/share/talos-image/netboot-probe"  # a directory of the read-only root
VAR_PATH = "/var/netboot-probe"  # EPHEMERAL (tmpfs here)


@pytest.fixture(scope="module", autouse=True)
def _need_tools() -> None:
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} is not installed (Debian package qemu-system-x86)")
    if not OVMF_CODE.exists():
        pytest.skip(f"{OVMF_CODE} is missing (Debian package ovmf)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    reason = missing()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetLab]:
    with NetLab(tmp_path / "net", guests=2) as net:
        yield net


# -- guests ---------------------------------------------------------------------------------


@dataclass
class Guest:
    name: str
    nic: Nic
    proc: subprocess.Popen[bytes]
    serial: Path
    started: float

    def text(self) -> str:
        return self.serial.read_bytes().decode("utf-8", "replace") if self.serial.exists() else ""

    def stop(self) -> str:
        """Kill QEMU; its stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        _, err = self.proc.communicate()
        return err.decode("utf-8", "replace")


def _start(name: str, work: Path, nic: Nic, machine: list[str]) -> Guest:
    serial = work / f"{name}.serial"
    cmd = [
        QEMU,
        "-nodefaults",
        "-nographic",
        "-monitor",
        "none",
        "-no-reboot",
        "-accel",
        "tcg,tb-size=64",
        "-smp",
        "1",
        "-m",
        "1024",
        "-serial",
        f"file:{serial}",
        *nic.qemu_args(),
        *machine,
    ]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return Guest(name, nic, proc, serial, time.monotonic())


@pytest.fixture
def guests() -> Iterator[list[Guest]]:
    """The test's guests, killed at the end whatever happened."""
    started: list[Guest] = []
    yield started
    for g in started:
        g.stop()


def _wait(boots: list[Guest], pattern: str, timeout: float, key: str = "") -> list[re.Match[str]]:
    """Until each guest's console matches ``pattern`` (a multi-line regex); the matches. With
    ``key``, each guest's time to it goes into :data:`BOOT_SECONDS` as ``name key``."""
    regex = re.compile(pattern, re.M)
    found: dict[str, re.Match[str]] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(boots) and time.monotonic() < deadline:
        for g in boots:
            if g.name in found:
                continue
            match = regex.search(g.text())
            if match is not None:
                found[g.name] = match
                if key:
                    BOOT_SECONDS[f"{g.name} {key}"] = round(time.monotonic() - g.started, 1)
            elif g.proc.poll() is not None:
                break
        else:
            time.sleep(0.25)
            continue
        break
    for g in boots:
        if g.name not in found:
            err = g.stop()
            pytest.fail(
                f"{g.name}: no match for {pattern!r} within {timeout:.0f} s\n"
                f"--- console (end) ---\n{g.text()[-8000:]}\n--- qemu ---\n{err[-2000:]}"
            )
    return [found[g.name] for g in boots]


BANNER = (
    r"^\[talos\] this machine is reachable at:\r?\n"
    r"(?P<addresses>(?:\[talos\] \t\S+\r?\n)+)"
    r"\[talos\] server certificate fingerprint:\r?\n"
    r"\[talos\] \t(?P<fp>\S+)\r?$"
)


def _wait_configured(g: Guest) -> None:
    """Until the boot sequence is done and the configured API says whether it listens."""
    _wait([g], r"^\[talos\] boot sequence: done", CONFIGURED_TIMEOUT, key="configured")
    (api,) = _wait([g], r"^\[talos\] machine API(:| listening on).*$", CONFIGURED_TIMEOUT)
    assert api.group(0).rstrip() == "[talos] machine API listening on :50000 (mutual TLS)", (
        g.text()[-6000:]
    )


def _banner(match: re.Match[str]) -> tuple[list[str], str]:
    addresses = [line.split("\t", 1)[1].strip() for line in match["addresses"].splitlines()]
    return addresses, match["fp"]


# -- clients --------------------------------------------------------------------------------


def _served_fingerprint(address: str) -> str:
    """The SPKI fingerprint of the certificate ``openssl s_client`` reads from the node."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"{address}:{API_PORT}", "-showcerts"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", done.stdout, re.S)
    assert pem is not None, f"openssl s_client read no certificate:\n{done.stdout}{done.stderr}"
    return spki.fingerprint(pem.group(0).encode())


def _talosctl(
    *args: str, check: bool = True, guest: Guest | None = None
) -> subprocess.CompletedProcess[str]:
    """talosctl; with ``check``, a failure names its output and ``guest``'s console."""
    done = subprocess.run(
        [TALOSCTL, *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and done.returncode != 0:
        console = f"\n--- console (end) ---\n{guest.text()[-6000:]}" if guest else ""
        pytest.fail(f"talosctl {' '.join(args)}: {done.stdout}{done.stderr}{console}")
    return done


def _configs(out: Path, endpoint: str, *patches: str) -> Path:
    """``talos-gen config`` for a metal node that installs nothing (see the module doc)."""
    argv = [TALOS_GEN, "config", "netboot", f"https://{endpoint}:6443", "-o", str(out)]
    argv += ["--install-disk", "/dev/null"]
    for patch in patches:
        argv += ["--config-patch", patch]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return out


def _version(talosconfig: Path, guest: Guest) -> dict[str, str]:
    """``talosctl version`` over mutual TLS: the server's Tag and SHA."""
    address = guest.nic.address
    out = _talosctl(
        "--talosconfig", str(talosconfig), "version", "-e", address, "-n", address, guest=guest
    )
    server = out.stdout.split("Server:", 1)[1]
    return dict(re.findall(r"^\s*(Tag|SHA):\s*(\S*)\s*$", server, re.M))


# -- the tests ------------------------------------------------------------------------------


def test_iso_on_the_network_seabios_and_ovmf_then_apply_config(
    boot_media: Path, image_inputs: Inputs, lab: NetLab, guests: list[Guest], tmp_path: Path
) -> None:
    image = boot_media / iso.ISO_NAME
    vars_copy = tmp_path / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, vars_copy)
    bios_nic, uefi_nic = lab.nics
    guests.append(_start("iso-seabios", tmp_path, bios_nic, ["-cdrom", str(image)]))
    uefi = [
        "-machine",
        "q35",
        "-drive",
        f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
        "-drive",
        f"if=pflash,format=raw,file={vars_copy}",
        "-cdrom",
        str(image),
    ]
    guests.append(_start("iso-ovmf", tmp_path, uefi_nic, uefi))
    banners = _wait(guests, BANNER, BOOT_TIMEOUT, key="banner")
    print(f"boot to banner: {BOOT_SECONDS}")
    fingerprints = {}
    for g, match in zip(guests, banners, strict=True):
        addresses, fp = _banner(match)
        assert addresses[0] == g.nic.address, g.text()[-4000:]  # the address of its MAC
        leased = f"[talos] network: eth0 has {g.nic.address} (DHCP)"
        assert leased in g.text(), g.text()[-4000:]
        assert _served_fingerprint(g.nic.address) == fp, g.name
        fingerprints[g.name] = fp
    assert fingerprints["iso-seabios"] != fingerprints["iso-ovmf"]  # each node its own key

    # apply-config to the SeaBIOS guest, pinning the fingerprint its console printed
    target = guests[0]
    configs = _configs(tmp_path / "gen", target.nic.address)
    wrong = fingerprints["iso-ovmf"]  # negative control: another node's pin is refused
    refused = _talosctl(
        "apply-config",
        "--insecure",
        "-n",
        target.nic.address,
        "--cert-fingerprint",
        wrong,
        "-f",
        str(configs / "controlplane.yaml"),
        check=False,
    )
    assert refused.returncode != 0
    assert "boot sequence" not in target.text()
    _talosctl(
        "apply-config",
        "--insecure",
        "-n",
        target.nic.address,
        "--cert-fingerprint",
        fingerprints[target.name],
        "-f",
        str(configs / "controlplane.yaml"),
        guest=target,
    )
    _wait_configured(target)
    text = target.text()
    assert "[talos] machine type controlplane" in text
    assert "install: /dev/null is 0 MiB" in text  # nothing installed, nothing wiped
    version = _version(configs / "talosconfig", target)
    manifest = json.loads(image_inputs.manifest.read_text())
    assert version == {"Tag": f"v{manifest['version']}", "SHA": manifest["commit"]}
    # the other node is still in maintenance mode: no mutual-TLS API there
    other = _talosctl(
        "--talosconfig",
        str(configs / "talosconfig"),
        "version",
        "-e",
        guests[1].nic.address,
        "-n",
        guests[1].nic.address,
        check=False,
    )
    assert other.returncode != 0
    print(f"boot times: {BOOT_SECONDS}")


def _pxe_patch(tmp_path: Path) -> str:
    files = [
        {"path": RO_PATH, "content": "ro\n", "permissions": 0o644, "op": "create"},
        {"path": VAR_PATH, "content": "one\n", "permissions": 0o644, "op": "create"},
        {"path": VAR_PATH, "content": "two\n", "permissions": 0o644, "op": "create"},
    ]
    patch = tmp_path / "files.yaml"
    patch.write_text(yaml.safe_dump({"machine": {"files": files}}))
    return f"@{patch}"


def test_pxe_fetches_its_config_by_uuid_and_comes_up_configured(
    boot_media: Path, image_inputs: Inputs, lab: NetLab, guests: list[Guest], tmp_path: Path
) -> None:
    nic = lab.nics[0]
    configs = _configs(tmp_path / "gen", nic.address, _pxe_patch(tmp_path))
    text = (configs / "controlplane.yaml").read_bytes()
    url = lab.serve("/c.yaml", gzip.compress(text, mtime=0))
    cmdline = f"{iso.CMDLINE} talos.config={url}?uuid="
    machine = [
        "-uuid",
        UUID,
        "-kernel",
        str(boot_media / pxe.KERNEL),
        "-initrd",
        str(boot_media / pxe.INITRAMFS),
        "-append",
        cmdline,
    ]
    guests.append(_start("pxe", tmp_path, nic, machine))
    g = guests[0]
    _wait_configured(g)
    console = g.text()
    assert lab.requests() == [f"/c.yaml?uuid={UUID}"]  # one fetch, the SMBIOS UUID filled in
    assert f"[talos] config loaded from http://{GATEWAY}:{lab.port}/c.yaml?uuid={UUID}" in console
    assert "maintenance" not in console
    assert "[talos] machine type controlplane" in console

    talosconfig = configs / "talosconfig"
    common = ("--talosconfig", str(talosconfig), "-e", nic.address, "-n", nic.address)
    manifest = json.loads(image_inputs.manifest.read_text())
    assert _version(talosconfig, g) == {
        "Tag": f"v{manifest['version']}",
        "SHA": manifest["commit"],
    }

    listed = _talosctl(*common, "processes", guest=g).stdout.splitlines()
    assert listed[0].split()[:2] == ["NODE", "PID"], listed
    rows = [line.split() for line in listed[1:]]
    pid1 = [r for r in rows if r[1] == "1"]
    assert len(pid1) == 1 and "talos-init" in " ".join(pid1[0][7:]), listed
    commands = [" ".join(r[7:]) for r in rows]
    shells = [c for c in commands if re.search(r"(^|/)(ba|da|busybox )?sh( |$)", c)]
    assert shells == [], commands
    assert any("talos_init.dhcp" in c for c in commands), commands  # the list is the node's

    log = _talosctl(*common, "logs", "machined", guest=g).stdout
    assert f"machine.files[0]: {RO_PATH}" in log and "Read-only file system" in log, log
    assert f"machine.files[2]: {VAR_PATH} exists, left as is" in log, log  # [1] wrote it
    assert "machine.files[1]" not in log, log
    print(f"boot times: {BOOT_SECONDS}")
