"""``create``'s steps that check and make the cluster itself: each takes the options and the
run, and records every resource in the cluster's record before making it."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from libtalos.errors import TalosError, UsageError
from talos_cluster.options import CreateOptions
from talos_cluster.rollback import missing_dirs, remove_dirs
from talos_cluster.runstate import CreateRun, progress
from talos_cluster.state import ClusterRecord, NodeRecord

WAIT_POLL = 0.1


def check_new(opts: CreateOptions, run: CreateRun) -> None:
    """No record of the cluster, no network namespace of its names; its PID 1 installed."""
    from talos_cluster import netlab, nodes, state

    p, cdir = opts.plan, opts.cluster_dir
    if state.load(cdir) is not None:
        raise TalosError(
            f"cluster {p.name} exists (state in {cdir})",
            hint=f"talos-cluster destroy --name {p.name}",
        )
    names = [*([p.netns] if p.isolated else []), *(n.name for n in p.nodes)]
    taken = [ns for ns in names if netlab.netns_exists(ns)]
    if taken:
        raise TalosError(
            f"network namespace {taken[0]} exists and is not this cluster's",
            hint="pick another --name, or remove it with 'ip netns delete'",
        )
    run.command = list(opts.stand_in) if opts.stand_in is not None else nodes.talos_init_command()


def check_network(opts: CreateOptions, run: CreateRun) -> None:
    """Shared layout: a CIDR that overlaps nothing here, link names not taken (checked last,
    just before the network is made)."""
    from talos_cluster import netlab

    if not opts.plan.isolated:
        _check_other_clusters(opts, run.here)
        netlab.check_shared(opts.plan)


def _check_other_clusters(opts: CreateOptions, here: str) -> None:
    """Refuse a CIDR that overlaps another cluster's in this namespace (exit 2), also one whose
    bridge is not up (yet)."""
    import ipaddress

    from talos_cluster import state

    p = opts.plan
    net = ipaddress.IPv4Network(p.cidr)
    try:
        others = sorted(d for d in opts.state_root.iterdir() if d.name != p.name)
    except OSError:
        return
    for d in others:
        try:
            other = state.load(d)
        except TalosError:
            continue
        if other is None or other.layout != "shared" or other.bridge_netns != here:
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.ip_network(other.cidr).overlaps(net):
                raise UsageError(
                    f"--cidr: {net} overlaps cluster {other.name}'s network {other.cidr} "
                    f"in this network namespace",
                    hint="pick another --cidr, or destroy that cluster first",
                )


def make_cluster_dir(opts: CreateOptions, run: CreateRun) -> None:
    """The cluster directory (0700) and the directories above it, which a roll-back removes."""
    cdir = opts.cluster_dir
    run.started = time.monotonic()
    run.undo.dirs = missing_dirs(cdir.parent)
    try:
        cdir.mkdir(mode=0o700, parents=True, exist_ok=False)
    except FileExistsError:
        raise TalosError(
            f"{cdir} exists without a cluster record",
            hint="remove it, or pick another --name or --state-dir",
        ) from None
    except OSError as exc:
        remove_dirs(run.undo.dirs)
        raise TalosError(f"{cdir}: cannot create: {exc.strerror}") from None


def save_record(opts: CreateOptions, run: CreateRun) -> None:
    run.record.save()


def create_network(opts: CreateOptions, run: CreateRun) -> None:
    """The bridge with the gateway address: here, or in the cluster's own namespace."""
    from talos_cluster import netlab

    p, record = opts.plan, run.record
    if p.isolated:
        progress(
            f"creating network namespace {p.netns}: bridge {p.bridge} {p.gateway}/{p.prefixlen}"
        )
        record.namespaces.append(p.netns)
        record.save()
    else:
        progress(f"creating bridge {p.bridge} {p.gateway}/{p.prefixlen} in this network namespace")
    netlab.create_bridge(p)


def start_nodes(opts: CreateOptions, run: CreateRun) -> None:
    """Per node: its network namespace and veth pair, directories, cgroups, and its PID 1."""
    from talos_cluster import cgroups, netlab, nodes

    p, record, cdir = opts.plan, run.record, opts.cluster_dir
    for node in p.nodes:
        ndir = cdir / node.name
        rec = NodeRecord(
            name=node.name,
            role=node.role,
            ip=node.ip,
            netns=node.name,
            dir=str(ndir),
            console=str(ndir / "console.log"),
            veth=node.veth,
        )
        record.nodes.append(rec)
        record.namespaces.append(node.name)
        record.save()
        run.interrupts.check()
        progress(f"creating node {node.name} ({node.role}, {node.ip}/{node.prefixlen})")
        netlab.create_node_netns(p, node)
        for sub in ("state", "ephemeral"):
            (ndir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        limits = cgroups.setup(p.name, node.name, node.cpus, node.memory_mib, record.cgroup_roots)
        rec.cgroups = limits.groups
        rec.limits = limits.summary
        record.save()
        progress(f"  --cpus/--memory: {limits.summary}")
        argv = list(run.command)
        if not record.node_command_stand_in:
            argv += ["--mode", "container", "--state-dir", str(ndir)]
            argv += ["--cmdline", f"talos.hostname={node.name}"]
            if opts.inject:
                argv += ["--config", str(run.configs[node.machine_type])]
        pid, start = nodes.launch(
            netns=node.name, node_command=argv, console=Path(rec.console), cgroup_procs=limits.procs
        )
        rec.pid, rec.start_time = pid, start
        record.save()
    run.interrupts.check()
    record.complete = True
    record.save()


def wait_for_nodes(opts: CreateOptions, run: CreateRun) -> None:
    """``--wait`` (and always before ``--with-apply-config``): every node up."""
    if opts.wait or opts.apply:
        _wait(run, opts.timeout, stand_in=opts.stand_in is not None, inject=opts.inject)


def apply_configs(opts: CreateOptions, run: CreateRun) -> None:
    """``--with-apply-config``: each node sent its config, then (``--wait``) awaited again."""
    if not opts.apply:
        return
    from talos_cluster.bootstrap import apply_configs as send

    send(run.record, run.configs, opts.timeout)
    if opts.wait:
        _wait(run, opts.timeout, stand_in=False, inject=True)


def bootstrap(opts: CreateOptions, run: CreateRun) -> None:
    """etcd bootstrapped on the first control plane, every node's machine API awaited."""
    if not opts.wait and not opts.apply:
        progress("bootstrap: skipped with --no-wait (the nodes must be up first)")
    elif (opts.inject or opts.apply) and not run.record.node_command_stand_in:
        from libtalos import talosconfig as tc
        from talos_cluster.bootstrap import bootstrap as start_etcd

        context = tc.load(opts.talosconfig).context
        run.etcd = start_etcd(run.record, opts.talosconfig, context, opts.timeout)


def report(opts: CreateOptions, run: CreateRun) -> None:
    """How long it took and how to reach the nodes on stderr; the status table on stdout."""
    from talos_cluster.status import table

    p = opts.plan
    progress(f"cluster {p.name} created in {time.monotonic() - run.started:.1f}s")
    if p.isolated:
        progress(f"the nodes are reachable inside its network namespace: ip netns exec {p.netns} …")
    else:
        progress(f"the nodes are reachable from here: talosctl --nodes {p.nodes[0].ip} version")
    sys.stdout.write(table(run.record, run.etcd))


def _wait(run: CreateRun, timeout: float, *, stand_in: bool, inject: bool) -> None:
    from talos_cluster.status import node_state

    record: ClusterRecord = run.record
    goal = "running" if inject or stand_in else "maintenance"
    progress(f"waiting for {len(record.nodes)} node(s) to be {goal} (up to {timeout:g}s)")
    deadline = time.monotonic() + timeout
    pending = {n.name for n in record.nodes}
    while pending:
        run.interrupts.check()
        for n in record.nodes:
            if n.name not in pending:
                continue
            st = node_state(n, stand_in=stand_in)
            if st == "exited":
                raise TalosError(f"node {n.name} exited while starting (its console is above)")
            if st == goal:
                pending.discard(n.name)
                progress(f"  {n.name}: {goal}")
        if pending and time.monotonic() > deadline:
            raise TalosError(f"nodes not {goal} after {timeout:g}s: {', '.join(sorted(pending))}")
        if pending:
            time.sleep(WAIT_POLL)
