"""``talos-pki kubeconfig-cert``: an admin client certificate for a kubeconfig."""

from __future__ import annotations

from typing import Annotated

import typer

from libtalos.fsutil import read_input
from talos_pki.common import (
    check_output,
    check_subject,
    emit,
    load_cert_key,
    parse_duration,
    start_clock,
)
from talos_pki.options import Force, Output


def kubeconfig_cert(
    ca: Annotated[
        str,
        typer.Option(
            "--ca",
            help="The Kubernetes CA: {crt, key} YAML, PEM, or a secrets bundle (its certs.k8s).",
        ),
    ],
    cn: Annotated[str, typer.Option("--cn", help="Subject CN.")] = "admin",
    org: Annotated[
        list[str] | None,
        typer.Option("--org", help="Subject O (repeatable; default system:masters)."),
    ] = None,
    ttl: Annotated[
        str, typer.Option(help="Validity (Talos's adminKubeconfig.certLifetime default: 1y).")
    ] = "8760h",
    output: Output = "-",
    force: Force = False,
) -> None:
    """Issue a client certificate (ClientAuth, O=system:masters) from the Kubernetes CA."""
    from libtalos import pki

    check_subject("--cn", [cn])
    check_subject("--org", org or [])
    clock = start_clock()  # the --ttl bound and the certificate share one "now"
    lifetime = parse_duration(ttl, "--ttl", now=clock.now())
    check_output(output, force)
    text, source = read_input(ca)
    pair = load_cert_key(text, source, bundle_entry="k8s")
    cert = pki.kubeconfig_admin_cert(
        pki.LoadedCA.load(pair, f"Kubernetes CA ({source})"),
        common_name=cn,
        organizations=org or ["system:masters"],
        ttl=lifetime,
        clock=clock,
    )
    emit(cert.to_yaml(), output, force=force, secret=True)
