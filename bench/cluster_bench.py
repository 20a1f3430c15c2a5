"""talos-cluster figures: ``cluster create`` until the nodes are up (and etcd healthy on every
control-plane node, when bootstrap runs), and ``cluster destroy``, for 1+1 and 3+2 nodes.

Reference, measured in the same run: the floor of starting as many Python PID 1s, i.e. the same
number of ``talos-init --help`` runs one after the other (interpreter + CLI import, no boot).
Goals from the issue: 1+1 under 10 s, 3+2 under 20 s (Talos's docker quickstart shows nodes
after about 115 s, Kubernetes included, so that figure is not comparable).

The clusters use the default layout: the bridge in the namespace create runs in. The bench
first moves itself into a private network namespace (``unshare(CLONE_NEWNET)``, ``lo`` up), so
the bridges, routes and veth ends it makes never reach the machine's own namespace; the
figures are the same as from a user's shell.

Run: ``python bench/cluster_bench.py [--runs N]`` (root) or through ``bench/run.py cluster``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BIN, row

TALOS_CLUSTER = str(BIN / "talos-cluster")
TALOS_INIT = str(BIN / "talos-init")


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600, env=env)
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:2])} failed: {res.stderr[-600:]}")
    return took, res.stdout + res.stderr


def _shape(masters: int, workers: int, runs: int, tmp: Path) -> None:
    count = masters + workers
    creates, destroys = [], []
    etcd = True
    # the user's kubeconfig and talosconfig are the bench's own (create merges into them)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "TALOSCONFIG")}
    env["HOME"] = str(tmp)
    env["KUBECONFIG"] = str(tmp / "kubeconfig")
    for i in range(runs):
        name = f"bench{os.getpid() % 100000}x{masters}x{workers}x{i}"
        common = ["--name", name, "--state-dir", str(tmp / "clusters")]
        took, out = _run(
            [
                TALOS_CLUSTER,
                "create",
                *common,
                "--masters",
                str(masters),
                "--workers",
                str(workers),
                "--talosconfig",
                str(tmp / "talosconfig"),
            ],
            env,
        )
        creates.append(took)
        # create returns once etcd answers on every control plane, each listing itself
        etcd = etcd and out.count(": member\n") >= masters
        took, _ = _run([TALOS_CLUSTER, "destroy", *common], env)
        destroys.append(took)
    floor = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(count):
            subprocess.run([TALOS_INIT, "--help"], capture_output=True, check=True)
        floor.append(time.perf_counter() - start)
    ref = statistics.median(floor)
    what = "etcd healthy on every control plane, API on every node"
    if not etcd:
        what = "nodes up (bootstrap skipped)"
    label = f"{masters}+{workers}"
    print(f"-- {label}: create -> {what}; median of {runs}")
    row(f"{count} x talos-init --help (floor)", ref)
    goal = "< 10 s" if count <= 2 else "< 20 s"
    row(f"cluster create {label}", statistics.median(creates), "floor", ref, goal)
    row(f"cluster destroy {label}", statistics.median(destroys), "floor", ref)


def _private_network_namespace() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        raise SystemExit(f"bench: unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv if argv is not None else [])
    print("== talos-cluster create / destroy")
    if os.geteuid() != 0:
        print("skipped: needs root (network and PID namespaces)")
        return
    _private_network_namespace()
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as d:
        tmp = Path(d)
        for masters, workers in ((1, 1), (3, 2)):
            _shape(masters, workers, args.runs, tmp)


if __name__ == "__main__":
    main(sys.argv[1:])
