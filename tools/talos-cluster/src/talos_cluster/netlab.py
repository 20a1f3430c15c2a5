"""The cluster's network: namespaces, bridge and veth pairs over netlink (pyroute2).

Everything is created inside namespaces made here: the cluster namespace (bridge + gateway) and
one namespace per node. The host's own network namespace is never changed. Removing the
namespaces removes every link in them (the bridge and both ends of each veth pair).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from libtalos.errors import TalosError
from talos_cluster.plan import BRIDGE, ClusterPlan, NodePlan

NETNS_DIR = Path("/run/netns")


class NetworkSetupError(TalosError):
    """A namespace or link could not be created (the message names it)."""


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def netns_inode(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(NETNS_DIR / name)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _fail(what: str, exc: BaseException) -> NetworkSetupError:
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    return NetworkSetupError(f"{what}: {reason}")


def _create_netns(name: str) -> None:
    from pyroute2 import netns

    try:
        netns.create(name)
    except Exception as exc:  # noqa: BLE001 - pyroute2 raises OSError or its own NetlinkError
        raise _fail(f"network namespace {name}", exc) from None


def _lookup(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise NetworkSetupError(f"link {ifname}: not found after creating it")
    return int(found[0])


def create_cluster_netns(plan: ClusterPlan) -> None:
    """The cluster namespace with ``lo`` up and the bridge holding the gateway address."""
    from pyroute2 import NetNS

    _create_netns(plan.netns)
    try:
        with NetNS(plan.netns) as ns:
            ns.link("set", index=_lookup(ns, "lo"), state="up")
            ns.link("add", ifname=BRIDGE, kind="bridge")
            br = _lookup(ns, BRIDGE)
            ns.addr("add", index=br, address=plan.gateway, prefixlen=plan.prefixlen)
            ns.link("set", index=br, state="up")
    except NetworkSetupError:
        raise
    except Exception as exc:  # noqa: BLE001 - netlink errors carry errno text only
        raise _fail(f"bridge {BRIDGE} in namespace {plan.netns}", exc) from None


def create_node_netns(plan: ClusterPlan, node: NodePlan) -> None:
    """The node's namespace, its ``eth0`` (veth to the bridge), address and default route."""
    from pyroute2 import NetNS

    _create_netns(node.name)
    try:
        with NetNS(plan.netns) as ns:
            ns.link(
                "add",
                ifname=node.veth,
                kind="veth",
                peer={"ifname": "eth0", "net_ns_fd": node.name},
            )
            ns.link("set", index=_lookup(ns, node.veth), master=_lookup(ns, BRIDGE), state="up")
        with NetNS(node.name) as n:
            n.link("set", index=_lookup(n, "lo"), state="up")
            eth0 = _lookup(n, "eth0")
            n.addr("add", index=eth0, address=node.ip, prefixlen=node.prefixlen)
            n.link("set", index=eth0, state="up")
            # Only the bridge is behind the gateway: the cluster namespace has no other route,
            # so nothing a node sends can leave the cluster.
            n.route("add", dst="0.0.0.0/0", gateway=node.gateway)
    except NetworkSetupError:
        raise
    except Exception as exc:  # noqa: BLE001 - netlink errors carry errno text only
        raise _fail(f"veth {node.veth} <-> {node.name}/eth0", exc) from None


def remove_netns(name: str) -> bool:
    """Delete the named namespace if it exists; True when one was removed."""
    if not netns_exists(name):
        return False
    from pyroute2 import netns

    try:
        netns.remove(name)
    except Exception as exc:  # noqa: BLE001 - pyroute2 raises OSError or its own errors
        raise _fail(f"network namespace {name}: cannot remove", exc) from None
    return True


def processes_in(namespaces: list[str]) -> list[int]:
    """PIDs of the processes living in any of the named network namespaces."""
    wanted = {ino for ino in (netns_inode(n) for n in namespaces) if ino is not None}
    if not wanted:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            st = os.stat(entry / "ns" / "net")
            if (st.st_dev, st.st_ino) in wanted:
                found.append(int(entry.name))
    return found
