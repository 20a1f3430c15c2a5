"""The state of one ``create`` run: what its steps found and made, read by the later steps and
by the roll-back."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from talos_cluster.interrupts import Interrupts
from talos_cluster.state import ClusterRecord

if TYPE_CHECKING:
    from libtalos.talosconfig import TalosConfig
    from talos_cluster.options import CreateOptions


def progress(message: str) -> None:
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


@dataclass
class Generated:
    """Secrets, configs and the talosconfig context, made before anything else."""

    files: dict[str, bytes | str]  # file name in the cluster directory -> content
    context: TalosConfig  # the cluster's talosconfig context, to be merged


@dataclass
class Undo:
    """What a failed create removes beside what its record lists."""

    dirs: list[Path] = field(default_factory=list)  # made above the cluster dir, deepest first
    talosconfig: Path | None = None  # merged into: restored from ``before`` ...
    before: bytes | None = None  # (None: it did not exist, so it is removed)
    written: bytes | None = None  # ... when it still holds what create wrote


@dataclass
class CreateRun:
    """One create: its record (saved once the cluster directory exists), the interrupt flag,
    and what each step hands to the next."""

    record: ClusterRecord
    interrupts: Interrupts = field(default_factory=Interrupts)
    undo: Undo = field(default_factory=Undo)
    command: list[str] = field(default_factory=list)  # each node's PID 1, before its flags
    generated: Generated | None = None
    started: float = 0.0  # time.monotonic() when the first thing was made
    # machine type (and, for VMs, node name) -> config file
    configs: dict[str, Path] = field(default_factory=dict)
    etcd: dict[str, str] = field(default_factory=dict)  # node -> etcd column of the table

    @classmethod
    def start(cls, opts: CreateOptions, here: str) -> CreateRun:
        """A run whose record describes the cluster ``opts`` plan (``here``: the network
        namespace create runs in, where a shared-layout bridge goes)."""
        p = opts.plan
        return cls(
            record=ClusterRecord(
                name=p.name,
                cidr=p.cidr,
                dir=str(opts.cluster_dir),
                netns=p.netns,
                endpoint=p.endpoint,
                layout=p.layout,
                bridge=p.bridge,
                bridge_netns="" if p.isolated else here,
                node_command_stand_in=opts.stand_in is not None,
                provisioner=opts.provisioner,
            )
        )

    @property
    def here(self) -> str:
        """The network namespace create runs in (shared layout), else ``""``."""
        return self.record.bridge_netns

    @property
    def made(self) -> Generated:
        if self.generated is None:  # pragma: no cover - the step order guarantees it
            raise RuntimeError("configs are generated before they are used")
        return self.generated
