"""The machine API served by talos-init as a real PID 1 (private PID, mount, UTS and network
namespaces): maintenance mode, then mutual TLS once a config is applied; Bootstrap runs the real
etcd 3.4 under the supervisor. Every packet stays on the node's own loopback."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from init.harness import NodeRun

from .conftest import Material, api

pytestmark = pytest.mark.system

BANNER_FP = r"^\[talos\] \t(\S+=)$"
MTLS = r"machine API listening on :50000 \(mutual TLS\)"
WRONG_PIN = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def test_maintenance_apply_then_mutual_tls(start_node, material: Material, tmp_path: Path) -> None:
    node, state = start_node()
    node.expect(r"\[talos\] starting maintenance service$")
    node.expect(r"\[talos\] this machine is reachable at:$")
    node.expect("server certificate fingerprint:")
    pin = node.expect(BANNER_FP).group(1)
    node.expect(r"apply-config --insecure --nodes \S+ --file <config.yaml>")
    node.expect("maintenance service listening on :50000")
    persisted = state / "state" / "config.yaml"

    # a wrong pin is refused before the config is sent: the node stays in maintenance mode
    bad = api(
        node,
        "apply-config",
        "--insecure",
        "--nodes",
        "127.0.0.1",
        "--cert-fingerprint",
        WRONG_PIN,
        "--file",
        str(material.controlplane),
    )
    assert bad.returncode != 0
    assert "fingerprint" in bad.stderr.lower(), bad.stderr
    # malformed YAML: InvalidArgument naming the problem, nothing persisted
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: v1alpha1\nmachine: [\n")
    bad = api(node, "apply-config", "--insecure", "--nodes", "127.0.0.1", "--file", str(broken))
    assert bad.returncode != 0 and "malformed YAML" in bad.stderr, bad.stderr
    assert not persisted.exists()
    # maintenance mode serves ApplyConfiguration and Version only
    denied = api(node, "--talosconfig", str(material.talosconfig), "services")
    assert denied.returncode != 0

    ok = api(
        node,
        "apply-config",
        "--insecure",
        "--nodes",
        "127.0.0.1",
        "--cert-fingerprint",
        pin,
        "--file",
        str(material.controlplane),
    )
    assert ok.returncode == 0, ok.stderr
    node.expect("config accepted from <api>|machine type controlplane")
    node.expect(MTLS)
    assert persisted.exists()
    assert persisted.read_text() == material.controlplane.read_text()

    tc = ["--talosconfig", str(material.talosconfig)]
    version = api(node, *tc, "version")
    assert version.returncode == 0, version.stderr
    assert "container (container)" in version.stdout
    services = api(node, *tc, "services", "-o", "json")
    assert services.returncode == 0, services.stderr
    assert '"kubelet"' in services.stdout and "Skipped" in services.stdout
    # etcd is not running before Bootstrap: a clear refusal
    members = api(node, *tc, "etcd", "members")
    assert members.returncode != 0 and "bootstrap first" in members.stderr, members.stderr
    # negative controls: a client certificate from another CA, and no client certificate
    foreign = api(node, "--talosconfig", str(material.foreign_talosconfig), "version")
    assert foreign.returncode != 0
    insecure = api(
        node,
        "apply-config",
        "--insecure",
        "--nodes",
        "127.0.0.1",
        "--file",
        str(material.controlplane),
    )
    assert insecure.returncode != 0


def _etcd_members(node: NodeRun, tc: list[str], want: str, bound: float = 60) -> set[str]:
    """Poll ``etcd members`` until ``want`` is listed; the member IDs (bounded; the bound only
    fails a broken node, it measures nothing)."""
    deadline = time.monotonic() + bound
    while True:
        res = api(node, *tc, "etcd", "members")
        rows = [line.split() for line in res.stdout.splitlines()[1:]]
        if res.returncode == 0 and any(want in row for row in rows):
            return {row[1] for row in rows}
        if time.monotonic() > deadline:
            raise AssertionError(f"etcd members: {res.stderr}\n{node.transcript()}")
        time.sleep(0.3)


def _host_pid_of(root: int, comm: str) -> int:
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            if pid != root and Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                return pid
            todo += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            continue
    raise AssertionError(f"no {comm} below {root}")


@pytest.mark.etcd
def test_bootstrap_runs_etcd(start_node, material: Material, tmp_path: Path) -> None:
    if not Path("/usr/bin/etcd").exists():
        pytest.skip("/usr/bin/etcd is not installed (Debian package etcd-server)")
    node, state = start_node("--cmdline", "talos.hostname=cp-1", config=material.controlplane)
    node.expect(MTLS)
    tc = ["--talosconfig", str(material.talosconfig)]
    data = state / "ephemeral" / "lib" / "etcd"
    assert not data.exists()

    boot = api(node, *tc, "bootstrap")
    assert boot.returncode == 0, boot.stderr
    _etcd_members(node, tc, "cp-1")
    node.seen(r"service\[etcd\]\(Running\): Health check successful")
    assert (data / "member").is_dir()
    node.seen("static pod manifests in /system/kubernetes/manifests")
    manifests = Path(f"/proc/{node.pid1}/root/system/kubernetes/manifests")
    assert sorted(p.name for p in manifests.iterdir()) == [
        "talos-kube-apiserver.yaml",
        "talos-kube-controller-manager.yaml",
        "talos-kube-scheduler.yaml",
    ]

    # a second bootstrap is refused and etcd keeps its data
    again = api(node, *tc, "bootstrap")
    assert again.returncode != 0 and "not empty" in again.stderr, again.stderr
    assert (data / "member").is_dir()

    # kill etcd: the supervisor restarts it and the member answers again
    first = _host_pid_of(node.pid1, "etcd")
    os.kill(first, signal.SIGKILL)
    node.expect(r"service\[etcd\]\(Failed\)")
    node.expect(r"service\[etcd\]\(Running\): Started process")
    _etcd_members(node, tc, "cp-1")
    assert _host_pid_of(node.pid1, "etcd") != first

    # reboot: the node comes back and etcd starts with its data (the same member)
    before = _etcd_members(node, tc, "cp-1")
    res = api(node, *tc, "reboot")
    assert res.returncode == 0, res.stderr
    node.expect("etcd: data found in EPHEMERAL: starting with it")
    node.expect(MTLS)
    assert _etcd_members(node, tc, "cp-1") == before

    # a change under `cluster` applied without a reboot re-renders the static pods
    doc = yaml.safe_load(material.controlplane.read_text())
    doc["cluster"].setdefault("apiServer", {})["extraArgs"] = {"event-ttl": "2h"}
    changed = tmp_path / "cp-changed.yaml"
    changed.write_text(yaml.safe_dump(doc))
    res = api(node, *tc, "apply-config", "--immediate", "--file", str(changed))
    assert res.returncode == 0, res.stderr
    pod = manifests / "talos-kube-apiserver.yaml"
    deadline = time.monotonic() + 60
    while "--event-ttl=2h" not in pod.read_text():
        assert time.monotonic() < deadline, node.transcript()
        time.sleep(0.2)
    # a change outside `cluster` is refused with --immediate, naming what differs
    doc["machine"]["sysctls"] = {"net.ipv4.ip_forward": "1"}
    changed.write_text(yaml.safe_dump(doc))
    res = api(node, *tc, "apply-config", "--immediate", "--file", str(changed))
    assert res.returncode != 0 and "machine.sysctls" in res.stderr, res.stderr

    # reset wipes STATE and EPHEMERAL and reboots; this node's config comes from --config (as
    # from talos.config=), so it boots configured again, but etcd's data is gone
    res = api(node, *tc, "reset", "--graceful", "--reboot")
    assert res.returncode == 0, res.stderr
    node.expect("reset requested through the API: wiping EPHEMERAL, STATE")
    node.expect(r"reboot sequence: done")
    node.expect(MTLS)
    assert not (data / "member").exists()
    res = api(node, *tc, "etcd", "members")
    assert res.returncode != 0 and "bootstrap first" in res.stderr, res.stderr
