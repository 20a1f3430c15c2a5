"""Each machine API method end to end: the installed talos-apply, run inside the node's own
network namespace, against a real talos-init PID 1 (container mode) serving mutual TLS.

One node runs the whole life cycle, in the order a node lives it (a start costs seconds): version,
services, service stop/start/restart, logs (history and follow), kubeconfig, reboot, reset of
EPHEMERAL with a reboot, and finally shutdown, whose exit code is PID 1's. Every check that could
pass without the method doing anything has a negative control next to it.
"""

from __future__ import annotations

import base64
import json
import queue
import re
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from init.harness import NodeRun, write_service

from .conftest import TALOS_APPLY, Material, api

pytestmark = pytest.mark.system

MTLS = r"machine API listening on :50000 \(mutual TLS\)"
BOOT_DONE = r"\[talos\] boot sequence: done"
BOUND = 60.0  # fails a broken node instead of hanging; measures nothing

# A service that prints five numbered lines, then one line for each trigger file that appears in
# /var (the node's EPHEMERAL, DIR/ephemeral on the host): the test decides when it speaks.
TICKER = r"""
for i in 1 2 3 4 5; do echo "ticker line $i"; done
echo "ticker ready pid $$"
while :; do
  if [ -e /var/trigger ]; then
    echo "ticker says $(cat /var/trigger)"
    rm -f /var/trigger
  fi
  sleep 0.1
done
"""


def _json(res: Any) -> Any:
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _service_state(node: NodeRun, tc: list[str], service_id: str) -> str:
    rows = _json(api(node, *tc, "service", service_id, "-o", "json"))
    assert [row["id"] for row in rows] == [service_id], rows
    return str(rows[0]["state"])


def _wait_state(node: NodeRun, tc: list[str], service_id: str, want: str) -> None:
    deadline = time.monotonic() + BOUND
    while (state := _service_state(node, tc, service_id)) != want:
        assert time.monotonic() < deadline, f"{service_id}: {state}, wanted {want}"
        time.sleep(0.2)


def _ticker_pids(node: NodeRun) -> set[int]:
    """Host pids of the ticker's shell below the node's PID 1."""
    found: set[int] = set()
    todo = [node.pid1]
    while todo:
        pid = todo.pop()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            todo += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            continue
        if b"ticker ready" in cmdline:
            found.add(pid)
    return found


def _boots(node: NodeRun) -> int:
    return len(node.matching(BOOT_DONE))


def test_node_api_methods(start_node: Any, material: Material, tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.mkdir()
    write_service(services, "ticker", command="/bin/sh", args=["-c", TICKER], restart="always")
    node, state = start_node(
        "--services-dir",
        str(services),
        "--cmdline",
        "talos.hostname=cp-1",
        config=material.controlplane,
    )
    node.expect(MTLS)
    node.seen(BOOT_DONE)
    tc = ["--talosconfig", str(material.talosconfig)]
    ephemeral = state / "ephemeral"

    # -- version: the node's own answer, not only the client's ------------------------------
    res = api(node, *tc, "version", "-o", "json")
    version = _json(res)
    assert [reply["platform"]["mode"] for reply in version] == ["container"], version
    client_only = api(node, *tc, "version", "--client")
    assert client_only.returncode == 0 and "container" not in client_only.stdout
    foreign = api(node, "--talosconfig", str(material.foreign_talosconfig), "version")
    assert foreign.returncode != 0  # negative control: another CA's client certificate

    # -- services ---------------------------------------------------------------------------
    listing = _json(api(node, *tc, "services", "-o", "json"))
    assert [reply["metadata"]["hostname"] for reply in listing] == ["127.0.0.1"], listing
    ids = {row["id"] for row in listing[0]["services"]}
    assert {"ticker", "kubelet"} <= ids, listing
    table = api(node, *tc, "services")
    assert table.returncode == 0 and "ticker" in table.stdout, table.stderr
    _wait_state(node, tc, "ticker", "Running")
    unknown = api(node, *tc, "service", "no-such-service")
    assert unknown.returncode != 0 and "no-such-service" in unknown.stderr, unknown.stderr

    # -- service stop / start / restart: state and process change ---------------------------
    first = _ticker_pids(node)
    assert len(first) == 1, first
    res = api(node, *tc, "service", "ticker", "stop")
    assert res.returncode == 0, res.stderr
    _wait_state(node, tc, "ticker", "Finished")
    assert _ticker_pids(node) == set()
    res = api(node, *tc, "service", "ticker", "start")
    assert res.returncode == 0, res.stderr
    _wait_state(node, tc, "ticker", "Running")
    second = _ticker_pids(node)
    assert len(second) == 1 and second != first, (first, second)
    res = api(node, *tc, "service", "ticker", "restart")
    assert res.returncode == 0, res.stderr
    _wait_state(node, tc, "ticker", "Running")
    deadline = time.monotonic() + BOUND
    while len(third := _ticker_pids(node)) != 1 or third == second:
        assert time.monotonic() < deadline, (second, third)
        time.sleep(0.2)
    bad = api(node, *tc, "service", "no-such-service", "stop")
    assert bad.returncode != 0  # negative control: an unknown service is not "stopped"

    # -- logs: history with --tail, then a line printed after the follow started -------------
    deadline = time.monotonic() + BOUND
    while True:  # the third run's lines reach the log ring a moment after it starts
        res = api(node, *tc, "logs", "ticker")
        assert res.returncode == 0, res.stderr
        if res.stdout.count("ticker ready") == 3:  # three runs so far, each in the log
            break
        assert time.monotonic() < deadline, res.stdout
        time.sleep(0.2)
    assert res.stdout.count("ticker line 5") == 3, res.stdout
    tail = api(node, *tc, "logs", "ticker", "--tail", "2")
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert len(lines) == 2 and "ticker line 5" in lines[0] and "ticker ready" in lines[1], lines
    missing = api(node, *tc, "logs", "no-such-service")
    assert missing.returncode != 0 and "no-such-service" in missing.stderr, missing.stderr

    follow = _follow(node, tc, "logs", "ticker", "-f")
    try:
        follow.wait_for("ticker ready")  # the history came; the stream is open
        assert not follow.has("ticker says")  # negative control: nothing said yet
        (ephemeral / "trigger").write_text("hello-after-follow\n")
        follow.wait_for("ticker says hello-after-follow")
    finally:
        follow.stop()

    # -- processes: the node's own PID namespace, its PID 1 and services -------------------
    procs = _json(api(node, *tc, "processes", "-o", "json"))[0]["processes"]
    by_pid = {p["pid"]: p for p in procs}
    assert "talos-init" in by_pid[1]["args"] and by_pid[1].get("ppid", 0) == 0, by_pid.get(1)
    ticker = [p for p in procs if "ticker ready" in p.get("args", "")]
    assert len(ticker) == 1 and ticker[0]["ppid"] == 1 and int(ticker[0]["resident_memory"]) > 0
    # negative control: the host's processes (this test's among them) are not the node's
    own = " ".join(a.decode() for a in Path("/proc/self/cmdline").read_bytes().split(b"\0") if a)
    assert not any(p.get("args") == own for p in procs)
    assert len(procs) < len([d for d in Path("/proc").iterdir() if d.name.isdigit()])
    table = api(node, *tc, "ps", "--sort", "cpu")
    assert table.returncode == 0 and table.stdout.startswith("NODE "), table.stderr
    assert "/bin/sh -c" in table.stdout and "talos-init" in table.stdout, table.stdout

    # -- memory: /proc/meminfo's figures (kB), and talosctl's MiB table -----------------------
    host = {
        k: v.split()[0]
        for k, v in (line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    }
    info = _json(api(node, *tc, "memory", "-o", "json"))[0]["meminfo"]
    assert int(info["memtotal"]) == int(host["MemTotal"]), (info, host["MemTotal"])
    assert 0 < int(info["memavailable"]) <= int(info["memtotal"])
    table = api(node, *tc, "memory")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[1].split()[1] == str(int(host["MemTotal"]) // 1024)
    verbose = api(node, *tc, "memory", "-v")
    assert f"MemTotal: {host['MemTotal']} kB" in verbose.stdout, verbose.stdout

    # -- dmesg: a record written to the kernel log, in Talos's format; --tail -f sees only new
    marker = f"talos-dmesg-{time.monotonic_ns()}"
    Path("/dev/kmsg").write_text(f"<14>{marker}-old\n")  # facility user, priority info
    res = api(node, *tc, "dmesg")
    assert res.returncode == 0, res.stderr
    (line,) = [x for x in res.stdout.splitlines() if f"{marker}-old" in x]
    assert re.fullmatch(
        rf"127\.0\.0\.1: user:    info: \[\d{{4}}-\d\d-\d\dT[\d:.]+Z\]: "
        rf"{marker}-old",
        line,
    ), line
    follow = _follow(node, tc, "dmesg", "--follow", "--tail")
    try:
        time.sleep(1)  # the stream is open once talos-apply has connected (no output to wait on)
        Path("/dev/kmsg").write_text(f"<14>{marker}-new\n")
        follow.wait_for(f"{marker}-new")
        assert not follow.has(f"{marker}-old")  # negative control: --tail skipped the history
    finally:
        follow.stop()

    # -- kubeconfig: 0600, admin certificate from the Kubernetes CA -------------------------
    kube = tmp_path / "kube" / "config"
    kube.parent.mkdir()
    res = api(node, *tc, "kubeconfig", str(kube))
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(kube.stat().st_mode) == 0o600
    _check_admin_kubeconfig(kube, material.controlplane)
    again = api(node, *tc, "kubeconfig", "--no-merge", str(kube))
    assert again.returncode != 0  # an existing file is not replaced without --force

    # -- reboot: the boot sequence runs a second time and the API comes back ----------------
    assert _boots(node) == 1
    (ephemeral / "survives-reboot").write_text("x")
    res = api(node, *tc, "reboot")
    assert res.returncode == 0, res.stderr
    node.expect(r"\[talos\] reboot sequence: done")
    node.expect(BOOT_DONE)
    node.expect(MTLS)
    assert _boots(node) == 2
    assert _json(api(node, *tc, "version", "-o", "json"))
    assert (ephemeral / "survives-reboot").exists()  # a reboot wipes nothing

    # -- reset EPHEMERAL only, then reboot --------------------------------------------------
    (state / "state" / "marker").write_text("state")
    res = api(node, *tc, "reset", "--graceful", "--reboot", "--system-labels-to-wipe", "EPHEMERAL")
    assert res.returncode == 0, res.stderr
    node.expect("reset requested through the API: wiping EPHEMERAL$")
    node.expect(BOOT_DONE)
    node.expect(MTLS)
    assert _boots(node) == 3
    assert not (ephemeral / "survives-reboot").exists()
    assert (state / "state" / "marker").read_text() == "state"  # STATE was left alone
    assert (state / "state" / "config.yaml").exists()
    _wait_state(node, tc, "ticker", "Running")
    bad = api(node, *tc, "reset", "--system-labels-to-wipe", "BOOT")
    assert bad.returncode != 0 and "BOOT" in bad.stderr, bad.stderr
    assert node.proc.poll() is None  # a refused reset does nothing

    # -- shutdown: PID 1 exits 0 (talos-init's table), after stopping its services ----------
    res = api(node, *tc, "shutdown")
    assert res.returncode == 0, res.stderr
    assert node.wait() == 0, node.transcript()
    node.seen(r"\[talos\] shutdown sequence: done")


class _Follow:
    def __init__(self, proc: Any) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            for line in proc.stdout:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def has(self, text: str) -> bool:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)
                break
            self.lines.append(line)
        return any(text in line for line in self.lines)

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + BOUND
        while not any(text in line for line in self.lines):
            line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(
                    f"the stream ended before {text!r}: {self.lines}\n{self.proc.stderr.read()}"
                )
            self.lines.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=BOUND)
        self._reader.join(timeout=BOUND)
        self.proc.stdout.close()
        self.proc.stderr.close()


def _follow(node: NodeRun, tc: list[str], *command: str) -> _Follow:
    proc = subprocess.Popen(
        ["nsenter", f"--net=/proc/{node.pid1}/ns/net", "--", TALOS_APPLY, *tc, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return _Follow(proc)


def _check_admin_kubeconfig(path: Path, controlplane: Path) -> None:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.x509.oid import NameOID

    kc = yaml.safe_load(path.read_text())
    users = kc["users"]
    assert len(users) == 1, users
    cert = x509.load_pem_x509_certificate(
        base64.b64decode(users[0]["user"]["client-certificate-data"])
    )
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert "system:masters" in orgs, cert.subject
    cfg = yaml.safe_load(controlplane.read_text())
    k8s_ca = x509.load_pem_x509_certificate(base64.b64decode(cfg["cluster"]["ca"]["crt"]))
    machine_ca = x509.load_pem_x509_certificate(base64.b64decode(cfg["machine"]["ca"]["crt"]))
    cert.verify_directly_issued_by(k8s_ca)
    # negative control: the check above can fail (the machine CA did not issue it)
    with pytest.raises((ValueError, InvalidSignature)):
        cert.verify_directly_issued_by(machine_ca)
    cluster_ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"])
    assert x509.load_pem_x509_certificate(cluster_ca) == k8s_ca
