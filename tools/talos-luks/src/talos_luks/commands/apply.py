"""``apply``: format/open/sync a partition from ``machine.systemDiskEncryption`` on stdin."""

from __future__ import annotations

from typing import Annotated

import typer

from talos_luks.jobs import apply_job
from talos_luks.options import (
    DEFAULT,
    ForceIterations,
    IterTime,
    PbkdfMemory,
    PbkdfParallel,
    PbkdfType,
    pbkdf,
)


def apply_cmd(
    partition: Annotated[str, typer.Option("--partition", help="STATE or EPHEMERAL")],
    device: Annotated[str, typer.Option("--device", help="the partition's block device")],
    config: Annotated[
        str, typer.Option("--config", help="machine config file ('-', the default, is stdin)")
    ] = "-",
    name: Annotated[
        str | None, typer.Option("--name", help="mapping name (default: <device name>-encrypted)")
    ] = None,
    uuid: Annotated[
        str | None, typer.Option("--uuid", help="system UUID for nodeID keys (default: SMBIOS)")
    ] = None,
    no_activate: Annotated[
        bool, typer.Option("--no-activate", help="format and sync key slots only; do not map")
    ] = False,
    pbkdf_type: PbkdfType = DEFAULT.type,
    pbkdf_memory: PbkdfMemory = DEFAULT.memory_kb,
    pbkdf_parallel: PbkdfParallel = DEFAULT.parallel,
    iter_time: IterTime = DEFAULT.time_ms,
    force_iterations: ForceIterations = 0,
) -> None:
    """Encrypt or open PARTITION on DEVICE as the machine config says; print the mapped path."""
    apply_job(
        partition,
        device,
        config,
        name=name,
        uuid=uuid,
        no_activate=no_activate,
        pbkdf=pbkdf(pbkdf_type, pbkdf_memory, pbkdf_parallel, iter_time, force_iterations),
    )
