"""``talos-cluster show`` (``talosctl cluster show``): the cluster's nodes, as a table on stdout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from libtalos.errors import TalosError
from talos_cluster import plan as planmod
from talos_cluster import state


def _where(record: state.ClusterRecord) -> str:
    """Which layout the cluster uses, and so how its nodes are reached."""
    from talos_cluster import netlab

    if record.layout == "isolated":
        return (
            f"layout isolated (in the private network namespace {record.netns}: "
            f"ip netns exec {record.netns} ...)"
        )
    if record.bridge_netns == netlab.current_netns():
        return "layout shared (in this network namespace)"
    return f"layout shared (in another network namespace, {record.bridge_netns})"


def show(
    name: Annotated[str, typer.Option(help="the cluster's name")] = planmod.DEFAULT_NAME,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="where clusters keep their state (default ~/.talos/clusters)"),
    ] = None,
) -> int:
    """Show a local cluster's nodes: role, address, state, services, API, etcd."""
    from talos_cluster.status import table

    planmod.check_name(name)
    cdir = planmod.cluster_dir((state_dir or state.default_state_dir()).absolute(), name)
    record = state.load(cdir)
    if record is None:
        raise TalosError(f"no cluster {name} (no record in {cdir})")
    vms = f"qemu VMs ({record.accel}), " if record.provisioner == "qemu" else ""
    sys.stderr.write(
        f"cluster {record.name}: {vms}network {record.cidr} on bridge {record.bridge}, "
        f"{_where(record)}, endpoint {record.endpoint}, state {record.dir}"
        f"{'' if record.complete else ' (create did not finish)'}\n"
    )
    sys.stdout.write(table(record))
    return 0
