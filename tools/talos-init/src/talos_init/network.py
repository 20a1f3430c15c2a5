"""Static addresses, routes and MTU from ``machine.network.interfaces``, over netlink (pyroute2).

Applied in metal mode, and in container mode only with ``--manage-network`` (the launcher says
the node has a network namespace of its own: a node must never change its host's interfaces).
DHCP and the shared VIP are not handled here (the VIP is talos-vip's job).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from libtalos.config.v1alpha1 import Device


def apply(interfaces: Sequence[Device]) -> list[str]:
    """Apply every interface's static settings (a zero ``mtu`` or ``metric``, an empty ``cidr``
    or ``gateway`` is unset); returns one message per change or problem.

    Blocking (netlink round trips): call it from a worker thread.
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    messages: list[str] = []
    with IPRoute() as ipr:
        for i, itf in enumerate(interfaces):
            where = f"machine.network.interfaces[{i}]"
            name = itf.interface
            if itf.ignore:
                messages.append(f"{where}: {name} ignored")
                continue
            found = ipr.link_lookup(ifname=name)
            if not found:
                messages.append(f"{where}: link {name} not found")
                continue
            index = found[0]
            try:
                if itf.mtu:
                    ipr.link("set", index=index, mtu=itf.mtu)
                ipr.link("set", index=index, state="up")
                for cidr in [itf.cidr] if itf.cidr else []:
                    address = ipaddress.ip_interface(cidr)
                    try:
                        ipr.addr(
                            "add",
                            index=index,
                            address=str(address.ip),
                            prefixlen=address.network.prefixlen,
                        )
                    except NetlinkError as exc:
                        if exc.code != 17:  # EEXIST: already there
                            raise
                    messages.append(f"{where}: {name} has {cidr}")
                for route in itf.routes:
                    spec: dict[str, object] = {"dst": route.network, "oif": index}
                    if route.gateway:
                        spec["gateway"] = route.gateway
                    if route.metric:
                        spec["priority"] = route.metric
                    ipr.route("replace", **spec)
                    via = f" via {route.gateway}" if route.gateway else ""
                    messages.append(f"{where}: route {route.network}{via} on {name}")
            except NetlinkError as exc:
                messages.append(f"{where}: {name}: netlink error {exc.code}")
    return messages
