"""In-process checks of the node's API wiring (no namespaces needed)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys

import pytest

from talos_init.boot import _api_port
from talos_init.modes import Mode


def test_api_port_defaults() -> None:
    # an isolated container node and a metal node serve the API on 50000
    assert _api_port(Mode.container, True, True, None) == 50000
    assert _api_port(Mode.metal, False, True, None) == 50000
    # --no-isolate shares the launcher's network namespace: off unless a port is given
    assert _api_port(Mode.container, False, True, None) is None
    assert _api_port(Mode.container, False, True, 15000) == 15000
    assert _api_port(Mode.container, True, False, 15000) is None  # --no-api wins


@pytest.mark.system
def test_node_addresses_in_a_private_netns() -> None:
    """Inside a network namespace made here: a veth link with an IPv4 and an IPv6 address;
    the listing has both and leaves out loopback and link-local."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip (a private network namespace)")
    script = (
        "set -e; ip link set lo up; ip link add d0 type veth peer name d1; "
        "ip addr add 10.9.0.7/24 dev d0; ip addr add fd09::7/64 dev d0 nodad; "
        "ip link set d0 up; ip link set d1 up; "
        f"{sys.executable} -c 'from talos_init.addresses import node_addresses; "
        "print(*node_addresses())'"
    )
    res = subprocess.run(
        ["unshare", "--net", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    found = res.stdout.split()
    assert "10.9.0.7" in found and "fd09::7" in found, found
    for text in found:
        ip = ipaddress.ip_address(text)
        assert not (ip.is_loopback or ip.is_link_local), text
