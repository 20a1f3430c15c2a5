"""``talos-pki issue``: a leaf certificate signed by a CA given in Talos's YAML shape."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from libtalos.errors import UsageError
from libtalos.fsutil import read_input
from talos_pki.common import (
    check_output,
    check_subject,
    dns_names,
    emit,
    load_cert_key,
    parse_duration,
    start_clock,
)
from talos_pki.options import Algorithm, Force, Kind, Output


def issue(
    ca: Annotated[
        str,
        typer.Option(
            "--ca", help="CA file ('-' for stdin): {crt, key} YAML, PEM, or a secrets bundle."
        ),
    ],
    kind: Annotated[
        Kind, typer.Option(help="server: ServerAuth; client: ClientAuth; peer: both.")
    ] = Kind.peer,
    cn: Annotated[str, typer.Option("--cn", help="Subject CN.")] = "",
    org: Annotated[list[str] | None, typer.Option("--org", help="Subject O (repeatable).")] = None,
    dns: Annotated[list[str] | None, typer.Option("--dns", help="DNS SAN (repeatable).")] = None,
    ip: Annotated[list[str] | None, typer.Option("--ip", help="IP SAN (repeatable).")] = None,
    ttl: Annotated[str, typer.Option(help="Validity, e.g. 8760h, 30d, 1y.")] = "8760h",
    key_algorithm: Annotated[
        Algorithm | None, typer.Option(help="Key type of the new key (default: the CA's).")
    ] = None,
    bundle_ca: Annotated[
        str,
        typer.Option(
            help="When --ca is a secrets bundle: which CA (os, k8s, etcd, k8saggregator)."
        ),
    ] = "",
    output: Output = "-",
    force: Force = False,
) -> None:
    """Issue a leaf certificate and key, printed as {crt, key} (base64 of PEM)."""
    from libtalos import pki

    for value in ip or []:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise UsageError(f"--ip: {value!r} is not an IP address") from None
    check_subject("--cn", [cn] if cn else [])
    check_subject("--org", org or [])
    names = dns_names(dns or [])
    clock = start_clock()  # the --ttl bound and the certificate share one "now"
    lifetime = parse_duration(ttl, "--ttl", now=clock.now())
    check_output(output, force)
    text, source = read_input(ca)
    pair = load_cert_key(text, source, bundle_entry=bundle_ca)
    leaf = pki.issue(
        pki.LoadedCA.load(pair, f"CA ({source})"),
        kind=kind.value,
        common_name=cn,
        organizations=org or [],
        dns_names=names,
        ip_addresses=ip or [],
        ttl=lifetime,
        clock=clock,
        key_algorithm=key_algorithm.value if key_algorithm else None,
    )
    emit(leaf.to_yaml(), output, force=force, secret=True)
