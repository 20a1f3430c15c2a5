"""``talos-pki secrets``: a whole secrets bundle (the shape of ``talosctl gen secrets``)."""

from __future__ import annotations

from typing import Annotated

import typer

from talos_pki.options import Force, Output
from talos_pki.outputs import write_secrets


def secrets(
    talos_version: Annotated[
        str, typer.Option(help="Contract: v0.9 (default; ECDSA CAs) or v0.8 (RSA-4096 CAs).")
    ] = "",
    output: Output = "-",
    force: Force = False,
) -> None:
    """Generate every CA, key and token of a new cluster as one YAML bundle."""
    write_secrets(talos_version, output, force)
