"""``talos-cluster show`` (``talosctl cluster show``): the cluster's nodes, as a table on stdout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from libtalos.errors import TalosError
from talos_cluster import plan as planmod


def show(
    name: Annotated[str, typer.Option(help="the cluster's name")] = planmod.DEFAULT_NAME,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="where clusters keep their state (default ~/.talos/clusters)"),
    ] = None,
) -> int:
    """Show a local cluster's nodes: role, address, state, services, API, etcd."""
    from talos_cluster import state
    from talos_cluster.status import table

    planmod.check_name(name)
    cdir = planmod.cluster_dir((state_dir or state.default_state_dir()).absolute(), name)
    record = state.load(cdir)
    if record is None:
        raise TalosError(f"no cluster {name} (no record in {cdir})")
    sys.stderr.write(
        f"cluster {record.name}: network {record.cidr} in namespace {record.netns}, "
        f"endpoint {record.endpoint}, state {record.dir}"
        f"{'' if record.complete else ' (create did not finish)'}\n"
    )
    sys.stdout.write(table(record))
    return 0
