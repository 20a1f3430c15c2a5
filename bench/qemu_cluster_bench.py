"""qemu provisioner figures: ``cluster create --provisioner qemu`` of 1 control plane + 1 worker
until etcd is healthy and every node's API answers, ``cluster destroy``, and each VM's memory
(QEMU's resident set) once the cluster is up.

Reference, measured in the same run: the namespace provisioner's create and destroy of 1+1.
Goal from the issue: create 1+1 under TCG to etcd healthy within 3 minutes.

The boot media (the ISO, or the kernel and initramfs, and the installer bundle) are made in a
temporary directory from the image build in ``_out/`` and ``_build/`` (``just image``), or taken
from ``--media DIR`` (``talos-amd64.iso``, ``vmlinuz-amd64``, ``initramfs-amd64.xz``,
``installer-amd64.tar``). The bench runs itself again under ``unshare --net``: the bridge, taps,
dnsmasq and HTTP server never reach the machine's own network namespace (nor that of the
process that started it, ``bench/run.py``). Without root, the tools or a build it is skipped.

Run: ``python bench/qemu_cluster_bench.py [--boot iso|pxe] [--media DIR]`` (root).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BIN, row

ROOT = Path(__file__).resolve().parent.parent
TALOS_CLUSTER = str(BIN / "talos-cluster")


def _run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, str]:
    start = time.perf_counter()
    res = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=timeout, env=env
    )
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:4])} failed: {res.stderr[-1500:]}")
    return took, res.stdout + res.stderr


def _media(given: Path | None, tmp: Path) -> Path:
    if given is not None:
        return given
    from talos_image import installer, iso, layout, pxe
    from talos_image.media import Inputs
    from talos_image.rootfs import load

    image = load(ROOT / layout.DEFAULT_OUT, ROOT / layout.DEFAULT_WORK)
    root = Path(image.root_dir)
    inputs = Inputs(
        squashfs=Path(image.squashfs),
        kernel=Path(image.kernel),
        modules_dir=layout.modules_dir(root, image.kernel_version),
        manifest=root / layout.VERSION_FILE,
    )
    out = tmp / "media"
    files = pxe.build(out, inputs, epoch=1_700_000_000)
    iso.build_image(out / iso.ISO_NAME, inputs, epoch=1_700_000_000)
    installer.build(out, inputs, epoch=1_700_000_000, initrd=files.initramfs)
    return out


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _skip_reason(media: Path | None) -> str | None:
    from talos_cluster.qemu.options import missing_tools
    from talos_image import layout

    if os.geteuid() != 0:
        return "needs root (bridge, taps, dnsmasq)"
    reason = missing_tools(uefi=False)
    if reason is not None:
        return reason
    if media is None and not layout.rootfs(ROOT / layout.DEFAULT_OUT).is_file():
        return f"no image build in {ROOT / layout.DEFAULT_OUT}: run `just image` first"
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boot", choices=("iso", "pxe"), default="iso")
    parser.add_argument("--media", type=Path, default=None)
    parser.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else [])
    if not args.in_namespace:
        print("== talos-cluster create --provisioner qemu / destroy (1+1)")
        reason = _skip_reason(args.media)
        if reason is not None:
            print(f"skipped: {reason}")
            return
        again = [sys.executable, __file__, "--in-namespace", "--boot", args.boot]
        again += ["--media", str(args.media.absolute())] if args.media else []
        sys.stdout.flush()
        done = subprocess.run(["unshare", "--net", *again], check=False, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"bench: qemu cluster: exited {done.returncode}")
        return
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    from talos_cluster import state

    with tempfile.TemporaryDirectory(prefix="qemu-cluster-bench-") as d:
        tmp = Path(d)
        media = _media(args.media, tmp)
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "TALOSCONFIG")}
        env["HOME"], env["KUBECONFIG"] = str(tmp), str(tmp / "kubeconfig")
        states = tmp / "clusters"
        common = ["--state-dir", str(states), "--talosconfig", str(tmp / "talosconfig")]

        ns_create, _ = _run([TALOS_CLUSTER, "create", "--name", "ref", *common], env, 600)
        ns_destroy, _ = _run(
            [TALOS_CLUSTER, "destroy", "--name", "ref", "--state-dir", str(states)], env, 600
        )
        boot = (
            ["--iso-path", str(media / "talos-amd64.iso")]
            if args.boot == "iso"
            else ["--initrd-path", str(media / "initramfs-amd64.xz")]
        )
        qemu = [
            TALOS_CLUSTER,
            "create",
            "--provisioner",
            "qemu",
            "--name",
            "vm",
            *common,
            *boot,
            "--vmlinuz-path",
            str(media / "vmlinuz-amd64"),
            "--install-image",
            str(media / "installer-amd64.tar"),
            "--cpus",
            "1",
            "--cpus-workers",
            "1",
            "--memory",
            "1024",
            "--memory-workers",
            "1024",
        ]
        # the accelerator probe runs once per machine boot; not part of the figure
        (states).mkdir(parents=True, exist_ok=True)
        from talos_cluster.qemu import vm

        vm.choose_accel(media / "vmlinuz-amd64", states / ".accel.json")
        vm_create, out = _run(qemu, env, 1800)
        record = state.load(states / "vm")
        assert record is not None
        rss = {n.name: _rss_mib(n.pid) for n in record.nodes}
        vm_destroy, _ = _run(
            [TALOS_CLUSTER, "destroy", "--name", "vm", "--state-dir", str(states)], env, 600
        )
    etcd = out.count(": member\n") >= 1
    print(f"-- accelerator {record.accel}, boot {args.boot}, etcd healthy: {etcd}")
    row("namespace create 1+1 (reference)", ns_create)
    row("qemu create 1+1 to etcd healthy", vm_create, "namespace", ns_create, "< 180 s")
    row("namespace destroy 1+1 (reference)", ns_destroy)
    row("qemu destroy 1+1", vm_destroy, "namespace", ns_destroy)
    for name, mib in rss.items():
        print(f"{'VM memory (QEMU RSS) ' + name:<44} {mib:9.1f} MiB   of 1024 MiB given")


if __name__ == "__main__":
    main(sys.argv[1:])
