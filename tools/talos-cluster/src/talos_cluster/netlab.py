"""The cluster's network: namespaces, bridge and veth pairs over netlink (pyroute2).

Each node has a namespace made here, its ``eth0`` one end of a veth pair. The other ends and
the bridge holding the gateway address are, in the shared layout, in the network namespace
create runs in: two links per cluster plus one per node, each with the alias
``talos-cluster:NAME``, and one connected route (the CIDR on the bridge). Nothing else there is
changed: no default route, no NAT, no firewall rule, no namespace-wide sysctl; the bridge's own
IPv4 ``forwarding`` switch is turned off, so even where the namespace forwards packets
(``net.ipv4.ip_forward=1``), nothing the nodes send is forwarded beyond the bridge. In the
isolated layout the bridge and veth ends are in the cluster's own namespace instead, and
removing the namespaces removes every link.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from libtalos.errors import TalosError, UsageError
from talos_cluster.plan import ClusterPlan, NodePlan, find_clash, marker

NETNS_DIR = Path("/run/netns")
SELF_NETNS = Path("/proc/self/ns/net")
UNMARKED_WAIT = 3.0  # seconds destroy waits for an unmarked link to go with its peer's namespace


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


def current_netns() -> str:
    """This process's network namespace, as ``readlink /proc/self/ns/net`` shows it."""
    return os.readlink(SELF_NETNS)


def netns_alive(ident: str) -> bool:
    """Whether the namespace ``ident`` (``net:[INODE]``) still exists: this process's, a named
    one (``/run/netns``) or that of a running process."""
    if ident == current_netns():
        return True
    ino = ident.removeprefix("net:[").removesuffix("]")
    if not ino.isdigit():
        return False
    with contextlib.suppress(OSError):
        for entry in NETNS_DIR.iterdir():
            with contextlib.suppress(OSError):
                if entry.stat().st_ino == int(ino):
                    return True
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "net") == ident:
                    return True
    return False


@contextlib.contextmanager
def _here() -> Iterator[Any]:
    """Netlink to this process's network namespace."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        yield ipr


@contextlib.contextmanager
def _no_sigint() -> Iterator[None]:
    """SIGINT held back: a link and its alias are made together or not at all."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def check_shared(plan: ClusterPlan) -> None:
    """Refuse, before anything is made, a shared-layout cluster whose CIDR overlaps an address
    or route of this namespace (exit 2), or whose link names are taken (exit 1)."""
    net = ipaddress.IPv4Network(plan.cidr)
    with _here() as ipr:
        names = {int(link["index"]): str(link.get("ifname")) for link in ipr.link("dump")}
        addresses = [
            (
                str(a.get("label") or names.get(int(a["index"]), "?")),
                f"{a.get('address')}/{a['prefixlen']}",
            )
            for a in ipr.addr("dump", family=socket.AF_INET)
        ]
        routes = []
        for r in ipr.route("dump", family=socket.AF_INET):
            if not r["dst_len"]:
                continue
            dev = names.get(int(r.get("oif") or 0))
            table = r.get("table")
            where = f"{'dev ' + dev if dev else ''}{'' if table == 254 else f' table {table}'}"
            routes.append((f"{r.get('dst')}/{r['dst_len']}", where.strip()))
    clash = find_clash(net, addresses, routes)
    if clash is not None:
        raise UsageError(
            f"--cidr: {net} overlaps {clash} in this network namespace",
            hint="pick another --cidr (e.g. 10.6.0.0/24), or --isolated",
        )
    taken = [n for n in (plan.bridge, *(node.veth for node in plan.nodes)) if n in names.values()]
    if taken:
        raise TalosError(
            f"a link named {taken[0]} exists in this network namespace",
            hint="pick another --name, or remove it with 'ip link delete'",
        )


def create_bridge(plan: ClusterPlan) -> None:
    """The cluster's bridge with the gateway address: in the cluster's own namespace (made
    here, ``lo`` up) for the isolated layout, else in this one."""
    from pyroute2 import NetNS

    where = f"bridge {plan.bridge}"
    if plan.isolated:
        _create_netns(plan.netns)
        where += f" in namespace {plan.netns}"
    try:
        with NetNS(plan.netns) if plan.isolated else _here() as ns:
            if plan.isolated:
                ns.link("set", index=_lookup(ns, "lo"), state="up")
            with _no_sigint():
                ns.link("add", ifname=plan.bridge, kind="bridge")
                br = _lookup(ns, plan.bridge)
                ns.link("set", index=br, ifalias=marker(plan.name))
            if not plan.isolated:
                # before it has an address: nothing is ever forwarded from the bridge
                Path(f"/proc/sys/net/ipv4/conf/{plan.bridge}/forwarding").write_text("0\n")
            ns.addr("add", index=br, address=plan.gateway, prefixlen=plan.prefixlen)
            ns.link("set", index=br, state="up")
    except NetworkSetupError:
        raise
    except Exception as exc:  # noqa: BLE001 - netlink errors carry errno text only
        raise _fail(where, exc) from None


def create_node_netns(plan: ClusterPlan, node: NodePlan) -> None:
    """The node's namespace, its ``eth0`` (veth to the bridge), address and default route."""
    from pyroute2 import NetNS

    _create_netns(node.name)
    try:
        with NetNS(plan.netns) if plan.isolated else _here() as ns, _no_sigint():
            ns.link(
                "add",
                ifname=node.veth,
                kind="veth",
                peer={"ifname": "eth0", "net_ns_fd": node.name},
            )
            veth = _lookup(ns, node.veth)
            if not plan.isolated:
                ns.link("set", index=veth, ifalias=marker(plan.name))
            ns.link("set", index=veth, master=_lookup(ns, plan.bridge), state="up")
        with NetNS(node.name) as n:
            n.link("set", index=_lookup(n, "lo"), state="up")
            eth0 = _lookup(n, "eth0")
            n.addr("add", index=eth0, address=node.ip, prefixlen=node.prefixlen)
            n.link("set", index=eth0, state="up")
            # Only the bridge is behind the gateway: the isolated cluster namespace has no other
            # route; in the shared layout the bridge forwards nothing. Nothing a node sends
            # leaves the cluster.
            n.route("add", dst="0.0.0.0/0", gateway=node.gateway)
    except NetworkSetupError:
        raise
    except Exception as exc:  # noqa: BLE001 - netlink errors carry errno text only
        raise _fail(f"veth {node.veth} <-> {node.name}/eth0", exc) from None


def remove_links(name: str, links: list[str]) -> tuple[list[str], list[str]]:
    """Delete, in this namespace, each of ``links`` that carries cluster ``name``'s alias
    (deleting a veth end deletes its peer). Returns (removed, problems): a link of that name
    without the alias is left alone and named in the problems."""
    removed: list[str] = []
    problems: list[str] = []
    unmarked: list[str] = []
    with _here() as ipr:
        for ifname in links:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                continue
            try:
                (link,) = ipr.link("get", index=found[0])
                if link.get("ifalias") != marker(name):
                    unmarked.append(ifname)
                    continue
                ipr.link("del", index=found[0])
            except Exception as exc:  # noqa: BLE001 - netlink errors carry errno text only
                if getattr(exc, "code", None) != errno.ENODEV:
                    problems.append(_fail(f"link {ifname}: cannot remove", exc).message)
                    continue
                # gone meanwhile: its peer's namespace, removed just before, took it along
            removed.append(ifname)
        # a veth end whose peer was in a namespace removed just before goes with it, once the
        # kernel has freed that namespace (asynchronously): wait a little before naming it
        deadline = time.monotonic() + UNMARKED_WAIT
        while unmarked and time.monotonic() < deadline:
            unmarked = [n for n in unmarked if ipr.link_lookup(ifname=n)]
            if unmarked:
                time.sleep(0.05)
    problems.extend(
        f"link {ifname} is not marked {marker(name)}: left alone "
        f"(remove it with 'ip link delete {ifname}' if it is the cluster's)"
        for ifname in unmarked
    )
    return removed, problems


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
