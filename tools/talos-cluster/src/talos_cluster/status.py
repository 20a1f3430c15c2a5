"""What a node is doing: its processes, console log and sockets, read without sending a packet;
for a qemu VM (whose sockets are in its own kernel) the API column is a TCP connection to its
address on the cluster's bridge."""

from __future__ import annotations

import re
from pathlib import Path

from talos_cluster import nodes
from talos_cluster.state import ClusterRecord, NodeRecord

_SERVICES = re.compile(r"services running: (\d+)")
_STATE = re.compile(r"service\[([^\]]+)\]\((\w+)\)")


def tail(path: Path, limit: int = 65536) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def node_state(node: NodeRecord, *, stand_in: bool = False) -> str:
    """``running``, ``maintenance``, ``booting``, ``exited`` or ``not started``."""
    if node.pid == 0:
        return "not started"
    if not nodes.alive(node.pid, node.start_time):
        return "exited"
    log = tail(Path(node.console))
    if stand_in:  # the stand-in's handshake: it prints a line "ready" once it is up
        return "running" if "ready\n" in log else "booting"
    boot = log.rfind("boot sequence: done")
    maint = log.rfind("waiting for a machine config")
    start = log.rfind("talos-init mode")
    if boot > start and boot > maint:
        return "running"
    if maint > start:
        return "maintenance"
    return "booting"


def services(node: NodeRecord) -> str:
    """Services Running now, from their last state lines (``service[etcd](Running): …``) since
    the node last started; else the boot's ``services running: N``; else ``-``."""
    log = tail(Path(node.console))
    log = log[log.rfind("talos-init mode") :] if "talos-init mode" in log else log
    last = dict(_STATE.findall(log))
    if last:
        return str(sum(1 for state in last.values() if state == "Running"))
    found = _SERVICES.findall(log)
    return found[-1] if found else "-"


def api(node: NodeRecord, provisioner: str = "namespace") -> str:
    if provisioner == "qemu":
        from talos_cluster.qemu.vm import api_open

        return "listening" if api_open(node.ip) else "-"
    pid1 = nodes.node_pid1(node.pid) if node.pid else None
    if pid1 is None:
        return "-"
    return "listening" if nodes.listening(pid1, nodes.API_PORT) else "-"


def _state(record: ClusterRecord, n: NodeRecord, stand_in: bool) -> str:
    if record.provisioner == "qemu":
        from talos_cluster.qemu.provision import node_state as vm_state

        return vm_state(n)
    return node_state(n, stand_in=stand_in)


def table(record: ClusterRecord, etcd: dict[str, str] | None = None) -> str:
    stand_in = record.node_command_stand_in
    rows = [("NODE", "ROLE", "ADDRESS", "STATE", "SERVICES", "API", "ETCD")]
    for n in record.nodes:
        rows.append(
            (
                n.name,
                n.role,
                n.ip,
                _state(record, n, stand_in),
                services(n),
                api(n, record.provisioner),
                (etcd or {}).get(n.name, "-" if n.role == "controlplane" else "n/a"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )
