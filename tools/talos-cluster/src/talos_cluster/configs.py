"""``create``'s configuration steps: secrets and machine configs generated (patches applied),
the cluster's context merged into the talosconfig, the configs written into the cluster
directory and, once etcd is up, its admin kubeconfig merged into the user's."""

from __future__ import annotations

import contextlib

from libtalos.errors import TalosError
from talos_cluster.options import CreateOptions
from talos_cluster.rollback import missing_dirs
from talos_cluster.runstate import CreateRun, Generated, progress


def generate_configs(opts: CreateOptions, run: CreateRun) -> None:
    """Secrets, the controlplane and worker configs, the talosconfig context, the kubeconfig.

    Patches are applied here, before anything is made: one that does not apply has nothing to
    undo."""
    from libtalos import pki
    from libtalos import talosconfig as tc
    from libtalos.config import GenerateInput, encode, generate
    from libtalos.k8s import admin_kubeconfig
    from libtalos.patch import patch_config

    p = opts.plan
    progress(f"generating secrets and configs (endpoint {p.endpoint})")
    bundle = pki.generate_secrets()
    made = generate(
        GenerateInput(
            cluster_name=p.name, endpoint=p.endpoint, kubernetes_version=opts.kubernetes_version
        ),
        bundle,
    )
    patches = {"controlplane": opts.controlplane_patches, "join": opts.join_patches}
    for kind in ("controlplane", "join"):
        made[kind] = patch_config(made[kind], list(patches[kind]), f"{kind}.yaml")
    files: dict[str, bytes | str] = {
        "secrets.yaml": bundle.to_yaml(),
        "controlplane.yaml": encode(made["controlplane"]),
        "join.yaml": encode(made["join"]),
    }
    if opts.kubeconfig:
        files["kubeconfig"] = admin_kubeconfig(made["controlplane"])
    admin = pki.admin_client_cert(bundle.talos_ca)
    cps = [n.ip for n in p.controlplanes]
    ctx_cfg = tc.for_cluster(p.name, cps, bundle.talos_ca.crt, admin.crt, admin.key)
    ctx_cfg.contexts[p.name].nodes = [cps[0]]
    run.generated = Generated(files=files, context=ctx_cfg)


def write_configs(opts: CreateOptions, run: CreateRun) -> None:
    """The generated files into the cluster directory, 0600 (they hold keys)."""
    from libtalos.fsutil import SECRET_MODE, atomic_write_many

    cdir = opts.cluster_dir
    atomic_write_many([(cdir / n, data, SECRET_MODE) for n, data in run.made.files.items()])
    if "kubeconfig" in run.made.files:
        progress(f"wrote the admin kubeconfig to {cdir / 'kubeconfig'}")
    run.configs = {"controlplane": cdir / "controlplane.yaml", "worker": cdir / "join.yaml"}


def merge_talosconfig(opts: CreateOptions, run: CreateRun) -> None:
    """The cluster's context merged into the talosconfig; what the roll-back needs to restore
    it (and the directories made for it) recorded first."""
    from libtalos import talosconfig as tc

    path, undo = opts.talosconfig, run.undo
    merged = tc.load(path)
    try:
        before: bytes | None = path.read_bytes()
    except FileNotFoundError:
        before = None
    for message in merged.merge(run.made.context):
        progress(message)
    undo.dirs.extend(missing_dirs(path.parent))
    undo.talosconfig, undo.before = path, before
    tc.save(merged, path)
    with contextlib.suppress(OSError):
        undo.written = path.read_bytes()
    progress(f"merged talosconfig context {merged.context} into {path}")


def merge_kubeconfig(opts: CreateOptions, run: CreateRun) -> None:
    """Merge the cluster's admin kubeconfig into the user's, as talosctl's create does, once
    etcd is up; a failure leaves the cluster up."""
    if not (run.etcd and opts.kubeconfig and opts.kube_path is not None):
        return
    from talos_cluster import userkube

    admin, target = opts.cluster_dir / "kubeconfig", opts.kube_path
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
