"""``talos-pki ca``: a new self-signed CA as ``{crt, key}`` (base64 of PEM)."""

from __future__ import annotations

from typing import Annotated

import typer

from libtalos.errors import UsageError
from talos_pki.common import check_output, check_subject, emit, parse_duration, start_clock
from talos_pki.options import Algorithm, Force, Hash, Output


def ca(
    algorithm: Annotated[
        Algorithm, typer.Option(help="Key type: ECDSA P-256, Ed25519 or RSA-4096.")
    ] = Algorithm.ecdsa,
    organization: Annotated[list[str] | None, typer.Option(help="Subject O (repeatable).")] = None,
    common_name: Annotated[str, typer.Option(help="Subject CN.")] = "",
    ttl: Annotated[str, typer.Option(help="Validity, e.g. 87600h (10 years), 1y, 30d.")] = "87600h",
    hash_name: Annotated[
        Hash, typer.Option("--hash", help="Signature hash for ECDSA and RSA (Talos v0.9: sha512).")
    ] = Hash.sha512,
    output: Output = "-",
    force: Force = False,
) -> None:
    """Create a self-signed CA (CertSign+DigitalSignature, ServerAuth+ClientAuth)."""
    from libtalos import pki

    orgs = organization or []
    if not orgs and not common_name:
        raise UsageError("give --organization or --common-name (a CA needs a subject)")
    check_subject("--organization", orgs)
    check_subject("--common-name", [common_name] if common_name else [])
    clock = start_clock()  # the --ttl bound and the certificate share one "now"
    lifetime = parse_duration(ttl, "--ttl", now=clock.now())
    check_output(output, force)
    pair = pki.new_ca(
        algorithm=algorithm.value,
        organizations=orgs,
        common_name=common_name,
        ttl=lifetime,
        clock=clock,
        hash_name=hash_name.value,
    )
    emit(pair.to_yaml(), output, force=force, secret=True)
