"""``talos-pki inspect``: subject, SANs, key, validity of certificates, as YAML."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from libtalos import yamlio
from libtalos.errors import PKIError
from libtalos.fsutil import read_input
from talos_pki.common import find_certificates, parse_duration


def inspect(
    file: Annotated[
        str,
        typer.Argument(
            help="PEM, base64 of PEM, or YAML holding certificates (talosconfig, bundle, "
            "{crt, key}); '-' for stdin."
        ),
    ],
    check: Annotated[
        bool, typer.Option(help="Exit 1 when a certificate expires within --within.")
    ] = False,
    within: Annotated[str, typer.Option(help="Window for --check, e.g. 30d, 720h.")] = "30d",
) -> None:
    """Describe certificates as YAML (a YAML input: one entry per certificate's key path)."""
    from libtalos import pki

    window = parse_duration(within, "--within")
    text, source = read_input(file)
    found = find_certificates(text, source)
    infos = [(label, pki.inspect(pem, what=f"{source} {label}".strip())) for label, pem in found]
    data: dict[str, Any]
    if len(infos) == 1 and not infos[0][0]:
        data = infos[0][1].to_yaml_data()
    else:
        data = {label: info.to_yaml_data() for label, info in infos}
    sys.stdout.write(yamlio.dump(data))
    if check:
        expiring = [(label, info) for label, info in infos if info.expires_within(window)]
        if expiring:
            names = ", ".join(
                f"{(source + ' ' + label).strip()} (notAfter {info.to_yaml_data()['notAfter']})"
                for label, info in expiring
            )
            raise PKIError(f"expires within {within}: {names}")
