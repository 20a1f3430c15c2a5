"""A qemu cluster's network, beside the bridge :mod:`talos_cluster.netlab` makes in this network
namespace (gateway ``.1``, forwarding off on it, no route or NAT to anything else):

- one tap per VM, enslaved to the bridge and marked with the cluster's alias (``ip -d link``),
  named as the namespace provisioner's veth ends (``<prefix>_m1``, ``<prefix>_w1`` …);
- Debian's dnsmasq bound to the bridge only, DHCP and nothing else (``--port=0``: no DNS), a
  fixed address per MAC (``.2``, ``.3`` … as the plan gives them) and no other lease
  (``static``); for a kernel-and-initramfs boot each host's boot file is its iPXE script;
- the HTTP server on the gateway (:mod:`talos_cluster.qemu.httpd`).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from talos_cluster.netlab import NetworkSetupError, _fail, _here, _lookup, _no_sigint
from talos_cluster.plan import ClusterPlan, marker

DNSMASQ = "dnsmasq"
LEASE = "1h"


@dataclass(frozen=True)
class DhcpHost:
    mac: str
    ip: str
    hostname: str
    boot_url: str = ""  # the iPXE script (kernel-and-initramfs boot), else ""

    @property
    def tag(self) -> str:
        return f"h{self.ip.replace('.', '-')}"


def hosts_file(hosts: list[DhcpHost]) -> str:
    """The hosts as dnsmasq is given them (``MAC,set:TAG,IP,HOSTNAME``), one a line: the
    cluster directory's ``dhcp-hosts``, for people (dnsmasq takes them on its command line,
    as it reads files only after dropping root, and the cluster directory is root's 0700)."""
    return "".join(f"{_host(h)}\n" for h in hosts)


def _host(h: DhcpHost) -> str:
    return f"{h.mac},set:{h.tag},{h.ip},{h.hostname}"


def dnsmasq_argv(plan: ClusterPlan, hosts: list[DhcpHost], cdir: Path) -> list[str]:
    """dnsmasq for the cluster's bridge: its hosts only, no DNS, files in ``cdir``."""
    net = ipaddress.IPv4Network(plan.cidr)
    cmd = [
        DNSMASQ,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",
        f"--interface={plan.bridge}",
        "--bind-interfaces",
        "--except-interface=lo",
        f"--dhcp-range={net.network_address},static,{net.netmask},{LEASE}",
        f"--dhcp-leasefile={cdir / 'dnsmasq.leases'}",
        f"--pid-file={cdir / 'dnsmasq.pid'}",
        f"--dhcp-option=option:router,{plan.gateway}",
        "--dhcp-authoritative",
        "--log-dhcp",
        f"--log-facility={cdir / 'dnsmasq.log'}",
    ]
    cmd += [f"--dhcp-host={_host(h)}" for h in hosts]
    cmd += [f"--dhcp-boot=tag:{h.tag},{h.boot_url}" for h in hosts if h.boot_url]
    return cmd


def httpd_argv(gateway: str, port: int, mapping: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "talos_cluster.qemu.httpd",
        "--bind",
        gateway,
        "--port",
        str(port),
        "--map",
        str(mapping),
    ]


def ipxe_script(base: str, cmdline: str) -> str:
    """The iPXE script of a kernel-and-initramfs boot from the HTTP server at ``base``."""
    return f"#!ipxe\nkernel {base}/vmlinuz {cmdline}\ninitrd {base}/initramfs.xz\nboot\n"


def free_port() -> int:
    """A TCP port no socket of this namespace holds (bound on every address, then let go), for
    the HTTP server that binds the gateway address once the bridge exists."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))  # noqa: S104 - only to learn a port that is free on every address
        return int(s.getsockname()[1])


def create_tap(plan: ClusterPlan, tap: str) -> None:
    """A persistent tap ``tap`` on the cluster's bridge, marked as the cluster's, up."""
    try:
        with _here() as ipr:
            with _no_sigint():
                ipr.link("add", ifname=tap, kind="tuntap", mode="tap")
                index = _lookup(ipr, tap)
                ipr.link("set", index=index, ifalias=marker(plan.name))
            ipr.link("set", index=index, master=_lookup(ipr, plan.bridge), state="up")
    except NetworkSetupError:
        raise
    except Exception as exc:  # noqa: BLE001 - netlink errors carry errno text only
        raise _fail(f"tap {tap}", exc) from None
