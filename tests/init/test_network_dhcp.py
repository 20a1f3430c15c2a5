"""Metal networking: ``ip=`` of the kernel command line, the resolver file, and DHCP for real.

The DHCP tests build their own network namespaces (``ip netns add`` with unique names): a
server namespace where dnsmasq hands out 10.77.0.0/24 on one end of a veth pair, and a node
namespace holding the other end as ``eth0``. Nothing touches the build machine's interfaces.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libtalos.errors import TalosError
from talos_init import configsource, network
from talos_init.network import KernelIP, parse_kernel_ip

from .harness import PYTHON, NodeRun, write_config

# -- ip= ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("dhcp", KernelIP(dhcp=True)),
        ("off", None),
        (
            "10.0.0.99:::255.0.0.0:control-1:eth0:off:10.0.0.1",
            KernelIP("eth0", "10.0.0.99/8", "", "control-1", ("10.0.0.1",)),
        ),
        (
            "192.168.1.5::192.168.1.1:255.255.255.0::enp1s0:none:1.1.1.1:9.9.9.9",
            KernelIP("enp1s0", "192.168.1.5/24", "192.168.1.1", "", ("1.1.1.1", "9.9.9.9")),
        ),
        ("10.1.2.3::10.1.2.1:255.255.0.0", KernelIP("", "10.1.2.3/16", "10.1.2.1")),
        ("::::node-7:eth1:dhcp", KernelIP("eth1", hostname="node-7", dhcp=True)),
    ],
)
def test_kernel_ip_forms(value: str, parsed: KernelIP | None) -> None:
    assert parse_kernel_ip(value) == parsed


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.1:", "ip=10.0.0.1:: expected <client-ip>:<server-ip>:<gw-ip>:<netmask>"),
        (
            "10.0.0.300::10.0.0.1:255.255.255.0",
            "ip=10.0.0.300::10.0.0.1:255.255.255.0: <client-ip> '10.0.0.300' is not an IPv4 address",
        ),
        (
            "10.0.0.3::gw:255.0.255.0::eth0:off:dns",
            "ip=10.0.0.3::gw:255.0.255.0::eth0:off:dns: <gw-ip> 'gw' is not an IPv4 address; "
            "<netmask> '255.0.255.0' is not a netmask; <dns-ip> 'dns' is not an IPv4 address",
        ),
        (":::255.255.255.0::eth0:off", "<client-ip> '' is not an IPv4 address"),
    ],
)
def test_bad_kernel_ip_is_reported_naming_the_parameter(value: str, message: str) -> None:
    with pytest.raises(TalosError) as info:
        parse_kernel_ip(value)
    assert info.value.message.startswith(f"ip={value}")
    assert message in info.value.message


def test_kernel_ip_becomes_a_static_device_on_the_first_link() -> None:
    kip = parse_kernel_ip("10.1.2.3::10.1.2.1:255.255.0.0")
    assert kip is not None
    device = network.kernel_ip_device(kip, ["lo", "eth3", "eth4"])
    assert (device.interface, device.cidr) == ("eth3", "10.1.2.3/16")
    assert [(r.network, r.gateway) for r in device.routes] == [("0.0.0.0/0", "10.1.2.1")]


# -- the resolver file ----------------------------------------------------------------------------


def test_nameservers_written_first_three_else_talos_defaults(tmp_path: Path) -> None:
    path = tmp_path / "resolved" / "resolv.conf"
    network.write_resolv_conf(path, ["9.8.7.6", "8.7.6.5", "9.8.7.6", "1.2.3.4", "5.6.7.8"])
    assert path.read_text() == "nameserver 9.8.7.6\nnameserver 8.7.6.5\nnameserver 1.2.3.4\n"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    network.write_resolv_conf(path, [], ["example.org"])
    assert path.read_text() == "nameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch example.org\n"


# -- DHCP in the tests' own namespaces ------------------------------------------------------------


def _ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


@dataclass
class Lab:
    node_ns: str
    server_ns: str
    tmp: Path
    dnsmasq: subprocess.Popen[bytes] | None = None

    def serve(self) -> None:
        """dnsmasq (DHCP only, DNS off) on the server's end of the veth pair."""
        self.dnsmasq = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.server_ns,
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=srv0",
                "--bind-interfaces",
                "--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,120",
                "--dhcp-option=option:router,10.77.0.1",
                "--dhcp-option=option:dns-server,10.77.0.53",
                f"--dhcp-leasefile={self.tmp / 'leases'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def node(self, *args: str) -> str:
        return _ip("-n", self.node_ns, *args)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq is not installed (Debian's dnsmasq-base: run bash scripts/setup)")
    tag = f"{os.getpid()}-{time.monotonic_ns() % 10**6}"
    lab = Lab(f"dhcpn-{tag}", f"dhcps-{tag}", tmp_path)
    _ip("netns", "add", lab.node_ns)
    _ip("netns", "add", lab.server_ns)
    try:
        _ip(
            "link",
            "add",
            "eth0",
            "netns",
            lab.node_ns,
            "type",
            "veth",
            "peer",
            "name",
            "srv0",
            "netns",
            lab.server_ns,
        )
        _ip("-n", lab.server_ns, "addr", "add", "10.77.0.1/24", "dev", "srv0")
        _ip("-n", lab.server_ns, "link", "set", "srv0", "up")
        _ip("-n", lab.node_ns, "link", "set", "lo", "up")
        yield lab
    finally:
        if lab.dnsmasq is not None:
            lab.dnsmasq.terminate()
            lab.dnsmasq.wait(timeout=10)
        for ns in (lab.node_ns, lab.server_ns):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def _dhcp_child(lab: Lab, *extra: str) -> subprocess.Popen[str]:
    argv = ["ip", "netns", "exec", lab.node_ns, PYTHON, "-m", "talos_init.dhcp", *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_address(lab: Lab, bound: float) -> str:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        shown = lab.node("-4", "-o", "addr", "show", "dev", "eth0")
        if "inet " in shown:
            return shown
        time.sleep(0.1)
    return ""


def test_dhcp_child_leases_and_applies_address_route_and_dns(lab: Lab) -> None:
    lab.serve()
    lab.node("link", "set", "eth0", "up")
    resolv = lab.tmp / "resolved" / "resolv.conf"
    child = _dhcp_child(
        lab, "--lease-dir", str(lab.tmp / "l"), "--resolv-conf", str(resolv), "eth0"
    )
    try:
        shown = _wait_address(lab, 30)
        assert "inet 10.77.0." in shown and "/24" in shown
        assert "default via 10.77.0.1 dev eth0" in lab.node("route", "show")
        deadline = time.monotonic() + 10
        while not resolv.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert resolv.read_text() == "nameserver 10.77.0.53\n"
        assert (lab.tmp / "l" / "eth0.lease.json").exists()
    finally:
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=30)
    assert child.returncode == 0, out
    assert "eth0: bound 10.77.0." in out and "router 10.77.0.1, dns 10.77.0.53" in out
    assert "eth0: released 10.77.0." in out
    assert "inet " not in lab.node("-4", "-o", "addr", "show", "dev", "eth0")  # released


def test_dhcp_without_a_server_leaves_no_address_and_the_wait_is_bounded(lab: Lab) -> None:
    lab.node("link", "set", "eth0", "up")
    child = _dhcp_child(lab, "--lease-dir", str(lab.tmp / "l"), "eth0")
    try:
        started = time.monotonic()
        found = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                lab.node_ns,
                PYTHON,
                "-c",
                "from talos_init import network; print(network.wait_for_leases(['eth0'], 3.0))",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert found.stdout.strip() == "{}"
        assert 3.0 <= time.monotonic() - started < 15
        assert "inet " not in lab.node("-4", "-o", "addr", "show", "dev", "eth0")
    finally:
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=30)
    assert child.returncode == 0


def _node_in(lab: Lab, run_node, *extra: str, config: str | None = None) -> NodeRun:
    wrap = ("ip", "netns", "exec", lab.node_ns, "unshare", "--pid", "--fork", "--mount-proc")
    return run_node("--manage-network", *extra, config=config, wrap=(*wrap, "--uts"))


def test_maintenance_banner_lists_the_dhcp_address(lab: Lab, run_node, tmp_path: Path) -> None:
    lab.serve()
    node = _node_in(lab, run_node)
    leased = node.expect(r"\[talos\] network: eth0 has (10\.77\.0\.\d+) \(DHCP\)$").group(1)
    node.expect(r"\[talos\] starting maintenance service$")
    node.expect(r"\[talos\] this machine is reachable at:$")
    assert node.expect(r"\[talos\] \t(\S+)$").group(1) == leased
    node.expect(rf"apply-config --insecure --nodes {leased} --file <config.yaml>")
    resolv = Path(f"/proc/{node.pid1}/root/system/resolved/resolv.conf")
    assert resolv.read_text() == "nameserver 10.77.0.53\n"
    assert "default via 10.77.0.1 dev eth0" in lab.node("route", "show")
    # a config without machine.network: the same client keeps its lease and the resolver file
    config = write_config(tmp_path / "worker.yaml", "join", "dhcp-1")
    (tmp_path / "node" / "state" / configsource.DROP_NAME).write_text(config.read_text())
    node.expect(r"boot sequence: done")
    assert resolv.read_text() == "nameserver 10.77.0.53\n"
    assert len(node.matching(r"service\[dhcp\]\(Running\)")) == 1
    assert leased in lab.node("-4", "-o", "addr", "show", "dev", "eth0")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    assert "inet " not in lab.node("-4", "-o", "addr", "show", "dev", "eth0")  # released


def test_without_a_server_the_node_goes_on_to_maintenance(lab: Lab, run_node) -> None:
    node = _node_in(lab, run_node)
    node.expect(r"\[talos\] service\[dhcp\]\(Running\)")
    started = time.monotonic()
    node.expect(r"\[talos\] network: eth0: no DHCP lease after 15s; going on$", timeout=40)
    assert time.monotonic() - started < 30
    node.expect(r"\[talos\] this machine is reachable at:$")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143


def test_configured_nameservers_and_ip_param_win(lab: Lab, run_node, tmp_path: Path) -> None:
    lab.serve()  # a server is there, but ip= configures eth0 statically: no DHCP
    network_cfg = {"nameservers": ["9.8.7.6", "8.7.6.5"]}
    config = write_config(tmp_path / "ns.yaml", "join", "ns-1", network=network_cfg)
    cmdline = "ip=10.77.0.9::10.77.0.1:255.255.255.0::eth0:off:10.77.0.54"
    node = _node_in(lab, run_node, "--cmdline", cmdline, config=str(config))
    node.expect(r"ip=: eth0 has 10\.77\.0\.9/24")
    node.expect(r"boot sequence: done")
    resolv = Path(f"/proc/{node.pid1}/root/system/resolved/resolv.conf")
    assert resolv.read_text() == "nameserver 9.8.7.6\nnameserver 8.7.6.5\n"
    assert "default via 10.77.0.1 dev eth0" in lab.node("route", "show")
    assert not node.matching(r"service\[dhcp\]")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
