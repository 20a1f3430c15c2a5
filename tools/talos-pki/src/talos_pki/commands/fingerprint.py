"""``talos-pki fingerprint``: the SPKI fingerprint a node prints in maintenance mode."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from talos_pki.spki import fingerprint_input


def fingerprint(
    file: Annotated[str, typer.Argument(help="PEM certificate, or base64 of one ('-' for stdin).")],
) -> None:
    """Print SHA-256 of the certificate's SubjectPublicKeyInfo, base64 (44 characters)."""
    sys.stdout.write(fingerprint_input(file) + "\n")
