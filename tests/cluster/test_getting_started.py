"""The quickstart and the getting-started guide (Talos v0.9), run as a user types them.

The quickstart: ``talosctl cluster create`` (the default cluster, talos-default, with the test's
own home directory), then the commands a user types next, verbatim, from the same shell:
``talosctl --nodes 10.5.0.2 version``, ``talosctl health``, ``openssl s_client -connect
10.5.0.3:50000``, ``talosctl cluster show``, ``talosctl cluster destroy``.

The guide: ``talosctl cluster create --skip-injecting-config --masters 3 --workers 1`` starts
four nodes in maintenance mode; then, through the installed ``talosctl`` console script, with the test's own
home directory (so ``~/.talos/config`` and ``~/.kube/config`` are the test's): gen config,
apply-config --insecure to each node (one pinned with the fingerprint printed on that node's
console, after a wrong fingerprint has been refused), config endpoint, config merge, bootstrap,
etcd members until all three control planes agree, kubeconfig.

Every command runs as printed, in the network namespace that ran ``cluster create`` (the test
session's private one, see tests/conftest.py), where create put the cluster's bridge: no
``ip netns exec``, and no packet leaves the namespaces the test session made.

As the guide says, the init type is ignored: the three control planes get controlplane.yaml and
the worker join.yaml, and etcd is formed by the bootstrap call.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .conftest import Env, net_snapshot, netns_list, processes_mentioning, remove_links

pytestmark = [pytest.mark.system, pytest.mark.etcd]

BIN = Path(sys.executable).parent
TALOSCTL = str(BIN / "talosctl")
CLUSTER = "my-cluster"  # the guide's <cluster name>; a label in the client configs only
CONTROL_PLANES = ("10.5.0.2", "10.5.0.3", "10.5.0.4")
WORKER = "10.5.0.5"
BOUND = 120.0  # seconds: a bound on each wait, never an assertion on speed


class User:
    """A shell user: the installed talosctl, cwd and HOME set to their own directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.environ = {
            k: v for k, v in os.environ.items() if k not in ("TALOSCONFIG", "KUBECONFIG")
        }
        self.environ["HOME"] = str(home)

    def run(self, line: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``line`` as typed (``talosctl ...`` or ``openssl ...``), from the user's shell."""
        argv = shlex.split(line)
        assert argv[0] in ("talosctl", "openssl")
        if argv[0] == "talosctl":
            argv[0] = TALOSCTL
        return subprocess.run(
            argv,
            cwd=self.home,
            env=self.environ,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=BOUND,
        )

    def ok(self, line: str) -> subprocess.CompletedProcess[str]:
        res = self.run(line)
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
    res = user.run(f"talosctl etcd members --nodes {ip}")
    if res.returncode != 0:
        return set()
    return {line.split()[2] for line in res.stdout.splitlines()[1:] if line.strip()}


def test_getting_started_guide(env: Env, tmp_path: Path) -> None:
    if not Path("/usr/bin/etcd").exists():
        pytest.skip("/usr/bin/etcd is not installed (Debian package etcd-server)")
    home = tmp_path / "home"
    home.mkdir()
    user = User(home)
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
    wrong = user.run(pinned.replace(_fingerprint(pinned), other))
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert "does not match --cert-fingerprint" in wrong.stderr
    time.sleep(0.5)  # give a wrongly accepted config time to show (the check below must fail)
    assert "waiting for a machine config" in consoles["10.5.0.3"].read_text()
    assert "machine type" not in consoles["10.5.0.3"].read_text()
    assert not (env.cluster_dir / masters[1] / "state" / "config.yaml").exists()

    user.ok("talosctl apply-config --insecure --nodes 10.5.0.2 --file controlplane.yaml")
    user.ok(pinned)
    user.ok("talosctl apply-config --insecure --nodes 10.5.0.4 --file controlplane.yaml")
    user.ok(f"talosctl apply-config --insecure --nodes {WORKER} --file join.yaml")
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
        while user.run(f"talosctl --nodes {ip} version").returncode != 0:
            if time.monotonic() > deadline:
                pytest.fail(f"{ip} does not answer version:\n{consoles[ip].read_text()[-3000:]}")
            time.sleep(0.2)

    # Kubernetes Bootstrap
    user.ok("talosctl bootstrap --nodes 10.5.0.2")
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
    user.ok("talosctl kubeconfig")
    kube = yaml.safe_load(kube_default.read_text())
    assert stat.S_IMODE(kube_default.stat().st_mode) == 0o600
    assert kube["current-context"] == f"admin@{CLUSTER}"
    assert [c["cluster"]["server"] for c in kube["clusters"]] == ["https://10.5.0.2:6443"]
    # ... or not merged, into a file of one's own
    user.ok("talosctl kubeconfig alternative-kubeconfig")
    alt = home / "alternative-kubeconfig"
    assert yaml.safe_load(alt.read_text())["clusters"] == kube["clusters"]
    assert stat.S_IMODE(alt.stat().st_mode) == 0o600

    # a second bootstrap is refused: the guide says it should only be issued once
    again = user.run("talosctl bootstrap --nodes 10.5.0.2")
    assert again.returncode != 0

    gone = user.run("talosctl cluster destroy " + shlex.join(env.args()))
    assert gone.returncode == 0, gone.stderr
    assert not {env.name, *masters} & netns_list()
    assert not processes_mentioning(str(env.state_dir))
    assert not env.cluster_dir.exists()


@pytest.fixture
def quickstart_home(cluster_capable: None, tmp_path: Path) -> Iterator[Path]:
    """A home directory for the default cluster (talos-default, state in ~/.talos/clusters);
    whatever the test leaves of that cluster is removed afterwards."""
    from talos_cluster import state
    from talos_cluster.commands.destroy import destroy_record

    if any(ns.startswith("talos-default-") for ns in netns_list()):
        pytest.skip("a cluster talos-default exists on this machine (its node namespaces)")
    home = tmp_path / "home"
    home.mkdir()
    try:
        yield home
    finally:
        with contextlib.suppress(Exception):
            record = state.load(home / ".talos" / "clusters" / "talos-default")
            if record is not None:
                destroy_record(record, grace=2)
        remove_links("talos-default")


def test_quickstart(quickstart_home: Path) -> None:
    home = quickstart_home
    user = User(home)
    before = net_snapshot()
    created = user.run("talosctl cluster create")
    assert created.returncode == 0, created.stderr
    assert "talos-default-master-1" in created.stdout and "talos-default-worker-1" in created.stdout
    assert "talosctl --nodes 10.5.0.2 version" in created.stderr  # what create says to type

    for ip in ("10.5.0.2", "10.5.0.3"):
        version = user.ok(f"talosctl --nodes {ip} version")
        assert ip in version.stdout, version.stdout
    health = user.ok("talosctl health")
    assert "10.5.0.2" in health.stdout + health.stderr
    # the node's machine API presents its certificate to a plain TLS client from this shell
    tls = user.run("openssl s_client -connect 10.5.0.3:50000", stdin="")
    assert "-----BEGIN CERTIFICATE-----" in tls.stdout, tls.stdout + tls.stderr
    assert "CONNECTED(" in tls.stdout
    shown = user.ok("talosctl cluster show")
    assert "layout shared (in this network namespace)" in shown.stderr

    gone = user.run("talosctl cluster destroy")
    assert gone.returncode == 0, gone.stderr
    assert not (home / ".talos" / "clusters" / "talos-default").exists()
    assert not [ns for ns in netns_list() if ns.startswith("talos-default-")]
    assert net_snapshot() == before
    # negative control: with the cluster gone, the same command finds no node
    assert user.run("talosctl --nodes 10.5.0.2 version").returncode != 0
