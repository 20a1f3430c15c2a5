"""``talos-gen config NAME ENDPOINT``: the files of Talos's "Configure Talos" step.

Writes ``init.yaml``, ``controlplane.yaml``, ``join.yaml`` and ``talosconfig`` into
``--output-dir`` (or all four as one YAML stream on stdout with ``-o -``). Every file is 0600:
each holds a token or a CA key. No file is written unless all can be: existing outputs are
checked first and refused without ``--force``, and each file is written atomically.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from talos_gen._flagdocs import FLAG_DOCS
from talos_gen.app import app

MACHINE_TYPES = ("init", "controlplane", "join")


@dataclass
class Output:
    name: str
    text: str


def _split_list(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def _mirrors(values: list[str] | None) -> dict[str, list[str]]:
    from libtalos.errors import UsageError

    mirrors: dict[str, list[str]] = {}
    for value in values or []:
        host, sep, url = value.partition("=")
        if not sep or not host or not url:
            raise UsageError(
                f"--registry-mirror {value!r}: expected host=url",
                hint="e.g. --registry-mirror docker.io=http://172.20.0.1:5000",
            )
        mirrors.setdefault(host, []).append(url)
    return mirrors


def build(
    name: str,
    endpoint: str,
    *,
    secrets_text: tuple[str, str] | None = None,
    install_disk: str = "/dev/sda",
    install_image: str | None = None,
    additional_sans: list[str] | None = None,
    dns_domain: str = "cluster.local",
    kubernetes_version: str | None = None,
    registry_mirrors: dict[str, list[str]] | None = None,
    persist: bool = True,
    talos_version: str = "",
    patches: list[str] | None = None,
    patches_control_plane: list[str] | None = None,
    patches_worker: list[str] | None = None,
    with_comments: bool = True,
) -> list[Output]:
    """Generate every output in memory (nothing is written here)."""
    from libtalos import config as cfgmod
    from libtalos import pki, talosconfig
    from libtalos.config.validate import endpoint_problem
    from libtalos.errors import UsageError
    from libtalos.patch import patch_config, read_patch
    from libtalos.secrets import load_bundle

    problem = endpoint_problem(endpoint)
    if problem is not None:
        raise UsageError(f"endpoint {endpoint!r}: {problem}", hint="try: https://host:6443")

    if secrets_text is not None:
        bundle = load_bundle(*secrets_text)
    else:
        bundle = pki.generate_secrets(contract="v0.8" if talos_version == "v0.8" else "")
    inp = cfgmod.GenerateInput(
        cluster_name=name,
        endpoint=endpoint,
        kubernetes_version=kubernetes_version or None,
        install_disk=install_disk,
        additional_sans=list(additional_sans or []),
        dns_domain=dns_domain,
        registry_mirrors=dict(registry_mirrors or {}),
        persist=persist,
        talos_version=talos_version,
        **({"install_image": install_image} if install_image else {}),
    )
    configs = cfgmod.generate(inp, bundle)

    common = [read_patch(p) for p in patches or []]
    cp_only = [read_patch(p) for p in patches_control_plane or []]
    worker_only = [read_patch(p) for p in patches_worker or []]
    outputs: list[Output] = []
    for kind in MACHINE_TYPES:
        own = worker_only if kind == "join" else cp_only
        cfg = patch_config(configs[kind], common + own, f"{kind}.yaml")
        outputs.append(Output(f"{kind}.yaml", cfgmod.encode(cfg, comments=with_comments)))

    admin = pki.admin_client_cert(bundle.talos_ca)
    client = talosconfig.for_cluster(name, ["127.0.0.1"], bundle.talos_ca.crt, admin.crt, admin.key)
    outputs.append(Output("talosconfig", client.to_yaml()))
    return outputs


def write(outputs: list[Output], output_dir: str, *, force: bool) -> None:
    """Write every output or none: a full disk or an existing file changes nothing."""
    from libtalos import yamlio
    from libtalos.errors import TalosIOError
    from libtalos.fsutil import SECRET_MODE, atomic_write_many

    if output_dir == "-":
        sys.stdout.write(yamlio.join_documents([o.text for o in outputs]))
        sys.stdout.flush()
        return
    directory = Path(output_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TalosIOError(f"{directory}: cannot create directory: {exc.strerror}") from None
    files = [(directory / o.name, o.text, SECRET_MODE) for o in outputs]
    for path in atomic_write_many(files, force=force):
        sys.stderr.write(f"created {path}\n")


@app.command("config")
def config_command(
    name: str = typer.Argument(..., help="The cluster name."),
    endpoint: str = typer.Argument(
        ..., help="The cluster endpoint, an https URL such as https://10.5.0.2:6443."
    ),
    output_dir: str = typer.Option(
        ".",
        "--output-dir",
        "-o",
        help="Directory to write to; '-' writes one stream to stdout.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    with_secrets: str | None = typer.Option(
        None, "--with-secrets", help="A secrets bundle (from 'talos-pki secrets'); '-' for stdin."
    ),
    install_disk: str = typer.Option(
        "/dev/sda", "--install-disk", help=FLAG_DOCS["machine.install.disk"]
    ),
    install_image: str | None = typer.Option(
        None,
        "--install-image",
        help=FLAG_DOCS["machine.install.image"] + " Default: Talos's for this release.",
    ),
    additional_sans: list[str] | None = typer.Option(
        None,
        "--additional-sans",
        help=FLAG_DOCS["cluster.apiServer.certSANs"] + " Repeatable, or comma-separated.",
    ),
    dns_domain: str = typer.Option(
        "cluster.local", "--dns-domain", help=FLAG_DOCS["cluster.network.dnsDomain"]
    ),
    kubernetes_version: str | None = typer.Option(
        None, "--kubernetes-version", help="Pin the Kubernetes images to this version."
    ),
    registry_mirror: list[str] | None = typer.Option(
        None,
        "--registry-mirror",
        help=FLAG_DOCS["machine.registries.mirrors"] + " As host=url; repeatable.",
    ),
    persist: bool = typer.Option(True, "--persist/--no-persist", "-p", help=FLAG_DOCS["persist"]),
    talos_version: str = typer.Option(
        "", "--talos-version", help="The Talos contract to generate for (v0.8 or v0.9)."
    ),
    config_version: str = typer.Option(
        "v1alpha1", "--version", help="The config version to generate (only v1alpha1)."
    ),
    config_patch: list[str] | None = typer.Option(
        None,
        "--config-patch",
        help="A patch for every config: RFC 6902 list or YAML mapping; @FILE reads a file.",
    ),
    config_patch_control_plane: list[str] | None = typer.Option(
        None, "--config-patch-control-plane", help="A patch for init and controlplane configs."
    ),
    config_patch_worker: list[str] | None = typer.Option(
        None, "--config-patch-worker", help="A patch for the worker (join) config."
    ),
    with_docs: bool = typer.Option(
        True, "--with-docs/--without-docs", help="Document every key with comments and examples."
    ),
) -> None:
    """Generate init, controlplane and join configs plus a talosconfig."""
    from libtalos.errors import UsageError
    from libtalos.fsutil import read_input

    if config_version != "v1alpha1":
        raise UsageError(f"--version {config_version!r}: only v1alpha1 is supported")
    secrets_text = read_input(with_secrets) if with_secrets else None
    outputs = build(
        name,
        endpoint,
        secrets_text=secrets_text,
        install_disk=install_disk,
        install_image=install_image,
        additional_sans=_split_list(additional_sans),
        dns_domain=dns_domain,
        kubernetes_version=kubernetes_version,
        registry_mirrors=_mirrors(registry_mirror),
        persist=persist,
        talos_version=talos_version,
        patches=config_patch,
        patches_control_plane=config_patch_control_plane,
        patches_worker=config_patch_worker,
        with_comments=with_docs,
    )
    write(outputs, output_dir, force=force)
