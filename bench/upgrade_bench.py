"""Install, upgrade and automatic rollback of one VM, each beside a plain reboot of the same VM.

QEMU under TCG, one vCPU, 1 GiB, ``-no-reboot`` (a reboot ends QEMU and the next boot is started
at once with the disk alone: firmware, GRUB, kernel, talos-init), on the test network of
tests/image/netlab.py inside a private network namespace (this process re-executed under
``unshare --net``). Figures, in seconds:

* install: ``apply-config --insecure`` to the node booted from the ISO in maintenance mode
  (the config of the upgrade test: LUKS2 STATE and EPHEMERAL, the booted system installed),
  until the node answers configured after the install's reboot from its disk;
* reboot: ``talosctl reboot`` until the node answers configured again (the reference);
* upgrade: ``talosctl upgrade --image URL --preserve`` (a second bundle, another version) until
  the new version answers from the other slot;
* broken upgrade: the same with a bundle whose kernel panics, until the previous version
  answers again (GRUB's try of the broken slot, the panic, ``panic=10``, the fallback).

Run as root after ``just image``: ``python bench/upgrade_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "_out"
WORK = ROOT / "_build"
EPOCH = 1_700_000_000
TIMEOUT = 3600.0


def _in_namespace(tmp: Path, out: Path, build: Path) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "tests"))
    from image import test_upgrade as tu  # the upgrade test's VM helpers
    from image.netlab import NetLab
    from image.vm import TALOSCTL
    from talos_image import installer, iso, layout, media, pxe

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    inputs = media.inputs(out, build, rootfs=layout.rootfs(out), epoch=EPOCH)
    v2_inputs = installer.reversioned(
        inputs, layout.root_dir(build), tmp / "v2work", tu.V2, epoch=EPOCH
    )
    v2 = installer.build(
        tmp / "v2",
        v2_inputs,
        epoch=EPOCH,
        initrd=pxe.build_initramfs(tmp / "v2work", v2_inputs, epoch=EPOCH),
    )
    panics = tu.with_cmdline(v2, tmp / "panic" / "installer.tar", "rdinit=/no-such-init")
    iso_path = iso.build_image(
        tmp / iso.ISO_NAME, inputs, epoch=EPOCH, cmdline=f"{iso.CMDLINE} {tu.FAST_PBKDF}"
    )
    figures: dict[str, float] = {}
    with NetLab(tmp / "net", guests=1) as lab:
        nic = lab.nics[0]
        urls = {
            name: lab.serve(f"/{name}.tar", path.read_bytes())
            for name, path in (("v2", v2), ("panic", panics))
        }
        configs = tu._gen(tmp / "gen", nic.address)
        node = tu.Node(tmp, nic, configs / "talosconfig")
        try:
            g = node.boot("iso", extra=["-cdrom", str(iso_path), "-boot", "order=dc"])
            g.wait(tu.FINGERPRINT, tu.STEP_TIMEOUT)
            started = time.monotonic()
            subprocess.run(
                [TALOSCTL, "apply-config", "--insecure", "-n", nic.address,
                 "--file", str(configs / "controlplane.yaml")],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            g.wait_exit(tu.STEP_TIMEOUT, "installed")
            g = node.boot("disk")
            tu._configured(g, "configured")
            figures["install"] = time.monotonic() - started

            for name, action, expect in (
                ("reboot", ["reboot"], ""),
                ("upgrade", ["upgrade", "--image", urls["v2"], "--preserve"], "B"),
                ("broken upgrade", ["upgrade", "--image", urls["panic"], "--preserve"], "B"),
            ):
                started = time.monotonic()
                node.talosctl(g, *action)
                g.wait_exit(tu.STEP_TIMEOUT, name)
                g = node.boot(name.replace(" ", "-"))
                if name == "broken upgrade":  # the panicking try ends QEMU by itself
                    g.wait_exit(tu.STEP_TIMEOUT, "panic")
                    g = node.boot("fallback")
                tu._configured(g, "configured")
                figures[name] = time.monotonic() - started
                slot = node.version(g).get("Slot", "")
                if expect and not slot.startswith(expect):
                    raise SystemExit(f"bench: {name}: the node runs slot {slot!r}, not {expect}")
                if name == "upgrade":  # a slot on trial refuses the next upgrade: wait for it
                    g.wait(r"^\[talos\] bootloader: slot B marked good", tu.STEP_TIMEOUT)
        finally:
            for guest in node.guests:
                guest.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the build's output directory")
    parser.add_argument("--work", type=Path, default=WORK, help="the build's work directory")
    parser.add_argument("--in-namespace", metavar="TMP", help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    out, build = args.out.absolute(), args.work.absolute()
    if args.in_namespace:
        print(json.dumps(_in_namespace(Path(args.in_namespace), out, build)))
        return 0
    if os.geteuid() != 0:
        print("upgrade: skipped (needs root: QEMU's taps in a network namespace)")
        return 0
    if not (out / "rootfs-amd64.sqsh").exists():
        print(f"upgrade: skipped (no {out}/rootfs-amd64.sqsh: run `just image` first)")
        return 0
    with tempfile.TemporaryDirectory(prefix="upgrade-bench-", dir="/var/tmp") as tmp:
        argv2 = [sys.executable, __file__, "--in-namespace", tmp, "--out", str(out)]
        done = subprocess.run(
            ["unshare", "--net", *argv2, "--work", str(build)],
            capture_output=True,
            text=True,
            check=False,
            timeout=TIMEOUT,
        )
    if done.returncode != 0:
        raise SystemExit(f"bench: upgrade: {done.stdout[-1000:]}\n{done.stderr[-3000:]}")
    f = json.loads(done.stdout.strip().splitlines()[-1])
    base = f["reboot"]
    print("upgrade (one VM, QEMU TCG 1 vCPU 1 GiB; a plain reboot of the same VM as reference)")
    print(f"  plain reboot to configured:          {base:6.1f} s   1.00x")
    for name, label in (
        ("install", "apply-config to configured (install)"),
        ("upgrade", "upgrade call to new version answering"),
        ("broken upgrade", "broken upgrade to previous answering"),
    ):
        print(f"  {label + ':':37s}{f[name]:6.1f} s   {f[name] / base:4.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
