"""``talos-gen config NAME ENDPOINT``: the command line of :mod:`talos_gen.configjob`."""

from __future__ import annotations

import typer

from talos_gen._flagdocs import FLAG_DOCS
from talos_gen.configjob import mirrors, split_list
from talos_gen.configjob import run as run_config


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
        help="A patch for every config: RFC 6902 list or YAML mapping; @FILE reads a file, "
        "@- stdin.",
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
    run_config(
        name,
        endpoint,
        output_dir=output_dir,
        force=force,
        with_secrets=with_secrets,
        config_version=config_version,
        install_disk=install_disk,
        install_image=install_image,
        additional_sans=split_list(additional_sans),
        dns_domain=dns_domain,
        kubernetes_version=kubernetes_version,
        registry_mirrors=mirrors(registry_mirror),
        persist=persist,
        talos_version=talos_version,
        patches=config_patch,
        patches_control_plane=config_patch_control_plane,
        patches_worker=config_patch_worker,
        with_comments=with_docs,
    )
