"""``talos-vip status``: who holds the VIP, what we are, and our lease, as YAML."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from libtalos.errors import ExitCode
from libtalos.yamlio import dump
from talos_vip.commands.run import CONFIG_HELP
from talos_vip.options import resolve


def status(
    config: Annotated[str | None, typer.Option("--config", help=CONFIG_HELP)] = None,
    interface: Annotated[
        str | None, typer.Option(help="also report whether the VIP is on this link here")
    ] = None,
    vip: Annotated[str | None, typer.Option(help="the shared IPv4 or IPv6 address")] = None,
    etcd_endpoints: Annotated[
        str | None,
        typer.Option(help="comma-separated etcd URLs [default: http(s)://127.0.0.1:2379]"),
    ] = None,
    etcd_ca: Annotated[str | None, typer.Option(help="CA bundle (PEM) for etcd")] = None,
    etcd_cert: Annotated[str | None, typer.Option(help="client certificate (PEM) for etcd")] = None,
    etcd_key: Annotated[str | None, typer.Option(help="client key (PEM) for etcd")] = None,
    node_name: Annotated[
        str | None, typer.Option(help="whose state to report [default: hostname]")
    ] = None,
) -> int:
    """Print the VIP's holder, this node's state and its lease as YAML."""
    from talos_vip.elect import election_prefix
    from talos_vip.etcd import Client

    common = resolve(
        config=config,
        interface=interface,
        vip=vip,
        etcd_endpoints=etcd_endpoints,
        etcd_ca=etcd_ca,
        etcd_cert=etcd_cert,
        etcd_key=etcd_key,
        node_name=node_name,
        need_interface=False,
    )
    client = Client(
        common.endpoints,
        ca=common.etcd_ca,
        cert=common.etcd_cert,
        key=common.etcd_key,
        timeout=2.0,
    )
    try:
        kvs = client.range_prefix(election_prefix(str(common.vip)))
        mine = next((kv for kv in kvs if kv.value == common.node_name), None)
        lease: dict[str, Any] | None = None
        if mine is not None:
            remaining, granted = client.time_to_live(mine.lease)
            lease = {"id": f"{mine.lease:x}", "ttl": remaining, "grantedTTL": granted}
    finally:
        client.close()
    holder = kvs[0].value if kvs else None
    if mine is None:
        state = "absent"
    elif kvs[0] is mine:
        state = "leader"
    else:
        state = "candidate"
    out: dict[str, Any] = {
        "vip": str(common.vip),
        "holder": holder,
        "node": common.node_name,
        "state": state,
        "lease": lease,
        "candidates": [kv.value for kv in kvs],
    }
    if common.interface is not None:
        from talos_vip.apply import Applier

        applier = Applier(common.interface, common.vip)
        try:
            out["addressPresent"] = applier.present()
        finally:
            applier.close()
    sys.stdout.write(dump(out))
    return int(ExitCode.OK)
