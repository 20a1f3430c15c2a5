"""``derive-key nodeid``: Talos's nodeID passphrase for a partition."""

from __future__ import annotations

from typing import Annotated

import typer

from talos_luks import nodeid


def derive_nodeid(
    label: Annotated[str, typer.Option("--label", help="partition label: STATE or EPHEMERAL")],
    uuid: Annotated[
        str | None,
        typer.Option(
            "--uuid", help="system UUID (default: SMBIOS, /sys/class/dmi/id/product_uuid)"
        ),
    ] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="write the key to FILE (0600) instead of stdout")
    ] = "-",
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing --output")] = False,
) -> None:
    """Print the nodeID key (system UUID + label, no newline): feed it to --key-file -."""
    import sys

    from libtalos.fsutil import SECRET_MODE, atomic_write

    key = nodeid.derive(label, uuid)
    if output == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(key)
        sys.stdout.buffer.flush()
    else:
        atomic_write(output, key, mode=SECRET_MODE, force=force)
