"""The cluster's record: everything create made, written before and after each step.

``<cluster dir>/cluster.yaml`` lists the namespaces, links, cgroups and processes of the
cluster. Each
resource is recorded *before* it is created (a crash between the two leaves a record of
something that may not exist, which destroy tolerates) and the file is rewritten atomically, so
``destroy`` removes exactly what create made, also after an interrupted create or a crashed node.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from libtalos import yamlio
from libtalos.errors import ParseError, Problem, TalosError
from libtalos.fsutil import atomic_write

STATE_FILE = "cluster.yaml"
KIND = "TalosLocalCluster"
API_VERSION = "v1alpha1"
MAX_RECORD_BYTES = 16 << 20  # a 999-node cluster's record is about 1 MiB
MAX_RECORD_NODES = 100_000  # YAML nodes; about 40 per cluster node, 999 nodes at most
BAD_RECORD_HINT = (
    "remove the cluster's namespaces with 'ip netns delete', its bridge with 'ip link delete' "
    "and its directory by hand"
)
if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_R = TypeVar("_R", bound="DataclassInstance")


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
    veth: str = ""  # the bridge side of its veth pair ("" in records older than the field)
    # the qemu provisioner's VM: its tap on the bridge, MAC, virtual disk and QMP socket (``pid``
    # and ``start_time`` are QEMU's)
    tap: str = ""
    mac: str = ""
    disk: str = ""
    qmp: str = ""


@dataclass
class ClusterRecord:
    name: str
    cidr: str
    dir: str
    netns: str  # the cluster's own namespace (isolated layout), else ""
    endpoint: str = ""
    # "shared": the bridge is in the namespace create ran in; "isolated": in ``netns`` (records
    # without the key were all isolated)
    layout: str = "isolated"
    bridge: str = "talos0"
    bridge_netns: str = ""  # shared layout: that namespace, as /proc/self/ns/net reads
    namespaces: list[str] = field(default_factory=list)  # created (or about to be), in order
    nodes: list[NodeRecord] = field(default_factory=list)
    cgroup_roots: list[str] = field(default_factory=list)
    node_command_stand_in: bool = False  # nodes run a stand-in PID 1 (--node-command)
    complete: bool = False
    # "namespace" (talos-init nodes in namespaces) or "qemu" (VMs); records without the key are
    # namespace clusters
    provisioner: str = "namespace"
    # the qemu provisioner's daemons on the bridge (0: not started) and how the VMs run
    dnsmasq_pid: int = 0
    dnsmasq_start: int = 0
    http_pid: int = 0
    http_start: int = 0
    http_port: int = 0
    accel: str = ""  # "tcg" or "kvm"

    def path(self) -> Path:
        return Path(self.dir) / STATE_FILE

    def save(self) -> None:
        data = {"apiVersion": API_VERSION, "kind": KIND, **asdict(self)}
        atomic_write(self.path(), yamlio.dump(data), mode=0o600)

    def node(self, name: str) -> NodeRecord:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


class RecordError(TalosError):
    """A cluster record that cannot be read or is not one talos-cluster wrote."""


def load(cluster_dir: Path) -> ClusterRecord | None:
    """The record in ``cluster_dir``; None when there is none (nothing was made, or destroyed).

    Read strictly: YAML with bounded aliases and size (:mod:`libtalos.yamlio`), every key known
    and of its type; anything else is a :class:`RecordError` naming the file.
    """
    path = cluster_dir / STATE_FILE
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RecordError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_RECORD_BYTES:
        raise _bad(path, f"larger than {MAX_RECORD_BYTES} bytes")
    if b"\0" in raw:
        raise _bad(path, "not a text file (contains NUL bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(path, f"not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        docs = yamlio.load_documents(text, str(path), max_nodes=MAX_RECORD_NODES)
    except ParseError as exc:
        raise _bad(path, "; ".join(_where(p) for p in exc.problems)) from None
    if len(docs) != 1:
        raise _bad(path, f"expected one YAML document, found {len(docs)}")
    doc = docs[0]
    data = doc.data
    if not isinstance(data, dict):
        raise _bad(path, "not a mapping")
    data = dict(data)
    if data.pop("kind", None) != KIND:
        raise _bad(path, _where(doc.problem(("kind",), f"must be {KIND}")))
    if data.pop("apiVersion", API_VERSION) != API_VERSION:
        raise _bad(path, _where(doc.problem(("apiVersion",), f"must be {API_VERSION}")))
    return _build(ClusterRecord, data, doc, ())


def _bad(path: Path, why: str) -> RecordError:
    return RecordError(f"{path}: not a talos-cluster record: {why}", hint=BAD_RECORD_HINT)


def _where(problem: Problem) -> str:
    line = f"line {problem.line}: " if problem.line is not None else ""
    key = f"{problem.path}: " if problem.path else ""
    return f"{line}{key}{problem.message}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (_is_int, "an integer"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "list[str]": (
        lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "a list of strings",
    ),
}


def _build(cls: type[_R], data: Any, doc: yamlio.Document, at: yamlio.Path) -> _R:
    """``cls(**data)`` when ``data`` has exactly the fields of ``cls``, each of its type."""
    source = Path(doc.source)
    if not isinstance(data, dict):
        raise _bad(source, _where(doc.problem(at, "must be a mapping")))
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        f = known.get(key)
        if f is None:
            raise _bad(source, _where(doc.problem((*at, key), "unknown key")))
        if f.type == "list[NodeRecord]":
            if not isinstance(value, list):
                raise _bad(source, _where(doc.problem((*at, key), "must be a list")))
            values[key] = [
                _build(NodeRecord, item, doc, (*at, key, i)) for i, item in enumerate(value)
            ]
            continue
        check, what = _TYPES[str(f.type)]
        if not check(value):
            raise _bad(source, _where(doc.problem((*at, key), f"must be {what}")))
        values[key] = value
    missing = [
        name
        for name, f in known.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise _bad(source, _where(doc.problem(at, f"missing {', '.join(missing)}")))
    return cls(**values)


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
