"""``talos-cluster create`` (``talosctl cluster create``): a local cluster in namespaces.

Steps, each announced on stderr: secrets and configs; the cluster's private network namespace
with its bridge; per node a network namespace, a veth pair, STATE/EPHEMERAL directories, cgroup
limits, and talos-init as PID 1 of new PID/mount/UTS namespaces with its config injected
(``--config``), or none (``--skip-injecting-config``: the node waits in maintenance mode); the
talosconfig context merged; the admin kubeconfig written; the nodes awaited (``--wait``); a
status table on stdout. Every resource is recorded in the cluster's state file before it is
made, so ``destroy`` removes exactly what was made, also when create is interrupted.
"""

from __future__ import annotations

import importlib.util
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from libtalos.errors import TalosError, UsageError
from talos_cluster import plan as planmod
from talos_cluster.state import ClusterRecord, NodeRecord

WAIT_POLL = 0.1


class _Interrupts:
    """Ctrl-C during create, made certain to stop it.

    Python turns SIGINT into KeyboardInterrupt wherever the main thread is, and some places
    swallow it with "Exception ignored": fork callbacks (the logging module has one, and netns
    creation forks), finalizers. So the handler also keeps a flag, checked between steps and in
    every wait loop, and an interrupt swallowed once is raised again at the next check.
    """

    def __init__(self) -> None:
        self.seen = False

    def handler(self, signum: int, frame: object) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.seen:
            raise KeyboardInterrupt

    def install(self) -> Any:
        """Our handler when SIGINT has Python's default one (an ignored SIGINT stays ignored)."""
        self.seen = False
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, self.handler)
        return previous


INTERRUPTS = _Interrupts()


def progress(message: str) -> None:
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def create(
    name: Annotated[str, typer.Option(help="the cluster's name")] = planmod.DEFAULT_NAME,
    masters: Annotated[
        int, typer.Option("--masters", "--controlplanes", help="control-plane nodes")
    ] = 1,
    workers: Annotated[int, typer.Option(help="worker nodes")] = 1,
    cidr: Annotated[str, typer.Option(help="the cluster's network")] = planmod.DEFAULT_CIDR,
    wait: Annotated[bool, typer.Option(help="wait until every node is up")] = True,
    wait_timeout: Annotated[
        str, typer.Option(help="bound on --wait (Go duration or seconds)")
    ] = "20m",
    kubernetes_version: Annotated[
        str | None, typer.Option(help="Kubernetes version of the control-plane images")
    ] = None,
    skip_injecting_config: Annotated[
        bool,
        typer.Option(
            "--skip-injecting-config", help="start the nodes without a config (maintenance mode)"
        ),
    ] = False,
    with_apply_config: Annotated[
        bool,
        typer.Option("--with-apply-config", help="deliver configs with apply-config over the API"),
    ] = False,
    skip_kubeconfig: Annotated[
        bool,
        typer.Option(
            "--skip-kubeconfig",
            help="do not merge the admin kubeconfig into $KUBECONFIG or ~/.kube/config",
        ),
    ] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="where clusters keep their state (default ~/.talos/clusters)"),
    ] = None,
    talosconfig: Annotated[
        str | None,
        typer.Option(
            help="talosconfig to merge the context into (default $TALOSCONFIG, ~/.talos/config)"
        ),
    ] = None,
    cpus: Annotated[float, typer.Option(help="CPUs per control-plane node")] = 2.0,
    cpus_workers: Annotated[float, typer.Option(help="CPUs per worker node")] = 1.0,
    memory: Annotated[int, typer.Option(help="memory per control-plane node, MiB")] = 2048,
    memory_workers: Annotated[int, typer.Option(help="memory per worker node, MiB")] = 1024,
    config_patch: Annotated[
        list[str] | None,
        typer.Option(help="patch for every config: RFC 6902 list or YAML mapping; @FILE reads one"),
    ] = None,
    config_patch_control_plane: Annotated[
        list[str] | None, typer.Option(help="patch for the control-plane config")
    ] = None,
    config_patch_worker: Annotated[
        list[str] | None, typer.Option(help="patch for the worker config")
    ] = None,
    node_command: Annotated[
        str | None,
        typer.Option(
            hidden=True,
            help="stand-in PID 1 (tests of the launcher); up once it prints a line 'ready'",
        ),
    ] = None,
) -> int:
    """Create a local cluster of talos-init nodes in private network namespaces."""
    p = planmod.make_plan(
        name=name,
        cidr=cidr,
        masters=masters,
        workers=workers,
        cpus=cpus,
        memory_mib=memory,
        cpus_workers=cpus_workers,
        memory_workers_mib=memory_workers,
    )
    timeout = planmod.parse_duration(wait_timeout, "--wait-timeout")
    from libtalos.patch import read_patch

    # parsed before anything is created: a bad patch fails the command with nothing to undo
    common = [read_patch(x) for x in config_patch or []]
    patches = {
        "controlplane": common + [read_patch(x) for x in config_patch_control_plane or []],
        "join": common + [read_patch(x) for x in config_patch_worker or []],
    }
    if skip_injecting_config and with_apply_config:
        raise UsageError("--skip-injecting-config and --with-apply-config exclude each other")
    stand_in = shlex.split(node_command) if node_command else None
    if node_command is not None and not stand_in:
        raise UsageError("--node-command: empty")
    if with_apply_config and importlib.util.find_spec("talos_apply") is None:
        raise TalosError(
            "--with-apply-config needs talos-apply (the machine API client), which is not "
            "installed",
            hint="leave the flag out: configs are then injected with --config",
        )
    kube_path = None
    if not skip_kubeconfig and not skip_injecting_config and stand_in is None:
        from talos_cluster import userkube

        kube_path = userkube.default_path()
        userkube.check(kube_path)  # a file the merge would fail on stops create up front
    return run_create(
        p,
        state_root=state_dir or _default_state_dir(),
        wait=wait,
        timeout=timeout,
        kubernetes_version=kubernetes_version,
        inject=not skip_injecting_config and not with_apply_config,
        apply=with_apply_config,
        kubeconfig=not skip_kubeconfig,
        talosconfig=talosconfig,
        stand_in=stand_in,
        patches=patches,
        kube_path=kube_path,
    )


def _default_state_dir() -> Path:
    from talos_cluster.state import default_state_dir

    return default_state_dir()


def run_create(
    p: planmod.ClusterPlan,
    *,
    state_root: Path,
    wait: bool,
    timeout: float,
    kubernetes_version: str | None,
    inject: bool,
    kubeconfig: bool,
    talosconfig: str | None,
    stand_in: list[str] | None,
    apply: bool = False,
    patches: dict[str, list[tuple[Any, str]]] | None = None,
    kube_path: Path | None = None,
) -> int:
    """``kube_path``: the user's kubeconfig, merged once etcd is up (None: not merged)."""
    from talos_cluster import netlab, nodes, state

    cdir = planmod.cluster_dir(state_root.absolute(), p.name)
    if state.load(cdir) is not None:
        raise TalosError(
            f"cluster {p.name} exists (state in {cdir})",
            hint=f"talos-cluster destroy --name {p.name}",
        )
    taken = [ns for ns in [p.netns, *(n.name for n in p.nodes)] if netlab.netns_exists(ns)]
    if taken:
        raise TalosError(
            f"network namespace {taken[0]} exists and is not this cluster's",
            hint="pick another --name, or remove it with 'ip netns delete'",
        )
    command = stand_in if stand_in is not None else nodes.talos_init_command()
    started = time.monotonic()
    try:
        cdir.mkdir(mode=0o700, parents=True, exist_ok=False)
    except FileExistsError:
        raise TalosError(
            f"{cdir} exists without a cluster record",
            hint="remove it, or pick another --name or --state-dir",
        ) from None
    except OSError as exc:
        raise TalosError(f"{cdir}: cannot create: {exc.strerror}") from None
    record = ClusterRecord(
        name=p.name,
        cidr=p.cidr,
        dir=str(cdir),
        netns=p.netns,
        endpoint=p.endpoint,
        node_command_stand_in=stand_in is not None,
    )
    record.save()
    previous = INTERRUPTS.install()
    try:
        configs = _build(
            p, record, cdir, command, inject, kubernetes_version, kubeconfig, talosconfig, patches
        )
        if wait or apply:
            _wait(record, timeout, stand_in is not None, inject)
        if apply:
            from talos_cluster.bootstrap import apply_configs

            apply_configs(record, configs, timeout)
            if wait:
                _wait(record, timeout, False, True)
    except KeyboardInterrupt:
        progress(
            f"interrupted: what was made is recorded in {record.path()}; "
            f"remove it with: talos-cluster destroy --name {p.name}"
        )
        raise
    except TalosError:
        progress("create failed: removing what was made")
        from talos_cluster.cmd_destroy import destroy_record

        try:
            destroy_record(record)
        except TalosError as exc:
            progress(f"cleanup incomplete: {exc.message}")
        raise
    finally:
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)
    etcd: dict[str, str] = {}
    if not wait and not apply:
        progress("bootstrap: skipped with --no-wait (the nodes must be up first)")
    elif (inject or apply) and not record.node_command_stand_in:
        from libtalos import talosconfig as tc
        from talos_cluster.bootstrap import bootstrap

        path = tc.default_path(talosconfig)
        etcd = bootstrap(record, path, tc.load(path).context, timeout)
    if etcd and kubeconfig and kube_path is not None:
        _merge_kubeconfig(cdir / "kubeconfig", kube_path)
    from talos_cluster.status import table

    progress(f"cluster {p.name} created in {time.monotonic() - started:.1f}s")
    progress(f"the nodes are reachable inside its network namespace: ip netns exec {p.netns} ...")
    sys.stdout.write(table(record, etcd))
    return 0


def _build(
    p: planmod.ClusterPlan,
    record: ClusterRecord,
    cdir: Path,
    command: list[str],
    inject: bool,
    kubernetes_version: str | None,
    kubeconfig: bool,
    talosconfig: str | None,
    patches: dict[str, list[tuple[Any, str]]] | None = None,
) -> dict[str, Path]:
    from talos_cluster import cgroups, netlab, nodes

    configs = _configs(p, cdir, kubernetes_version, kubeconfig, talosconfig, patches or {})
    progress(
        f"creating network namespace {p.netns}: bridge {planmod.BRIDGE} {p.gateway}/{p.prefixlen}"
    )
    record.namespaces.append(p.netns)
    record.save()
    netlab.create_cluster_netns(p)
    for node in p.nodes:
        ndir = cdir / node.name
        rec = NodeRecord(
            name=node.name,
            role=node.role,
            ip=node.ip,
            netns=node.name,
            dir=str(ndir),
            console=str(ndir / "console.log"),
        )
        record.nodes.append(rec)
        record.namespaces.append(node.name)
        record.save()
        INTERRUPTS.check()
        progress(f"creating node {node.name} ({node.role}, {node.ip}/{node.prefixlen})")
        netlab.create_node_netns(p, node)
        for sub in ("state", "ephemeral"):
            (ndir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        limits = cgroups.setup(p.name, node.name, node.cpus, node.memory_mib, record.cgroup_roots)
        rec.cgroups = limits.groups
        rec.limits = limits.summary
        record.save()
        progress(f"  --cpus/--memory: {limits.summary}")
        argv = list(command)
        if not record.node_command_stand_in:
            argv += ["--mode", "container", "--state-dir", str(ndir)]
            argv += ["--cmdline", f"talos.hostname={node.name}"]
            if inject:
                argv += ["--config", str(configs[node.machine_type])]
        pid, start = nodes.launch(
            netns=node.name, node_command=argv, console=Path(rec.console), cgroup_procs=limits.procs
        )
        rec.pid, rec.start_time = pid, start
        record.save()
    INTERRUPTS.check()
    record.complete = True
    record.save()
    return configs


def _configs(
    p: planmod.ClusterPlan,
    cdir: Path,
    kubernetes_version: str | None,
    kubeconfig: bool,
    talosconfig: str | None,
    patches: dict[str, list[tuple[Any, str]]],
) -> dict[str, Path]:
    """Secrets, the controlplane and worker configs, the talosconfig context, the kubeconfig."""
    from libtalos import pki
    from libtalos import talosconfig as tc
    from libtalos.config import GenerateInput, encode, generate
    from libtalos.fsutil import SECRET_MODE, atomic_write_many
    from libtalos.k8s import admin_kubeconfig
    from libtalos.patch import patch_config

    progress(f"generating secrets and configs (endpoint {p.endpoint})")
    bundle = pki.generate_secrets()
    made = generate(
        GenerateInput(
            cluster_name=p.name, endpoint=p.endpoint, kubernetes_version=kubernetes_version
        ),
        bundle,
    )
    for kind in ("controlplane", "join"):
        made[kind] = patch_config(made[kind], patches.get(kind, []), f"{kind}.yaml")
    paths = {"controlplane": cdir / "controlplane.yaml", "worker": cdir / "join.yaml"}
    files: list[tuple[str | Path, bytes | str, int]] = [
        (cdir / "secrets.yaml", bundle.to_yaml(), SECRET_MODE),
        (paths["controlplane"], encode(made["controlplane"]), SECRET_MODE),
        (paths["worker"], encode(made["join"]), SECRET_MODE),
    ]
    if kubeconfig:
        files.append((cdir / "kubeconfig", admin_kubeconfig(made["controlplane"]), SECRET_MODE))
    atomic_write_many(files)
    admin = pki.admin_client_cert(bundle.talos_ca)
    cps = [n.ip for n in p.controlplanes]
    ctx_cfg = tc.for_cluster(p.name, cps, bundle.talos_ca.crt, admin.crt, admin.key)
    ctx_cfg.contexts[p.name].nodes = [cps[0]]
    path = tc.default_path(talosconfig)
    merged = tc.load(path)
    for message in merged.merge(ctx_cfg):
        progress(message)
    tc.save(merged, path)
    progress(f"merged talosconfig context {merged.context} into {path}")
    if kubeconfig:
        progress(f"wrote the admin kubeconfig to {cdir / 'kubeconfig'}")
    return paths


def _merge_kubeconfig(admin: Path, target: Path) -> None:
    """Merge the cluster's admin kubeconfig into the user's, as talosctl's create does."""
    from talos_cluster import userkube

    try:
        current, notes = userkube.merge(target, admin.read_bytes())
    except (TalosError, OSError) as exc:
        reason = exc.message if isinstance(exc, TalosError) else str(exc.strerror)
        raise TalosError(
            f"the cluster is up, but merging its kubeconfig into {target} failed: {reason}",
            hint=f"the admin kubeconfig is in {admin}",
        ) from None
    for note in notes:
        progress(f"  {note}")
    progress(f"merged kubeconfig context {current} into {target}")


def _wait(record: ClusterRecord, timeout: float, stand_in: bool, inject: bool) -> None:
    from talos_cluster.status import node_state

    goal = "running" if inject or stand_in else "maintenance"
    progress(f"waiting for {len(record.nodes)} node(s) to be {goal} (up to {timeout:g}s)")
    deadline = time.monotonic() + timeout
    pending = {n.name for n in record.nodes}
    while pending:
        INTERRUPTS.check()
        for n in record.nodes:
            if n.name not in pending:
                continue
            st = node_state(n, stand_in=stand_in)
            if st == "exited":
                raise TalosError(f"node {n.name} exited while starting; see {n.console}")
            if st == goal:
                pending.discard(n.name)
                progress(f"  {n.name}: {goal}")
        if pending and time.monotonic() > deadline:
            raise TalosError(
                f"nodes not {goal} after {timeout:g}s: {', '.join(sorted(pending))}",
                hint="see each node's console.log in the cluster's state directory",
            )
        if pending:
            time.sleep(WAIT_POLL)
