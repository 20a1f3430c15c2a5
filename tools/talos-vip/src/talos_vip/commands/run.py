"""``talos-vip run``: campaign for the VIP and hold it while elected."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Annotated

import typer

from libtalos.errors import ExitCode, UsageError
from talos_vip.options import resolve

CONFIG_HELP = "machine config to read machine.network.interfaces[].vip from ('-' for stdin)"


def run(
    config: Annotated[str | None, typer.Option("--config", help=CONFIG_HELP)] = None,
    interface: Annotated[str | None, typer.Option(help="link to put the VIP on")] = None,
    vip: Annotated[str | None, typer.Option(help="the shared IPv4 or IPv6 address")] = None,
    etcd_endpoints: Annotated[
        str | None,
        typer.Option(help="comma-separated etcd URLs [default: http(s)://127.0.0.1:2379]"),
    ] = None,
    etcd_ca: Annotated[str | None, typer.Option(help="CA bundle (PEM) for etcd")] = None,
    etcd_cert: Annotated[str | None, typer.Option(help="client certificate (PEM) for etcd")] = None,
    etcd_key: Annotated[str | None, typer.Option(help="client key (PEM) for etcd")] = None,
    lease_ttl: Annotated[
        int, typer.Option(min=1, max=60, help="etcd lease TTL in seconds (etcd's floor is 2)")
    ] = 2,
    node_name: Annotated[
        str | None, typer.Option(help="campaign value [default: config hostname, else hostname]")
    ] = None,
    poll_interval: Annotated[
        float, typer.Option(min=0.01, max=5.0, help="seconds between election reads")
    ] = 0.1,
    announce_refresh: Annotated[
        float,
        typer.Option(min=0.0, help="seconds between periodic re-announcements (0: only on take)"),
    ] = 10.0,
) -> int:
    """Campaign for the VIP through etcd; add and announce it while elected.

    SIGTERM (or SIGHUP) removes the address, then resigns, and exits 0; Ctrl-C does the same
    and exits 130.
    """
    from talos_vip.daemon import Daemon, Settings

    common = resolve(
        config=config,
        interface=interface,
        vip=vip,
        etcd_endpoints=etcd_endpoints,
        etcd_ca=etcd_ca,
        etcd_cert=etcd_cert,
        etcd_key=etcd_key,
        node_name=node_name,
        need_interface=True,
    )
    if common.interface is None:  # resolve() checked it; this keeps the type narrow
        raise UsageError("--interface is required")
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="talos-vip: %(message)s", force=True
    )
    settings = Settings(
        interface=common.interface,
        vip=common.vip,
        endpoints=common.endpoints,
        node_name=common.node_name,
        lease_ttl=lease_ttl,
        poll_interval=poll_interval,
        refresh=announce_refresh,
        etcd_ca=common.etcd_ca,
        etcd_cert=common.etcd_cert,
        etcd_key=common.etcd_key,
    )
    stopped_by = Daemon(settings).run()
    if stopped_by == signal.SIGINT:
        sys.stderr.write("interrupted\n")
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.OK)
