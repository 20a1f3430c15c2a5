"""The OS image: build time, sizes, boot to the maintenance banner and idle memory, each beside
a reference measured in the same run.

* build: ``talos-image rootfs`` from a warm .deb cache (``_build/cache/debs``, filled by
  ``just image``) on this machine's 2 cores. Goal: at most 3 minutes. Reference: the plain root
  the goal was set against, ``mmdebstrap --variant=minbase`` with python3, python3-cryptography
  and etcd-server from the same cache, packed by ``mksquashfs -comp xz``.
* sizes: the squashfs and the ISO beside that reference root's squashfs. Goal: ISO at most
  100 MB.
* boot: QEMU under TCG, one vCPU, 1 GiB, no NIC, from start until the serial console shows the
  maintenance banner (the fingerprint line): the ISO with SeaBIOS and with OVMF, and the PXE
  kernel and initramfs (``-kernel/-initrd``). Goal: at most 20 s. Reference: an ISO made the
  same way (grub-mkrescue, the same kernel and command line) whose initramfs is busybox and an
  ``/init`` that prints a line, with SeaBIOS and OVMF.
* memory: a PXE node brought up configured (``talos.config=`` over HTTP, in a private network
  namespace: tests/image/netlab.py), ``talosctl memory`` once its boot sequence is done: used
  memory (total - available) beside the guest's RAM and Talos's 1 GB worker minimum.

Run as root: ``python bench/image_bench.py [--skip-build] [--runs N] [--out DIR --work DIR]``.
Needs ``just image`` first (the cache and ``_out/``), or the boots and memory take the build in
``--out`` and ``--work`` (``talos-image rootfs -o DIR --work DIR``'s) instead of ``_out/`` and
``_build/``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
OUT = ROOT / "_out"
WORK = ROOT / "_build"
CACHE = WORK / "cache" / "debs"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
BANNER = b"[talos] server certificate fingerprint:"
REFERENCE_LINE = b"reference-init: up"
REFERENCE_PACKAGES = ("python3", "python3-cryptography", "etcd-server")
TIMEOUT = 600.0
EPOCH = 1_700_000_000  # the media's timestamps (not measured)
MB = 1_000_000


def _run(argv: list[str], **kwargs: object) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed: {done.stderr[-800:]}")


def _timed(argv: list[str], **kwargs: object) -> float:
    start = time.monotonic()
    _run(argv, **kwargs)
    return time.monotonic() - start


# ---------------------------------------------------------------- build and sizes


def build_figures(tmp: Path) -> dict[str, float]:
    from talos_image.rootfs import SQUASHFS_COMPRESSION

    ours = _timed(
        [
            str(BIN / "talos-image"),
            "rootfs",
            "-o",
            str(tmp / "out"),
            "--work",
            str(tmp / "work"),
            "--cache",
            str(CACHE),
        ]
    )
    ref_root = tmp / "ref-root"
    start = time.monotonic()
    _run(
        [
            "mmdebstrap",
            "--quiet",
            "--mode=root",
            "--variant=minbase",
            "--format=directory",
            "--include=" + ",".join(REFERENCE_PACKAGES),
            '--setup-hook=mkdir -p "$1/var/cache/apt/archives"',
            f"--setup-hook=sync-in {CACHE} /var/cache/apt/archives",
            f"--customize-hook=sync-out /var/cache/apt/archives {CACHE}",
            "bookworm",
            str(ref_root),
            "http://deb.debian.org/debian",
        ]
    )
    ref_sqsh = tmp / "ref.sqsh"
    _run(["mksquashfs", str(ref_root), str(ref_sqsh), "-comp", "xz", "-noappend", "-quiet"])
    reference = time.monotonic() - start
    ref_ours_comp = tmp / "ref-ours-comp.sqsh"
    _run(["mksquashfs", str(ref_root), str(ref_ours_comp), *SQUASHFS_COMPRESSION, "-noappend"])
    shutil.rmtree(ref_root)
    return {
        "build_s": ours,
        "ref_build_s": reference,
        "squashfs_mb": (tmp / "out" / "rootfs-amd64.sqsh").stat().st_size / MB,
        "ref_squashfs_mb": ref_sqsh.stat().st_size / MB,
        "ref_squashfs_ours_comp_mb": ref_ours_comp.stat().st_size / MB,
    }


# ---------------------------------------------------------------- boots


def _boot(name: str, work: Path, machine: list[str], marker: bytes) -> float:
    """Seconds from QEMU's start until ``marker`` is on the serial console."""
    serial = work / f"{name}.serial"
    cmd = [
        "qemu-system-x86_64",
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
        "-nic",
        "none",
        "-serial",
        f"file:{serial}",
        *machine,
    ]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        while time.monotonic() - start < TIMEOUT:
            if serial.exists() and marker in serial.read_bytes():
                return time.monotonic() - start
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = serial.read_bytes()[-2000:].decode("utf-8", "replace") if serial.exists() else ""
        raise SystemExit(f"bench: {name} did not reach {marker!r}:\n{tail}")
    finally:
        proc.kill()
        proc.wait()


def _ovmf(work: Path, name: str) -> list[str]:
    vars_copy = work / f"{name}-vars.fd"
    shutil.copyfile(OVMF_VARS, vars_copy)
    return [
        "-machine",
        "q35",
        "-drive",
        f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
        "-drive",
        f"if=pflash,format=raw,unit=1,file={vars_copy}",
    ]


def _cdrom(image: Path) -> list[str]:
    return ["-drive", f"if=ide,media=cdrom,readonly=on,file={image}"]


def reference_iso(work: Path, kernel: Path, epoch: int) -> Path:
    """grub-mkrescue's ISO of the same kernel with a busybox ``/init`` that prints a line."""
    from talos_image import initramfs, iso

    init = (
        "#!/bin/busybox sh\n"
        f"/bin/busybox echo {REFERENCE_LINE.decode()}\n"
        "exec /bin/busybox poweroff -f\n"
    )
    entries = [
        initramfs.Entry("bin", initramfs.DIR),
        initramfs.Entry("dev", initramfs.DIR),
        initramfs.Entry("bin/busybox", initramfs.EXEC, initramfs.BUSYBOX.read_bytes()),
        initramfs.Entry("init", initramfs.EXEC, init.encode()),
        initramfs.Entry("dev/console", initramfs.CHAR, rdev=(5, 1)),
    ]
    archive = work / "ref-initramfs.xz"
    archive.write_bytes(initramfs.xz(initramfs.newc(entries, mtime=epoch)))
    return iso.build(work / "ref.iso", kernel, archive, epoch=epoch)


def boot_figures(work: Path, runs: int, out: Path, build: Path) -> dict[str, list[float]]:
    """Boots of the media made from the build in ``out`` and ``build``."""
    from talos_image import iso, layout, media, pxe

    inputs = media.inputs(out, build, rootfs=layout.rootfs(out), epoch=EPOCH)
    epoch = EPOCH
    ours_iso = iso.build_image(work / iso.ISO_NAME, inputs, epoch=epoch)
    files = pxe.build(work / "pxe", inputs, epoch=epoch)
    ref_iso = reference_iso(work, inputs.kernel, epoch)
    figures: dict[str, list[float]] = {
        "iso_mb": [ours_iso.stat().st_size / MB],
        "ref_iso_mb": [ref_iso.stat().st_size / MB],
    }
    pxe_args = [
        "-kernel",
        str(files.kernel),
        "-initrd",
        str(files.initramfs),
        "-append",
        iso.CMDLINE,
    ]
    for i in range(runs):
        for name, machine, marker in (
            ("seabios", _cdrom(ours_iso), BANNER),
            ("ref-seabios", _cdrom(ref_iso), REFERENCE_LINE),
            ("ovmf", [*_ovmf(work, f"o{i}"), *_cdrom(ours_iso)], BANNER),
            ("ref-ovmf", [*_ovmf(work, f"r{i}"), *_cdrom(ref_iso)], REFERENCE_LINE),
            ("pxe", pxe_args, BANNER),
        ):
            figures.setdefault(name, []).append(_boot(f"{name}-{i}", work, machine, marker))
    return figures


# ---------------------------------------------------------------- idle memory


def memory_figure(work: Path, out: Path, build: Path) -> dict[str, float]:
    """In a private network namespace (this process re-executed under ``unshare --net``)."""
    argv = [sys.executable, __file__, "--memory-only", str(work), "--out", str(out)]
    done = subprocess.run(
        ["unshare", "--net", *argv, "--work", str(build)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: memory: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    used, total = (float(x) for x in done.stdout.split())
    return {"used_mb": used, "total_mb": total}


def _memory_in_namespace(work: Path, out: Path, build: Path) -> None:
    import gzip

    sys.path.insert(0, str(ROOT / "tests"))
    from image import test_netboot as nb  # the networked boot's helpers
    from image.netlab import NetLab
    from talos_image import iso, layout, media, pxe

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    inputs = media.inputs(out, build, rootfs=layout.rootfs(out), epoch=EPOCH)
    files = pxe.build(work / "pxe-mem", inputs, epoch=EPOCH)
    with NetLab(work, guests=1) as lab:
        nic = lab.nics[0]
        configs = nb._configs(work / "gen", nic.address)
        url = lab.serve("/c.yaml", gzip.compress((configs / "controlplane.yaml").read_bytes()))
        machine = [
            "-kernel",
            str(files.kernel),
            "-initrd",
            str(files.initramfs),
            "-append",
            f"{iso.CMDLINE} talos.config={url}",
        ]
        guest = nb._start("mem", work, nic, machine)
        try:
            nb._wait_configured(guest)
            time.sleep(10)  # idle: let the boot's short-lived work end
            listing = subprocess.run(
                [
                    str(BIN / "talosctl"),
                    "--talosconfig",
                    str(configs / "talosconfig"),
                    "-e",
                    nic.address,
                    "-n",
                    nic.address,
                    "memory",
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout
        finally:
            guest.stop()
    header, row = listing.splitlines()[:2]
    cols = dict(zip(header.split(), row.split(), strict=False))
    total = float(cols["TOTAL"])
    used = total - float(cols["AVAILABLE"])  # talosctl memory's MB columns
    print(used, total)


# ---------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-build", action="store_true", help="no build-time figures")
    parser.add_argument("--runs", type=int, default=1, help="boots of each medium")
    parser.add_argument(
        "--out", type=Path, default=OUT, help="the build's output directory (default: _out)"
    )
    parser.add_argument(
        "--work", type=Path, default=WORK, help="the build's work directory (default: _build)"
    )
    parser.add_argument("--memory-only", metavar="WORK", help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    out, build = args.out.absolute(), args.work.absolute()
    if args.memory_only:
        _memory_in_namespace(Path(args.memory_only), out, build)
        return 0
    if os.geteuid() != 0:
        print("image: skipped (needs root: mmdebstrap, QEMU's taps)")
        return 0
    if not (out / "rootfs-amd64.sqsh").exists():
        print(f"image: skipped (no {out}/rootfs-amd64.sqsh: run `just image` first)")
        return 0
    with tempfile.TemporaryDirectory(prefix="image-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        print("image (talos-image, QEMU TCG 1 vCPU 1 GiB; references measured in this run)")
        if not args.skip_build:
            b = build_figures(work / "build")
            ratio = b["build_s"] / b["ref_build_s"]
            print(
                f"  build, warm cache:  {b['build_s']:6.1f} s   reference minbase root "
                f"{b['ref_build_s']:5.1f} s   ({ratio:.2f}x; goal 180 s)"
            )
            print(
                f"  squashfs:           {b['squashfs_mb']:6.1f} MB  reference root, xz "
                f"{b['ref_squashfs_mb']:5.1f} MB, with ours' options "
                f"{b['ref_squashfs_ours_comp_mb']:5.1f} MB"
            )
        f = boot_figures(work, args.runs, out, build)
        med = {k: sorted(v)[len(v) // 2] for k, v in f.items()}
        print(
            f"  ISO:                {med['iso_mb']:6.1f} MB  reference ISO (busybox init) "
            f"{med['ref_iso_mb']:5.1f} MB   (goal 100 MB)"
        )
        for name in ("seabios", "ovmf"):
            ref = med["ref-" + name]
            print(
                f"  ISO boot, {name:8s}  {med[name]:6.1f} s   reference {ref:5.1f} s"
                f"   ({med[name] / ref:.2f}x; goal 20 s to the banner)"
            )
        print(f"  PXE boot:           {med['pxe']:6.1f} s   (goal 20 s to the banner)")
        m = memory_figure(work, out, build)
        print(
            f"  idle memory, configured PXE node: {m['used_mb']:.0f} MB used (total - available) "
            f"of {m['total_mb']:.0f} MB; Talos's worker minimum is 1 GB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
