"""``talos-pki verify``: does a certificate chain to a CA?"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from libtalos.fsutil import read_input
from talos_pki.common import find_certificates, load_one_certificate


def verify(
    cert: Annotated[
        str, typer.Argument(help="The certificate (leaf first, then intermediates); '-' stdin.")
    ],
    ca: Annotated[
        str, typer.Option("--ca", help="The CA: PEM, base64 of PEM, or {crt, key} YAML.")
    ],
) -> None:
    """Check signatures, issuer and validity up to the CA; print 'CERT: OK' or exit 1."""
    from libtalos import pki

    if ca == "-" and cert == "-":
        from libtalos.errors import UsageError

        raise UsageError("only one of --ca and CERT can be '-' (stdin)")
    ca_text, ca_source = read_input(ca)
    ca_pems = [found.crt for found in find_certificates(ca_text, ca_source)]
    cert_text, cert_source = read_input(cert)
    pki.verify_chain(
        b"".join(ca_pems),
        load_one_certificate(cert_text, cert_source),
        ca_what=ca_source,
        cert_what=cert_source,
    )
    sys.stdout.write(f"{cert_source}: OK\n")
