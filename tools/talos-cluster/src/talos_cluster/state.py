"""The cluster's record: everything create made, written before and after each step.

``<cluster dir>/cluster.yaml`` lists the namespaces, cgroups and processes of the cluster. Each
resource is recorded *before* it is created (a crash between the two leaves a record of
something that may not exist, which destroy tolerates) and the file is rewritten atomically, so
``destroy`` removes exactly what create made, also after an interrupted create or a crashed node.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from libtalos import yamlio
from libtalos.errors import TalosError
from libtalos.fsutil import atomic_write

STATE_FILE = "cluster.yaml"
KIND = "TalosLocalCluster"


@dataclass
class NodeRecord:
    name: str
    role: str
    ip: str
    netns: str
    dir: str
    console: str
    pid: int = 0  # the launcher (unshare) outside the node's PID namespace
    start_time: int = 0  # /proc/PID/stat field 22: tells our process from a reused PID
    cgroups: list[str] = field(default_factory=list)
    limits: str = ""  # how --cpus/--memory were enforced (or why not)


@dataclass
class ClusterRecord:
    name: str
    cidr: str
    dir: str
    netns: str
    endpoint: str = ""
    namespaces: list[str] = field(default_factory=list)  # created (or about to be), in order
    nodes: list[NodeRecord] = field(default_factory=list)
    cgroup_roots: list[str] = field(default_factory=list)
    node_command_stand_in: bool = False  # nodes run a stand-in PID 1 (--node-command)
    complete: bool = False

    def path(self) -> Path:
        return Path(self.dir) / STATE_FILE

    def save(self) -> None:
        data = {"apiVersion": "v1alpha1", "kind": KIND, **asdict(self)}
        atomic_write(self.path(), yamlio.dump(data), mode=0o600)

    def node(self, name: str) -> NodeRecord:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def load(cluster_dir: Path) -> ClusterRecord | None:
    """The record in ``cluster_dir``; None when there is none (nothing was made, or destroyed)."""
    path = cluster_dir / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TalosError(f"{path}: cannot read: {exc.strerror}") from None
    bad = TalosError(
        f"{path}: not a talos-cluster record (remove the cluster's namespaces with "
        "'ip netns delete' and the directory by hand)"
    )
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        raise bad from None
    if not isinstance(data, dict) or data.pop("kind", None) != KIND:
        raise bad
    data.pop("apiVersion", None)
    try:
        nodes = [NodeRecord(**n) for n in data.pop("nodes", None) or []]
        return ClusterRecord(**data, nodes=nodes)
    except TypeError:
        raise bad from None


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot); None when PID is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    rest = raw[raw.rfind(")") + 2 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def is_ours(pid: int, start_time: int) -> bool:
    return pid > 0 and start_time > 0 and process_start_time(pid) == start_time


def default_state_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".talos" / "clusters"
