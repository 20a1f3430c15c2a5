"""``talos-cluster destroy`` (``talosctl cluster destroy``): remove exactly what create made.

From the cluster's record: the nodes' processes (SIGTERM to each PID 1 for an orderly stop,
SIGKILL after a grace period; then any process still inside one of the cluster's network
namespaces), the cgroups, the bridge and the veth ends beside it (shared layout: each only when
it carries the cluster's alias), the network namespaces (which take their links with them), and
the state directory. A node that crashed or was never started is skipped; a record
left by an interrupted create is handled the same way. Running it again finds no record and
does nothing (exit 0).

The record is checked before anything is touched: its directory must be the one it was found
in, inside the state directory (symlinks resolved), and the namespaces and cgroups it names
must be this cluster's, and so must the links (the names create derives from the cluster's
name). A record naming anything else is refused with exit 1, the offending path or name in the
message, and nothing removed. So is a shared-layout cluster whose bridge is in another network
namespace that still exists: destroy must run there (when that namespace is gone, its links
went with it).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from libtalos.errors import TalosError, UsageError
from talos_cluster import plan as planmod
from talos_cluster import state
from talos_cluster.state import ClusterRecord, NodeRecord

KILL_WAIT = 10.0


def progress(message: str) -> None:
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def destroy(
    name: Annotated[str, typer.Option(help="the cluster's name")] = planmod.DEFAULT_NAME,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="where clusters keep their state (default ~/.talos/clusters)"),
    ] = None,
    grace: Annotated[
        float, typer.Option(help="seconds between SIGTERM and SIGKILL for each node")
    ] = 15.0,
) -> int:
    """Destroy a local cluster: its nodes, namespaces, links, cgroups and state."""
    planmod.check_name(name)
    if math.isnan(grace) or math.isinf(grace) or grace < 0:
        raise UsageError(f"--grace: {grace}: must be a number of seconds, zero or more")
    root = (state_dir or state.default_state_dir()).absolute()
    cdir = planmod.cluster_dir(root, name)
    record = state.load(cdir)
    if record is None:
        progress(f"cluster {name}: nothing to destroy (no record in {cdir})")
        return 0
    check_record(record, root, name)
    check_namespace(record)
    started = time.monotonic()
    destroy_record(record, grace=grace)
    progress(f"cluster {name} destroyed in {time.monotonic() - started:.1f}s")
    return 0


def check_record(record: ClusterRecord, state_root: Path, name: str) -> None:
    """Refuse a record that names a directory, namespace or cgroup not of cluster ``name``.

    Its directory must resolve to ``<state_root>/<name>``, itself directly inside the resolved
    state directory (a cluster directory that is a symlink elsewhere is refused as well).
    """
    where = planmod.cluster_dir(state_root, name) / state.STATE_FILE
    root = _resolve(state_root)
    cdir = _resolve(planmod.cluster_dir(state_root, name))
    if root is None or cdir is None or cdir.parent != root:
        raise state.RecordError(
            f"{where}: the cluster directory resolves to {cdir}, outside the state directory "
            f"{root}: refusing to remove it"
        )
    named = Path(record.dir)
    if not named.is_absolute() or _resolve(named) != cdir:
        raise state.RecordError(
            f"{where}: the record names the directory {record.dir}, not {cdir} in the state "
            f"directory {root}: refusing to remove it",
            hint="fix 'dir:' in the record, or remove the cluster by hand",
        )
    if record.provisioner == "qemu":
        from talos_cluster.qemu.provision import check_record as check_qemu

        check_qemu(record, where)
        return
    if record.provisioner != "namespace":
        raise state.RecordError(
            f"{where}: provisioner {record.provisioner!r} is not namespace or qemu"
        )
    ours = re.compile(rf"^{re.escape(name)}-(master|worker)-[0-9]+$")
    if record.layout not in ("shared", "isolated"):
        raise state.RecordError(f"{where}: layout {record.layout!r} is not shared or isolated")
    isolated = record.layout == "isolated"
    if record.netns != (name if isolated else ""):
        raise state.RecordError(f"{where}: netns {record.netns!r} is not cluster {name}'s")
    bridge = planmod.BRIDGE if isolated else planmod.bridge_name(name)
    if record.bridge != bridge:
        raise state.RecordError(
            f"{where}: bridge {record.bridge!r} is not cluster {name}'s: refusing to remove it"
        )
    layout: planmod.Layout = "isolated" if isolated else "shared"
    for n in record.nodes:
        m = re.fullmatch(r"(master|worker)-([0-9]+)", n.name.removeprefix(f"{name}-"))
        role: planmod.Role = "controlplane" if m and m.group(1) == "master" else "worker"
        if n.veth and (m is None or n.veth != planmod.veth_name(name, role, int(m[2]), layout)):
            raise state.RecordError(
                f"{where}: link {n.veth!r} is not cluster {name}'s: refusing to remove it"
            )
    for ns in [*record.namespaces, *(n.netns for n in record.nodes)]:
        if not (ns == name and isolated) and not ours.match(ns):
            raise state.RecordError(
                f"{where}: network namespace {ns!r} is not cluster {name}'s: refusing to remove it"
            )
    nodes = {n.name for n in record.nodes}
    for group in [*record.cgroup_roots, *(g for n in record.nodes for g in n.cgroups)]:
        if not _our_cgroup(Path(os.path.normpath(group)), name, nodes):
            raise state.RecordError(
                f"{where}: cgroup {group} is not cluster {name}'s: refusing to remove it"
            )


def check_namespace(record: ClusterRecord) -> None:
    """Refuse a shared-layout cluster whose bridge is in another namespace that still exists."""
    from talos_cluster import netlab

    if record.layout != "shared" or not record.bridge_netns:
        return
    if record.bridge_netns != netlab.current_netns() and netlab.netns_alive(record.bridge_netns):
        raise TalosError(
            f"cluster {record.name}: its bridge {record.bridge} is in network namespace "
            f"{record.bridge_netns}, not this one ({netlab.current_netns()}): nothing removed",
            hint="run destroy from the shell (network namespace) that ran create",
        )


def _resolve(path: Path) -> Path | None:
    """``path`` with every symlink resolved; None for a symlink loop."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return None


def _our_cgroup(group: Path, name: str, nodes: set[str]) -> bool:
    """``group`` is ``<hierarchy>/talos-cluster[/<name>[/<node>]]`` in the cgroup root."""
    from talos_cluster import cgroups

    try:
        parts = group.relative_to(cgroups.CGROUP_ROOT).parts
    except ValueError:
        return False
    if cgroups.PARENT not in parts[:2]:
        return False
    below = parts[parts.index(cgroups.PARENT) + 1 :]
    return len(below) <= 2 and below[:1] in ((), (name,)) and (len(below) < 2 or below[1] in nodes)


def _stop_order(running: list[NodeRecord]) -> list[list[NodeRecord]]:
    """The workers with the last control plane, then the other control planes one at a time,
    the first (bootstrap) node last.

    An etcd member that leads when it gets SIGTERM hands leadership to a live peer before it
    exits, and waits for that up to its request timeout (7 s at etcd's default timing) when the
    peer is stopping at the same moment. One at a time, each leader finds a peer that stays up,
    or none at all (the last one), and stops in milliseconds.
    """
    cps = [n for n in running if n.role == "controlplane"]
    first = [n for n in running if n.role != "controlplane"] + cps[-1:]
    return [b for b in [first, *([n] for n in reversed(cps[:-1]))] if b]


def _stop(batch: list[NodeRecord], deadline: float) -> list[NodeRecord]:
    """SIGTERM to each node's PID 1; the nodes still running at ``deadline``."""
    from talos_cluster import nodes

    for n in batch:
        with contextlib.suppress(ProcessLookupError):
            os.kill(nodes.node_pid1(n.pid) or n.pid, signal.SIGTERM)
    resend = time.monotonic() + 0.5
    running = list(batch)
    while running and time.monotonic() < deadline:
        running = [n for n in running if nodes.alive(n.pid, n.start_time)]
        if running:
            time.sleep(0.02)
        if time.monotonic() > resend:
            # A PID 1 ignores signals it has no handler for: a node caught before talos-init
            # set up its signal loop drops the first SIGTERM, so repeat it.
            resend = time.monotonic() + 0.5
            for n in running:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(nodes.node_pid1(n.pid) or n.pid, signal.SIGTERM)
    return [n for n in running if nodes.alive(n.pid, n.start_time)]


def destroy_record(record: ClusterRecord, *, grace: float = 15.0) -> None:
    """Remove what ``record`` lists, then the cluster directory (record last); a problem keeps
    the record for another run."""
    if record.provisioner == "qemu":
        from talos_cluster.qemu.provision import destroy_vms

        problems = destroy_vms(record, grace=grace)
    else:
        problems = _destroy_nodes(record, grace=grace)
    if problems:
        raise TalosError(
            f"cluster {record.name}: not everything could be removed: " + "; ".join(problems),
            hint=f"the record in {record.path()} is kept: run destroy again",
        )
    remove_cluster_dir(record)


def _destroy_nodes(record: ClusterRecord, *, grace: float) -> list[str]:
    """The namespace provisioner's nodes, cgroups, namespaces and links; the problems."""
    from talos_cluster import cgroups, netlab, nodes

    problems: list[str] = []
    # 1. the nodes: an orderly stop (SIGTERM), SIGKILL for what is left after the grace period
    running = [n for n in record.nodes if n.pid and nodes.alive(n.pid, n.start_time)]
    deadline = time.monotonic() + grace
    for batch in _stop_order(running):
        for n in batch:
            progress(f"stopping node {n.name}")
        for n in _stop(batch, deadline):
            progress(f"node {n.name} did not stop within {grace:g}s: killing it")
            pid1 = nodes.node_pid1(n.pid)
            nodes.kill_all([p for p in (n.pid, pid1) if p])
    # 2. anything still living in the cluster's namespaces (e.g. a node that lost its launcher)
    deadline = time.monotonic() + KILL_WAIT
    while True:
        left = netlab.processes_in(record.namespaces)
        left = [p for p in left if p != os.getpid()]
        if not left:
            break
        if time.monotonic() > deadline:
            problems.append(f"processes {left} survive SIGKILL in the cluster's namespaces")
            break
        nodes.kill_all(left)
        time.sleep(0.05)
    for n in record.nodes:
        if n.pid:
            nodes.reap(n.pid)
    # 3. cgroups: the nodes' groups must go (once their last task has exited); shared parents
    # only when empty
    node_groups = {g for n in record.nodes for g in n.cgroups}
    deadline = time.monotonic() + KILL_WAIT
    while cgroups.populated(sorted(node_groups)) and time.monotonic() < deadline:
        nodes.kill_all(cgroups.tasks(sorted(node_groups)))
        time.sleep(0.05)
    for path in cgroups.remove([*record.cgroup_roots, *node_groups]):
        if path in node_groups:
            problems.append(f"cgroup {path}: cannot remove")
    # 4. namespaces (links go with them), nodes first, the cluster's (bridge) last; before the
    # links, so that a node's veth end that create had no time to mark (killed between making
    # the pair and marking it) goes with its peer in the node's namespace
    for ns in reversed(record.namespaces):
        try:
            if netlab.remove_netns(ns):
                progress(f"removed network namespace {ns}")
        except TalosError as exc:
            problems.append(exc.message)
    # 5. the links beside the user's (shared layout): the veth ends (their peers in the nodes'
    # namespaces go with them), then the bridge, its address and route with it; only in the
    # namespace create made them in (a namespace that is gone took them along)
    if record.layout == "shared" and (
        not record.bridge_netns or record.bridge_netns == netlab.current_netns()
    ):
        links = [*(n.veth for n in record.nodes if n.veth), record.bridge]
        try:
            removed, trouble = netlab.remove_links(record.name, links)
        except Exception as exc:  # noqa: BLE001 - netlink errors carry errno text only
            removed, trouble = [], [f"links {', '.join(links)}: {type(exc).__name__}"]
        problems.extend(trouble)
        if record.bridge in removed:
            progress(f"removed bridge {record.bridge}")
    return problems


def remove_cluster_dir(record: ClusterRecord) -> None:
    """The cluster directory, the record last."""
    cdir = Path(record.dir)
    for entry in list(cdir.iterdir()) if cdir.is_dir() else []:
        if entry.name != record.path().name:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
    with contextlib.suppress(FileNotFoundError):
        record.path().unlink()
    try:
        cdir.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise TalosError(f"{cdir}: cannot remove: {exc.strerror}") from None
