"""``talosctl apply-config --insecure --interactive``: the real command under tmux against a
talos-init node waiting in maintenance mode (container mode, its own PID, mount, UTS and network
namespaces; a veth end named eth0 moved into it so that it has an interface besides lo).

The node's disks are what its sysfs shows (container mode shares the host's /sys/block; the
Disks call skips loop, ram and zero-sized devices): the test reads the same list with
:func:`talos_init.api.storage.disks` and skips when there is none.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from init.harness import NodeRun
from node.conftest import api

from talos_apply.interactive.model import NodeFacts
from tui.tmux import BOUND, Tmux

pytestmark = pytest.mark.system

TALOSCTL = str(Path(sys.executable).parent / "talosctl")
MTLS = r"machine API listening on :50000 \(mutual TLS\)"
OLD_TALOSCONFIG = "context: old\ncontexts: {}\n"


@pytest.fixture
def sessions() -> Iterator[list[Tmux]]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (tools/talos-apply/apt-packages.txt)")
    made: list[Tmux] = []
    yield made
    for s in made:
        s.kill()


def _give_eth0(node: NodeRun) -> None:
    """A veth pair: one end stays in the test's namespace, the other is the node's eth0."""
    host_end = f"tui{uuid.uuid4().hex[:6]}"
    subprocess.run(
        [
            "ip",
            "link",
            "add",
            host_end,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            str(node.pid1),
        ],
        check=True,
    )
    inside = ["nsenter", f"--net=/proc/{node.pid1}/ns/net", "--", "ip"]
    subprocess.run([*inside, "link", "set", "eth0", "up"], check=True)
    subprocess.run([*inside, "addr", "add", "192.0.2.10/24", "dev", "eth0"], check=True)


def _wait_exit(session: Tmux, rc_file: Path) -> int:
    deadline = time.monotonic() + BOUND
    while not rc_file.exists() or not rc_file.read_text().strip():
        if time.monotonic() > deadline:
            raise AssertionError(f"the command did not end; the screen:\n{session.screen()}")
        time.sleep(0.1)
    return int(rc_file.read_text())


def test_interactive_install(start_node, sessions: list[Tmux], tmp_path: Path) -> None:
    from talos_init.api.storage import disks

    found = disks()
    if not found:
        pytest.skip("no disk in /sys/block that the Disks call reports (all loop/ram/empty)")
    disk = found[0].device_name

    node, state = start_node()
    node.expect("maintenance service listening on :50000")
    _give_eth0(node)

    work = tmp_path / "work"
    work.mkdir()
    old = work / "talosconfig"
    old.write_text(OLD_TALOSCONFIG)  # another cluster's: must survive
    rc_file = work / "rc"
    cmd = (
        f"nsenter --net=/proc/{node.pid1}/ns/net -- {shlex.quote(TALOSCTL)} apply-config "
        f"--insecure --interactive -n 127.0.0.1; echo $? > {rc_file}; exec sleep 3600"
    )
    tui = Tmux(cmd, work)
    sessions.append(tui)

    # the node's disks and interfaces, as the node reported them
    shown = tui.wait_for("Talos interactive installer")
    shown = tui.wait_for(disk)
    for d in found:
        assert d.device_name in shown
    assert "eth0" in shown and "lo" in shown, shown
    assert "192.0.2.10/24" in shown, shown
    tui.snap("1-form")

    # The focused field's label carries a marker (▸): each key waits for the one before it.
    # Focus starts on the install disk: a disk the node does not have is named next to it.
    tui.wait_for("▸ Install disk")
    tui.type("/dev/nosuchdisk")
    tui.wait_for("the node has no disk /dev/nosuchdisk")
    tui.keys("C-u")  # clear the field (Textual's Input: delete to the start)
    tui.wait_for("pick the disk to install to")
    tui.type(disk)
    tui.wait_gone("pick the disk to install to")
    assert "the node has no disk" not in tui.screen()

    tui.keys("Tab")
    tui.wait_for("▸ Cluster name")
    tui.type("tui-cluster")
    tui.wait_for("tui-cluster")
    tui.keys("Tab")  # endpoint: without https, the error is shown next to the field
    tui.wait_for("▸ Control plane endpoint")
    tui.type("http://127.0.0.1:6443")
    shown = tui.wait_for("must be a URL with the https scheme")
    line = next(ln for ln in shown.splitlines() if "must be a URL with the https" in ln)
    assert "Control plane endpoint" in line, line  # next to the field, on its row
    tui.snap("2-form-bad-endpoint")
    tui.keys("C-u")
    tui.wait_row("Control plane endpoint", lambda row: "http://" not in row)
    tui.type("https://127.0.0.1:6443")
    tui.wait_gone("must be a URL with the https scheme")

    tui.keys("Tab")  # machine type: init (the default)
    tui.wait_for("▸ Machine type")
    tui.keys("Tab")
    tui.wait_for("▸ Hostname")
    tui.type("node-tui")
    tui.wait_for("node-tui")
    tui.keys("Tab")
    tui.wait_for("▸ DNS servers")
    tui.type("192.0.2.53")
    tui.wait_for("192.0.2.53")
    tui.keys("Tab", "Tab", "Tab", "Tab")  # past lo's mode, CIDR and gateway
    tui.wait_for("▸ eth0 mode")
    tui.keys("Enter")  # open the list: unchanged, dhcp, static
    tui.wait_for("dhcp")
    tui.keys("Down", "Down", "Enter")
    tui.wait_for("static needs an address (CIDR)")
    tui.keys("Tab")  # eth0's CIDR: a bad one is named next to it
    tui.wait_for("▸ eth0 CIDR")
    tui.type("192.0.2.10")
    tui.wait_for("no prefix length (e.g. /24)")
    tui.snap("3-form-bad-cidr")
    tui.type("/24")
    tui.wait_gone("no prefix length")
    tui.keys("Tab")
    tui.wait_for("▸ eth0 gateway")
    tui.type("192.0.2.1")
    tui.wait_row("▸ eth0 gateway", lambda row: row.rstrip().endswith("192.0.2.1"))

    # review: the generated config, its secrets masked
    tui.keys("C-r")
    shown = tui.wait_for("Review the generated machine config")
    shown = tui.wait_for("hostname: node-tui")
    assert f"install disk {disk}" in shown, shown
    assert "key: '******'" in shown, shown  # the keys are masked (checked again below)
    review = shown
    tui.snap("4-review")

    tui.keys("Enter")  # Apply: ./talosconfig exists, so it asks
    shown = tui.wait_for("already exists")
    assert "talosconfig.new" in shown, shown
    tui.snap("5-overwrite")
    tui.keys("Enter")  # "No, keep it" (the focused answer)
    tui.wait_for("Press Enter to exit.")
    shown = tui.screen()
    tui.snap("6-progress")
    assert "failed" not in shown, shown
    tui.keys("Enter")
    assert _wait_exit(tui, rc_file) == 0, tui.screen()  # the session stays for its last words

    # the old talosconfig is untouched; the new one is 0600
    assert old.read_text() == OLD_TALOSCONFIG
    new = work / "talosconfig.new"
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    assert "tui-cluster" in new.read_text()

    # the node left maintenance mode with the chosen hostname and install disk
    node.expect(MTLS)
    tc = ["--talosconfig", str(new), "-n", "127.0.0.1"]
    version = api(node, *tc, "version")
    assert version.returncode == 0, version.stderr
    read = api(node, *tc, "read", "/system/state/config.yaml")
    assert read.returncode == 0, read.stderr
    cfg = yaml.safe_load(read.stdout)
    assert cfg["machine"]["network"]["hostname"] == "node-tui"
    assert cfg["machine"]["install"]["disk"] == disk
    assert cfg["machine"]["network"]["nameservers"] == ["192.0.2.53"]
    eth0 = cfg["machine"]["network"]["interfaces"][0]
    assert eth0["interface"] == "eth0" and eth0["cidr"] == "192.0.2.10/24"
    assert eth0["routes"] == [{"network": "0.0.0.0/0", "gateway": "192.0.2.1"}]
    assert cfg["cluster"]["clusterName"] == "tui-cluster"
    for secret in (cfg["machine"]["ca"]["key"], cfg["machine"]["token"], cfg["cluster"]["token"]):
        assert secret[:24] not in review  # nothing secret was on the review screen
    # negative control: the old credentials are not this cluster's
    assert api(node, "--talosconfig", str(old), "-n", "127.0.0.1", "version").returncode != 0
    hostname = subprocess.run(
        ["nsenter", f"--uts=/proc/{node.pid1}/ns/uts", "--", "hostname"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert hostname.stdout.strip() == "node-tui"
    _ = state


# --------------------------------------------------------------------------- the form's model


def _facts() -> NodeFacts:
    from talos_apply.interactive import model

    return model.NodeFacts(
        "10.5.0.2",
        (model.DiskInfo("/dev/sda", 10**11, "QEMU HARDDISK"),),
        (model.IfaceInfo("eth0", "aa:bb:cc:dd:ee:ff", True, ("10.5.0.2/24",)),),
    )


def test_form_checks_name_each_field() -> None:
    from talos_apply.interactive import model

    facts = _facts()
    good = model.initial(facts)
    assert good.install_disk == "/dev/sda" and good.endpoint == "https://10.5.0.2:6443"
    assert model.problems(good, facts) == {}  # negative control
    bad = model.initial(facts)
    bad.install_disk = "/dev/sdz"
    bad.endpoint = "10.5.0.2:6443"
    bad.nameservers = "1.1.1.1, dns.example"
    bad.interfaces[0].mode = "static"
    bad.interfaces[0].cidr = "10.5.0.2"
    bad.interfaces[0].gateway = "fd00::1"
    found = model.problems(bad, facts)
    assert found == {
        "install-disk": "the node has no disk /dev/sdz",
        "endpoint": "must be a URL with the https scheme",
        "nameservers": "dns.example is not an IP address",
        "cidr-0": "no prefix length (e.g. /24)",
        "gateway-0": "gateway: another IP version",
    }


def test_request_carries_the_form() -> None:
    from talos_apply.interactive import model

    values = model.initial(_facts())
    values.machine_type = "controlplane"
    values.hostname = "cp-1"
    values.interfaces[0] = model.IfaceForm("eth0", "static", "10.5.0.2/24", "10.5.0.1")
    req = model.generate_request(values)
    assert req.config_version == "v1alpha1"
    assert req.machine_config.type == 2
    assert req.machine_config.install_config.install_disk == "/dev/sda"
    assert req.machine_config.network_config.hostname == "cp-1"
    (dev,) = req.machine_config.network_config.interfaces
    assert (dev.interface, dev.cidr, dev.dhcp) == ("eth0", "10.5.0.2/24", False)
    assert [(r.network, r.gateway) for r in dev.routes] == [("0.0.0.0/0", "10.5.0.1")]
    values.interfaces[0].mode = "unchanged"  # an interface left alone is not in the request
    assert not model.generate_request(values).machine_config.network_config.interfaces


def test_talosconfig_is_0600_and_kept_files_get_new_names(tmp_path: Path) -> None:
    from talos_apply.interactive import model

    old = os.umask(0)
    try:
        path = model.write_talosconfig(tmp_path / "talosconfig", b"context: a\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert model.free_new_path(path) == tmp_path / "talosconfig.new"
    (tmp_path / "talosconfig.new").write_text("x")
    assert model.free_new_path(path) == tmp_path / "talosconfig.new.2"


def test_interactive_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from talos_apply.cli import main

    code = main(["apply-config", "--insecure", "-n", "127.0.0.1", "--interactive", "-f", "x"])
    assert code == 2 and "--interactive excludes --file" in capsys.readouterr().err
    # no terminal (pytest captures stdin/stdout): refused before anything is dialled
    code = main(["apply-config", "--insecure", "-n", "127.0.0.1", "--interactive"])
    assert code == 2 and "needs a terminal" in capsys.readouterr().err
    code = main(["apply-config", "--insecure", "-n", "127.0.0.1"])
    assert code == 2 and "--file" in capsys.readouterr().err
