"""``talos-cluster create`` (``talosctl cluster create``): a local cluster in namespaces.

Steps, each announced on stderr: secrets and configs; the cluster's bridge (in this network
namespace, or with ``--isolated`` in a private one of its own); per node a network namespace, a
veth pair to the bridge, STATE/EPHEMERAL directories, cgroup
limits, and talos-init as PID 1 of new PID/mount/UTS namespaces with its config injected
(``--config``), or none (``--skip-injecting-config``: the node waits in maintenance mode); the
talosconfig context merged; the admin kubeconfig written; the nodes awaited (``--wait``); a
status table on stdout. Every resource is recorded in the cluster's state file before it is
made, so ``destroy`` removes exactly what was made, also when create is interrupted.

Every flag is checked, and the secrets and configs generated (patches applied), before anything
is made: a bad value is a usage error (exit 2) naming the flag, with nothing to undo; so is a
``--cidr`` that overlaps an address or route of this namespace or another cluster of the state
directory (the clash is named). A failure
once creation has started (a node that exits, a wait that times out, a failed bootstrap, an
unexpected error) removes what was made: the nodes, namespaces, cgroups, the state directory
and the directories create made above it, and the talosconfig as it was before the merge. Only
Ctrl-C keeps what was made, recorded for ``destroy``; a kubeconfig that cannot be merged once
the cluster is up leaves the cluster up.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from libtalos.errors import TalosError, UsageError
from talos_cluster import plan as planmod
from talos_cluster.state import ClusterRecord, NodeRecord

if TYPE_CHECKING:
    from libtalos.talosconfig import TalosConfig

WAIT_POLL = 0.1
CONSOLE_TAIL = 8  # lines of each node's console shown when a failed create is rolled back
# an image tag (what the version becomes: registry/component:vX.Y.Z)
_KUBERNETES_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z][0-9A-Za-z.-]*)?$")


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
    isolated: Annotated[
        bool,
        typer.Option(
            "--isolated",
            help="put the bridge in a private network namespace named after the cluster "
            "(reach the nodes with 'ip netns exec NAME'), not in this one",
        ),
    ] = False,
    node_command: Annotated[
        str | None,
        typer.Option(
            hidden=True,
            help="stand-in PID 1 (tests of the launcher); up once it prints a line 'ready'",
        ),
    ] = None,
) -> int:
    """Create a local cluster of talos-init nodes, each in its own namespaces, on a bridge in
    this network namespace (``--isolated``: in a private one)."""
    # 1. the command line itself (exit 2 on a bad value, nothing read or made yet)
    p = planmod.make_plan(
        name=name,
        cidr=cidr,
        masters=masters,
        workers=workers,
        cpus=cpus,
        memory_mib=memory,
        cpus_workers=cpus_workers,
        memory_workers_mib=memory_workers,
        layout="isolated" if isolated else "shared",
    )
    timeout = planmod.parse_duration(wait_timeout, "--wait-timeout")
    check_kubernetes_version(kubernetes_version)
    if skip_injecting_config and with_apply_config:
        raise UsageError("--skip-injecting-config and --with-apply-config exclude each other")
    stand_in = node_command_argv(node_command)
    state_root = (state_dir or _default_state_dir()).absolute()
    check_path(state_root, "--state-dir", directory=True)
    from libtalos import talosconfig as tc

    tc_path = tc.default_path(talosconfig)
    check_path(tc_path, "--talosconfig" if talosconfig else str(tc_path), directory=False)
    # 2. what the flags name (exit 1 on a file that cannot be used), still nothing made
    from libtalos.patch import read_patch

    common = [read_patch(x) for x in config_patch or []]
    patches = {
        "controlplane": common + [read_patch(x) for x in config_patch_control_plane or []],
        "join": common + [read_patch(x) for x in config_patch_worker or []],
    }
    if with_apply_config and importlib.util.find_spec("talos_apply") is None:
        raise TalosError(
            "--with-apply-config needs talos-apply (the machine API client), which is not "
            "installed",
            hint="leave the flag out: configs are then injected with --config",
        )
    tc.load(tc_path)  # a talosconfig the merge would fail on stops create up front
    kube_path = None
    if not skip_kubeconfig and not skip_injecting_config and stand_in is None:
        from talos_cluster import userkube

        kube_path = userkube.default_path()
        userkube.check(kube_path)  # a file the merge would fail on stops create up front
    return run_create(
        p,
        state_root=state_root,
        wait=wait,
        timeout=timeout,
        kubernetes_version=kubernetes_version,
        inject=not skip_injecting_config and not with_apply_config,
        apply=with_apply_config,
        kubeconfig=not skip_kubeconfig,
        talosconfig=tc_path,
        stand_in=stand_in,
        patches=patches,
        kube_path=kube_path,
    )


def check_kubernetes_version(version: str | None) -> None:
    if version is not None and not (_KUBERNETES_VERSION.match(version) and len(version) <= 64):
        raise UsageError(
            f"--kubernetes-version: {version!r} is not a Kubernetes version (e.g. 1.20.4)"
        )


def node_command_argv(command: str | None) -> list[str] | None:
    """``--node-command`` split as a shell would; its program must exist."""
    if command is None:
        return None
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"--node-command: {command!r}: {exc}") from None
    if not argv:
        raise UsageError("--node-command: empty")
    if shutil.which(argv[0]) is None:
        raise UsageError(
            f"--node-command: {argv[0]!r} is not an executable file or a command on PATH"
        )
    return argv


def check_path(path: Path, option: str, *, directory: bool) -> None:
    """``path`` is a directory (``directory``) or not one, or can be made: its nearest
    existing ancestor is a directory."""
    if path.is_symlink() or path.exists():
        if directory and not path.is_dir():
            raise UsageError(f"{option}: {path}: not a directory")
        if not directory and path.is_dir():
            raise UsageError(f"{option}: {path}: is a directory")
        return
    for parent in path.parents:
        if parent.is_symlink() or parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option}: {path}: {parent} is not a directory")
            return


def _default_state_dir() -> Path:
    from talos_cluster.state import default_state_dir

    return default_state_dir()


@dataclass
class _Generated:
    """Secrets, configs and the talosconfig context, made before anything else."""

    files: dict[str, bytes | str]  # file name in the cluster directory -> content
    context: TalosConfig  # the cluster's talosconfig context, to be merged


@dataclass
class _Undo:
    """What a failed create removes beside what its record lists."""

    dirs: list[Path] = field(default_factory=list)  # made above the cluster dir, deepest first
    talosconfig: Path | None = None  # merged into: restored from ``before`` ...
    before: bytes | None = None  # (None: it did not exist, so it is removed)
    written: bytes | None = None  # ... when it still holds what create wrote


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for d in (path, *path.parents):
        if d.exists() or d.is_symlink():
            break
        missing.append(d)
    return missing


def run_create(
    p: planmod.ClusterPlan,
    *,
    state_root: Path,
    wait: bool,
    timeout: float,
    kubernetes_version: str | None,
    inject: bool,
    kubeconfig: bool,
    talosconfig: Path,
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
    names = [*([p.netns] if p.isolated else []), *(n.name for n in p.nodes)]
    taken = [ns for ns in names if netlab.netns_exists(ns)]
    if taken:
        raise TalosError(
            f"network namespace {taken[0]} exists and is not this cluster's",
            hint="pick another --name, or remove it with 'ip netns delete'",
        )
    command = stand_in if stand_in is not None else nodes.talos_init_command()
    # patches are applied here, before anything is made: one that does not apply has nothing
    # to undo
    generated = _generate(p, kubernetes_version, kubeconfig, patches or {})
    # the network last, just before it is made: an overlapping CIDR or a taken link name
    here = netlab.current_netns()
    if not p.isolated:
        _check_other_clusters(p, state_root.absolute(), here)
        netlab.check_shared(p)
    started = time.monotonic()
    undo = _Undo(dirs=_missing_dirs(cdir.parent))
    try:
        cdir.mkdir(mode=0o700, parents=True, exist_ok=False)
    except FileExistsError:
        raise TalosError(
            f"{cdir} exists without a cluster record",
            hint="remove it, or pick another --name or --state-dir",
        ) from None
    except OSError as exc:
        _remove_dirs(undo.dirs)
        raise TalosError(f"{cdir}: cannot create: {exc.strerror}") from None
    record = ClusterRecord(
        name=p.name,
        cidr=p.cidr,
        dir=str(cdir),
        netns=p.netns,
        endpoint=p.endpoint,
        layout=p.layout,
        bridge=p.bridge,
        bridge_netns="" if p.isolated else here,
        node_command_stand_in=stand_in is not None,
    )
    previous = INTERRUPTS.install()
    etcd: dict[str, str] = {}
    try:
        record.save()
        configs = _build(p, record, cdir, command, inject, generated, talosconfig, undo)
        if wait or apply:
            _wait(record, timeout, stand_in is not None, inject)
        if apply:
            from talos_cluster.bootstrap import apply_configs

            apply_configs(record, configs, timeout)
            if wait:
                _wait(record, timeout, False, True)
        if not wait and not apply:
            progress("bootstrap: skipped with --no-wait (the nodes must be up first)")
        elif (inject or apply) and not record.node_command_stand_in:
            from libtalos import talosconfig as tc
            from talos_cluster.bootstrap import bootstrap

            etcd = bootstrap(record, talosconfig, tc.load(talosconfig).context, timeout)
    except KeyboardInterrupt:
        progress(
            f"interrupted: what was made is recorded in {record.path()}; "
            f"remove it with: talos-cluster destroy --name {p.name}"
        )
        raise
    except Exception:
        _roll_back(record, undo)
        raise
    finally:
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)
    if etcd and kubeconfig and kube_path is not None:
        _merge_kubeconfig(cdir / "kubeconfig", kube_path)
    from talos_cluster.status import table

    progress(f"cluster {p.name} created in {time.monotonic() - started:.1f}s")
    if p.isolated:
        progress(f"the nodes are reachable inside its network namespace: ip netns exec {p.netns} …")
    else:
        progress(f"the nodes are reachable from here: talosctl --nodes {p.nodes[0].ip} version")
    sys.stdout.write(table(record, etcd))
    return 0


def _roll_back(record: ClusterRecord, undo: _Undo) -> None:
    """Remove what a failed create made; the cause is reported by the caller."""
    from talos_cluster.cmd_destroy import destroy_record

    progress("create failed: removing what was made")
    _show_consoles(record)
    try:
        destroy_record(record)
    except TalosError as exc:
        progress(f"cleanup incomplete: {exc.message}")
    except Exception as exc:  # noqa: BLE001 - the failure that started the roll-back is raised
        progress(f"cleanup incomplete: internal error ({type(exc).__name__})")
    if undo.talosconfig is not None:
        _restore_talosconfig(undo.talosconfig, undo)
    _remove_dirs(undo.dirs)


def _show_consoles(record: ClusterRecord) -> None:
    """The last lines of each started node's console, before the roll-back removes them."""
    from talos_cluster.status import tail

    for n in record.nodes:
        if not n.pid:
            continue
        lines = tail(Path(n.console)).splitlines()[-CONSOLE_TAIL:]
        progress(f"  {n.name} console.log, last lines:")
        for line in lines or ["(empty)"]:
            progress(f"    {line[:300]}")


def _restore_talosconfig(path: Path, undo: _Undo) -> None:
    from libtalos.fsutil import SECRET_MODE, atomic_write

    try:
        now = path.read_bytes()
    except OSError:
        now = None
    if now != undo.written:
        progress(f"{path}: changed since create merged the context into it: left as it is")
        return
    try:
        if undo.before is None:
            path.unlink()
        else:
            atomic_write(path, undo.before, mode=SECRET_MODE)
    except (OSError, TalosError) as exc:
        reason = exc.message if isinstance(exc, TalosError) else exc.strerror
        progress(f"{path}: cannot restore it: {reason}")
        return
    progress(f"{path}: restored as it was before create")


def _remove_dirs(dirs: list[Path]) -> None:
    """rmdir each directory that is empty, deepest first."""
    for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()


def _build(
    p: planmod.ClusterPlan,
    record: ClusterRecord,
    cdir: Path,
    command: list[str],
    inject: bool,
    generated: _Generated,
    talosconfig: Path,
    undo: _Undo,
) -> dict[str, Path]:
    from talos_cluster import cgroups, netlab, nodes

    configs = _write_configs(cdir, generated, talosconfig, undo)
    if p.isolated:
        progress(
            f"creating network namespace {p.netns}: bridge {p.bridge} {p.gateway}/{p.prefixlen}"
        )
        record.namespaces.append(p.netns)
        record.save()
    else:
        progress(f"creating bridge {p.bridge} {p.gateway}/{p.prefixlen} in this network namespace")
    netlab.create_bridge(p)
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


def _check_other_clusters(p: planmod.ClusterPlan, state_root: Path, here: str) -> None:
    """Refuse a CIDR that overlaps another cluster's in this namespace (exit 2), also one whose
    bridge is not up (yet)."""
    import ipaddress

    from talos_cluster import state

    net = ipaddress.IPv4Network(p.cidr)
    try:
        others = sorted(d for d in state_root.iterdir() if d.name != p.name)
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


def _generate(
    p: planmod.ClusterPlan,
    kubernetes_version: str | None,
    kubeconfig: bool,
    patches: dict[str, list[tuple[Any, str]]],
) -> _Generated:
    """Secrets, the controlplane and worker configs, the talosconfig context, the kubeconfig."""
    from libtalos import pki
    from libtalos import talosconfig as tc
    from libtalos.config import GenerateInput, encode, generate
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
    files: dict[str, bytes | str] = {
        "secrets.yaml": bundle.to_yaml(),
        "controlplane.yaml": encode(made["controlplane"]),
        "join.yaml": encode(made["join"]),
    }
    if kubeconfig:
        files["kubeconfig"] = admin_kubeconfig(made["controlplane"])
    admin = pki.admin_client_cert(bundle.talos_ca)
    cps = [n.ip for n in p.controlplanes]
    ctx_cfg = tc.for_cluster(p.name, cps, bundle.talos_ca.crt, admin.crt, admin.key)
    ctx_cfg.contexts[p.name].nodes = [cps[0]]
    return _Generated(files=files, context=ctx_cfg)


def _write_configs(cdir: Path, generated: _Generated, path: Path, undo: _Undo) -> dict[str, Path]:
    """The generated files into the cluster dir (0600), the context merged into ``path``."""
    from libtalos import talosconfig as tc
    from libtalos.fsutil import SECRET_MODE, atomic_write_many

    atomic_write_many([(cdir / n, data, SECRET_MODE) for n, data in generated.files.items()])
    merged = tc.load(path)
    try:
        before: bytes | None = path.read_bytes()
    except FileNotFoundError:
        before = None
    for message in merged.merge(generated.context):
        progress(message)
    undo.dirs.extend(_missing_dirs(path.parent))
    undo.talosconfig, undo.before = path, before
    tc.save(merged, path)
    with contextlib.suppress(OSError):
        undo.written = path.read_bytes()
    progress(f"merged talosconfig context {merged.context} into {path}")
    if "kubeconfig" in generated.files:
        progress(f"wrote the admin kubeconfig to {cdir / 'kubeconfig'}")
    return {"controlplane": cdir / "controlplane.yaml", "worker": cdir / "join.yaml"}


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
                raise TalosError(f"node {n.name} exited while starting (its console is above)")
            if st == goal:
                pending.discard(n.name)
                progress(f"  {n.name}: {goal}")
        if pending and time.monotonic() > deadline:
            raise TalosError(f"nodes not {goal} after {timeout:g}s: {', '.join(sorted(pending))}")
        if pending:
            time.sleep(WAIT_POLL)
