"""``talos-pki secrets``: a whole secrets bundle (the shape of ``talosctl gen secrets``)."""

from __future__ import annotations

from typing import Annotated

import typer

from libtalos.errors import PKIError, UsageError
from talos_pki.common import check_output
from talos_pki.options import Force, Output


def secrets(
    talos_version: Annotated[
        str, typer.Option(help="Contract: v0.9 (default; ECDSA CAs) or v0.8 (RSA-4096 CAs).")
    ] = "",
    output: Output = "-",
    force: Force = False,
) -> None:
    """Generate every CA, key and token of a new cluster as one YAML bundle."""
    from libtalos import fsutil, pki

    try:
        contract = pki.parse_contract(talos_version)
    except PKIError as exc:
        raise UsageError(f"--talos-version: {exc}") from None
    check_output(output, force)
    bundle = pki.generate_secrets(contract)
    fsutil.write_output(output, bundle.to_yaml(), mode=fsutil.SECRET_MODE, force=force)
