"""etcd 3.4 across a cluster's nodes, with the certificates and command lines of libtalos.k8s.

A 3+0 cluster with a stand-in PID 1 gives three node namespaces on the cluster's bridge
(10.5.0.2-4). In each, the real etcd runs with the rendered command line: the first node starts
a new cluster, the two others join it (member add, ``initial-cluster-state=existing``), each
with server/peer certificates naming only its own IP, so the peers' TLS checks see the real
source addresses of the bridge. etcdctl then finds three healthy members from every node.
This is what talos-init's etcd service will run; here the test plays the supervisor.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from talos_cluster import state
from talos_cluster.cli import main

from libtalos import pki
from libtalos.k8s.etcd import EtcdArgs, etcd_command, issue_etcd_certs

from .conftest import Env

# a trivial PID 1 with the stand-in handshake: "ready" once up
STAND_IN = "sh -c 'echo ready; exec sleep 600'"

pytestmark = [pytest.mark.system, pytest.mark.etcd]


def _nsenter(ns: str, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", "--", *argv]


def test_etcd_bootstrap_and_join_over_the_bridge(env: Env, tmp_path: Path) -> None:
    etcd, etcdctl = shutil.which("etcd"), shutil.which("etcdctl")
    if etcd is None or etcdctl is None:
        pytest.skip("etcd and etcdctl are needed (Debian packages etcd-server, etcd-client)")
    assert (
        main(env.create_args("--masters", "3", "--workers", "0", "--node-command", STAND_IN)) == 0
    )
    record = state.load(env.cluster_dir)
    assert record is not None
    bundle = pki.generate_secrets()
    procs: list[subprocess.Popen[bytes]] = []

    def ctl(node: state.NodeRecord, pki_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _nsenter(
                node.netns,
                [
                    etcdctl,
                    f"--endpoints=https://{node.ip}:2379",
                    f"--cacert={pki_dir / 'ca.crt'}",
                    f"--cert={pki_dir / 'client.crt'}",
                    f"--key={pki_dir / 'client.key'}",
                    "--dial-timeout=2s",
                    *args,
                ],
            ),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
        )

    def healthy(node: state.NodeRecord, pki_dir: Path, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while ctl(node, pki_dir, "endpoint", "health").returncode != 0:
            assert proc.poll() is None, (pki_dir.parent / "etcd.log").read_text()[-2000:]
            if time.monotonic() > deadline:
                pytest.fail(f"etcd on {node.name} not healthy")
            time.sleep(0.2)

    try:
        dirs = {}
        initial: dict[str, list[str]] = {}
        for i, node in enumerate(record.nodes):
            root = tmp_path / node.name
            pki_dir = root / "pki"
            pki_dir.mkdir(parents=True)
            certs = issue_etcd_certs(bundle.etcd_ca, hostname=node.name, ips=[node.ip])
            for fname, (data, mode) in certs.files().items():
                (pki_dir / fname).write_bytes(data)
                (pki_dir / fname).chmod(mode)
            dirs[node.name] = pki_dir
            common = {
                "name": node.name,
                "advertise_ip": node.ip,
                "data_dir": str(root / "data"),
                "pki_dir": str(pki_dir),
                "binary": etcd,
            }
            if i == 0:
                argv = etcd_command(EtcdArgs(**common))  # type: ignore[arg-type]
            else:
                first = record.nodes[0]
                # etcd refuses a member add until the previous member is connected
                # ("unhealthy cluster"): retry, as Talos's join does
                deadline = time.monotonic() + 60
                while True:
                    added = ctl(
                        first,
                        dirs[first.name],
                        "member",
                        "add",
                        node.name,
                        f"--peer-urls=https://{node.ip}:2380",
                        "-w",
                        "json",
                    )
                    if added.returncode == 0 or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                assert added.returncode == 0, added.stderr
                initial = {
                    (m.get("name") or node.name): m["peerURLs"]
                    for m in json.loads(added.stdout)["members"]
                }
                argv = etcd_command(
                    EtcdArgs(**common, state="existing", initial_cluster=initial)  # type: ignore[arg-type]
                )
            with (root / "etcd.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        _nsenter(node.netns, argv), stdout=log, stderr=subprocess.STDOUT
                    )
                )
            healthy(node, pki_dir, procs[-1])
        for node in record.nodes:
            listed = ctl(node, dirs[node.name], "member", "list", "-w", "json")
            assert listed.returncode == 0, listed.stderr
            names = sorted(m["name"] for m in json.loads(listed.stdout)["members"])
            assert names == sorted(n.name for n in record.nodes)
        # negative control: a peer certificate for another IP is refused by the members
        first = record.nodes[0]
        wrong = tmp_path / "wrong"
        wrong.mkdir()
        bad = issue_etcd_certs(pki.generate_secrets().etcd_ca, hostname="x", ips=[first.ip])
        for fname, (data, _) in bad.files().items():
            (wrong / fname).write_bytes(data)
        (wrong / "ca.crt").write_bytes(bundle.etcd_ca.crt)
        assert ctl(first, wrong, "endpoint", "health").returncode != 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert main(["destroy", *env.args(), "--grace", "1"]) == 0
