"""The node's DHCP client: ``python -m talos_init.dhcp [--lease-dir D] [--resolv-conf F] LINK...``

(each ``LINK`` or ``LINK:METRIC``, the metric of its default route).

One process keeps a DHCPv4 lease on every link named (pyroute2's client: discover, request,
renewal at T1, rebinding at T2, expiry, release on exit), and applies each lease: its address,
its default route through the first router (with the link's route metric), and, with
``--resolv-conf``, the name servers of every lease in one resolver file. The node runs it as a
supervised service, so that pyroute2 never loads into PID 1. One line per lease event goes to
stdout (the service's log); SIGTERM releases the leases and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _say(message: str) -> None:
    print(message, flush=True)


class Links:
    """The leases of every link, and what applying them takes."""

    def __init__(self, metrics: dict[str, int], resolv_conf: Path | None) -> None:
        self.metrics = metrics
        self.resolv_conf = resolv_conf
        self.dns: dict[str, list[str]] = {}
        self.search: dict[str, list[str]] = {}

    async def bound(self, lease: Any) -> None:
        from pyroute2.dhcp.leases import MissingOptionError
        from pyroute2.iproute.linux import AsyncIPRoute

        link = lease.interface
        prefix = lease.prefixlen
        routers = _option(lease, "routers", MissingOptionError) or []
        async with AsyncIPRoute() as ipr:
            (index,) = await ipr.link_lookup(ifname=link)
            broadcast = _option(lease, "broadcast_address", MissingOptionError)
            spec: dict[str, Any] = {"index": index, "address": lease.ip, "prefixlen": prefix}
            if broadcast:
                spec["broadcast"] = broadcast
            await ipr.addr("replace", **spec)
            if routers:
                route: dict[str, Any] = {"dst": "0.0.0.0/0", "gateway": routers[0], "oif": index}
                if self.metrics.get(link):
                    route["priority"] = self.metrics[link]
                await ipr.route("replace", **route)
        self.dns[link] = list(_option(lease, "name_servers", MissingOptionError) or [])
        domain = _option(lease, "domain_name", MissingOptionError)
        self.search[link] = [domain] if domain else []
        self._write_resolvers()
        via = f", router {routers[0]}" if routers else ""
        dns = f", dns {' '.join(self.dns[link])}" if self.dns[link] else ""
        _say(f"{link}: bound {lease.ip}/{prefix}{via}{dns}, lease {lease.lease_time} s")

    async def unbound(self, lease: Any) -> None:
        from pyroute2.iproute.linux import AsyncIPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        link = lease.interface
        async with AsyncIPRoute() as ipr:
            found = await ipr.link_lookup(ifname=link)
            if found:
                with contextlib.suppress(NetlinkError):  # the route goes with the address
                    await ipr.addr(
                        "del", index=found[0], address=lease.ip, prefixlen=lease.prefixlen
                    )
        self.dns.pop(link, None)
        self.search.pop(link, None)
        self._write_resolvers()
        _say(f"{link}: released {lease.ip}")

    def _write_resolvers(self) -> None:
        if self.resolv_conf is None:
            return
        from talos_init.network import write_resolv_conf

        servers = [s for link in sorted(self.dns) for s in self.dns[link]]
        search = [d for link in sorted(self.search) for d in self.search[link]]
        try:
            write_resolv_conf(self.resolv_conf, servers, list(dict.fromkeys(search)))
        except OSError as exc:
            _say(f"{self.resolv_conf}: {exc.strerror}")


def _option(lease: Any, name: str, missing: type[Exception]) -> Any:
    try:
        return getattr(lease, name)
    except missing:
        return None


async def _keep(link: str, links: Links) -> None:
    """Keep a lease on ``link`` until cancelled (pyroute2's loop: link up/down followed)."""
    from pyroute2.dhcp.cli import run_client
    from pyroute2.dhcp.client import ClientConfig
    from pyroute2.dhcp.hooks import Hook, Trigger
    from pyroute2.dhcp.leases import JSONFileLease

    hooks = [
        Hook(links.bound, {Trigger.BOUND, Trigger.RENEWED, Trigger.REBOUND}),
        Hook(links.unbound, {Trigger.UNBOUND, Trigger.EXPIRED}),
    ]
    config = ClientConfig(
        interface=link, lease_type=JSONFileLease, hooks=hooks, handle_signals=False
    )
    await run_client(config)


async def _main(metrics: dict[str, int], resolv_conf: Path | None) -> int:
    links = Links(metrics, resolv_conf)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [loop.create_task(_keep(link, links), name=f"dhcp-{link}") for link in metrics]
    waiter = loop.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failed = [
        f"{link}: {type(r).__name__}: {r}"
        for link, r in zip(metrics, results, strict=True)
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
    ]
    for line in failed:
        _say(line)
    return 0 if waiter in done else 1


def parse_links(words: Sequence[str]) -> dict[str, int]:
    """``LINK`` or ``LINK:METRIC`` words: link -> default-route metric (0: the kernel's)."""
    out: dict[str, int] = {}
    for word in words:
        name, _, metric = word.partition(":")
        if not name or (metric and not metric.isdigit()):
            raise ValueError(f"{word!r}: expected LINK or LINK:METRIC")
        out[name] = int(metric or 0)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="talos_init.dhcp", description=__doc__)
    parser.add_argument("--lease-dir", type=Path, default=Path.cwd())
    parser.add_argument("--resolv-conf", type=Path)
    parser.add_argument("links", nargs="+", metavar="LINK[:METRIC]")
    args = parser.parse_args(argv)
    try:
        metrics = parse_links(args.links)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    args.lease_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chdir(args.lease_dir)  # pyroute2's JSONFileLease keeps LINK.lease.json in the cwd
    for link in metrics:
        _say(f"{link}: asking for a lease")
    return asyncio.run(_main(metrics, args.resolv_conf))


if __name__ == "__main__":
    sys.exit(main())
