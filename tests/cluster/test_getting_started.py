"""The getting-started guide (Talos v0.9), run as a user types it, against a local cluster.

``talosctl cluster create --skip-injecting-config --masters 3 --workers 1`` starts four nodes in
maintenance mode; then, through the installed ``talosctl`` console script, with the test's own
home directory (so ``~/.talos/config`` and ``~/.kube/config`` are the test's): gen config,
apply-config --insecure to each node (one pinned with the fingerprint printed on that node's
console, after a wrong fingerprint has been refused), config endpoint, config merge, bootstrap,
etcd members until all three control planes agree, kubeconfig. Every command that talks to a
node runs inside the cluster's network namespace (``nsenter --net=/run/netns/<name>``): no
packet leaves the namespaces the test made.

As the guide says, the init type is ignored: the three control planes get controlplane.yaml and
the worker join.yaml, and etcd is formed by the bootstrap call.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import Env, netns_list, processes_mentioning

pytestmark = [pytest.mark.system, pytest.mark.etcd]

BIN = Path(sys.executable).parent
TALOSCTL = str(BIN / "talosctl")
CLUSTER = "my-cluster"  # the guide's <cluster name>; a label in the client configs only
CONTROL_PLANES = ("10.5.0.2", "10.5.0.3", "10.5.0.4")
WORKER = "10.5.0.5"
BOUND = 120.0  # seconds: a bound on each wait, never an assertion on speed


class User:
    """A shell user: the installed talosctl, cwd and HOME set to their own directory."""

    def __init__(self, home: Path, netns: str) -> None:
        self.home = home
        self.netns = netns
        self.environ = {
            k: v for k, v in os.environ.items() if k not in ("TALOSCONFIG", "KUBECONFIG")
        }
        self.environ["HOME"] = str(home)

    def run(self, line: str, *, node: bool = False) -> subprocess.CompletedProcess[str]:
        """``line`` as typed (``talosctl ...``); ``node``: it talks to a node (run in netns)."""
        argv = shlex.split(line)
        assert argv[0] == "talosctl"
        argv[0] = TALOSCTL
        if node:
            argv = ["nsenter", f"--net=/run/netns/{self.netns}", "--", *argv]
        return subprocess.run(
            argv,
            cwd=self.home,
            env=self.environ,
            capture_output=True,
            text=True,
            check=False,
            timeout=BOUND,
        )

    def ok(self, line: str, *, node: bool = False) -> subprocess.CompletedProcess[str]:
        res = self.run(line, node=node)
        assert res.returncode == 0, f"{line}\n{res.stdout}\n{res.stderr}"
        return res


def _console_command(console: Path, config: str) -> str:
    """The fingerprint-pinned apply-config line the node printed, for ``config``."""
    deadline = time.monotonic() + BOUND
    while True:
        lines = console.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if "optionally with node fingerprint check:" in line and i + 1 < len(lines):
                printed = lines[i + 1].split("[talos]", 1)[1].strip()
                assert "--cert-fingerprint '" in printed, printed
                return printed.replace("<config.yaml>", config)
        if time.monotonic() > deadline:
            pytest.fail(f"no fingerprint line in {console}")
        time.sleep(0.1)


def _fingerprint(command: str) -> str:
    argv = shlex.split(command)
    return argv[argv.index("--cert-fingerprint") + 1]


def _members(user: User, ip: str) -> set[str]:
    res = user.run(f"talosctl etcd members --nodes {ip}", node=True)
    if res.returncode != 0:
        return set()
    return {line.split()[2] for line in res.stdout.splitlines()[1:] if line.strip()}


def test_getting_started_guide(env: Env, tmp_path: Path) -> None:
    if not Path("/usr/bin/etcd").exists():
        pytest.skip("/usr/bin/etcd is not installed (Debian package etcd-server)")
    home = tmp_path / "home"
    home.mkdir()
    user = User(home, env.name)
    created = user.run(
        "talosctl cluster create --skip-injecting-config --masters 3 --workers 1 "
        + shlex.join(env.args("--talosconfig", str(env.talosconfig), "--wait-timeout", "120"))
    )
    assert created.returncode == 0, created.stderr
    masters = [f"{env.name}-master-{i}" for i in (1, 2, 3)]
    consoles = {
        ip: env.cluster_dir / n / "console.log"
        for ip, n in zip([*CONTROL_PLANES, WORKER], [*masters, f"{env.name}-worker-1"], strict=True)
    }
    for ip in (*CONTROL_PLANES, WORKER):
        assert f"reachable at:\n[talos] \t{ip}\n" in consoles[ip].read_text()

    # Configure Talos: talosctl gen config <cluster name> <cluster endpoint>
    gen = user.ok(f"talosctl gen config {CLUSTER} https://{CONTROL_PLANES[0]}:6443")
    for name in ("init.yaml", "controlplane.yaml", "join.yaml", "talosconfig"):
        assert (home / name).is_file(), name
        assert f"created {name}" in gen.stdout + gen.stderr

    # Apply Configuration; the second control plane pinned with its console's fingerprint.
    pinned = _console_command(consoles["10.5.0.3"], "controlplane.yaml")
    assert pinned.startswith("talosctl apply-config --insecure --nodes 10.5.0.3 ")
    # negative control: another machine's fingerprint is refused and nothing is sent
    other = _fingerprint(_console_command(consoles["10.5.0.4"], "controlplane.yaml"))
    assert other != _fingerprint(pinned)
    wrong = user.run(pinned.replace(_fingerprint(pinned), other), node=True)
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert "does not match --cert-fingerprint" in wrong.stderr
    time.sleep(0.5)  # give a wrongly accepted config time to show (the check below must fail)
    assert "waiting for a machine config" in consoles["10.5.0.3"].read_text()
    assert "machine type" not in consoles["10.5.0.3"].read_text()
    assert not (env.cluster_dir / masters[1] / "state" / "config.yaml").exists()

    user.ok("talosctl apply-config --insecure --nodes 10.5.0.2 --file controlplane.yaml", node=True)
    user.ok(pinned, node=True)
    user.ok("talosctl apply-config --insecure --nodes 10.5.0.4 --file controlplane.yaml", node=True)
    user.ok(f"talosctl apply-config --insecure --nodes {WORKER} --file join.yaml", node=True)
    deadline = time.monotonic() + BOUND
    for ip in (*CONTROL_PLANES, WORKER):  # what the negative control found missing is there now
        kind = "worker" if ip == WORKER else "controlplane"
        while f"machine type {kind}" not in consoles[ip].read_text():
            if time.monotonic() > deadline:
                pytest.fail(f"{ip}: no 'machine type {kind}' on its console")
            time.sleep(0.1)
        assert (consoles[ip].parent / "state" / "config.yaml").exists(), ip

    # Configure your talosctl client
    user.ok("talosctl --talosconfig=./talosconfig config endpoint 10.5.0.2 10.5.0.3 10.5.0.4")
    local = yaml.safe_load((home / "talosconfig").read_text())
    assert local["contexts"][CLUSTER]["endpoints"] == list(CONTROL_PLANES)
    user.ok("talosctl config merge ./talosconfig")
    default = home / ".talos" / "config"
    merged = yaml.safe_load(default.read_text())
    assert merged["context"] == CLUSTER
    assert merged["contexts"][CLUSTER]["endpoints"] == list(CONTROL_PLANES)
    assert stat.S_IMODE(default.stat().st_mode) == 0o600

    # The nodes reboot into their configs; wait until each answers over mutual TLS.
    deadline = time.monotonic() + BOUND
    for ip in CONTROL_PLANES:
        while user.run(f"talosctl --nodes {ip} version", node=True).returncode != 0:
            if time.monotonic() > deadline:
                pytest.fail(f"{ip} does not answer version:\n{consoles[ip].read_text()[-3000:]}")
            time.sleep(0.2)

    # Kubernetes Bootstrap
    user.ok("talosctl bootstrap --nodes 10.5.0.2", node=True)
    deadline = time.monotonic() + BOUND
    for ip in CONTROL_PLANES:
        while _members(user, ip) != set(masters):
            if time.monotonic() > deadline:
                tails = "\n".join(consoles[i].read_text()[-2000:] for i in CONTROL_PLANES)
                pytest.fail(f"etcd on {ip}: members {_members(user, ip)}\n{tails}")
            time.sleep(0.5)

    # talosctl kubeconfig: merged into ~/.kube/config, private, the cluster's server
    kube_default = home / ".kube" / "config"
    assert not kube_default.exists()  # create --skip-injecting-config wrote none there
    user.ok("talosctl kubeconfig", node=True)
    kube = yaml.safe_load(kube_default.read_text())
    assert stat.S_IMODE(kube_default.stat().st_mode) == 0o600
    assert kube["current-context"] == f"admin@{CLUSTER}"
    assert [c["cluster"]["server"] for c in kube["clusters"]] == ["https://10.5.0.2:6443"]
    # ... or not merged, into a file of one's own
    user.ok("talosctl kubeconfig alternative-kubeconfig", node=True)
    alt = home / "alternative-kubeconfig"
    assert yaml.safe_load(alt.read_text())["clusters"] == kube["clusters"]
    assert stat.S_IMODE(alt.stat().st_mode) == 0o600

    # a second bootstrap is refused: the guide says it should only be issued once
    again = user.run("talosctl bootstrap --nodes 10.5.0.2", node=True)
    assert again.returncode != 0

    gone = user.run("talosctl cluster destroy " + shlex.join(env.args()))
    assert gone.returncode == 0, gone.stderr
    assert not {env.name, *masters} & netns_list()
    assert not processes_mentioning(str(env.state_dir))
    assert not env.cluster_dir.exists()
