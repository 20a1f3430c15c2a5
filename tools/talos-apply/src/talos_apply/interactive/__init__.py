"""``apply-config --interactive``: Talos v0.9's interactive installer as a full-screen form.

The node is asked for its disks and interfaces (over ``--insecure`` with the maintenance-mode TLS
as ``apply-config --insecure`` dials it, or over mutual TLS), the user fills the form (install
disk, cluster name, control-plane endpoint, machine type, hostname, DNS servers, per interface
DHCP or a static address and gateway; each field checked as it is typed), the node generates the
config (GenerateConfiguration), the review screen shows it with its secrets masked, and Apply
writes the new cluster's talosconfig to ``./talosconfig`` (0600, atomically; an existing file is
replaced only when the user says so, otherwise the new one goes to ``./talosconfig.new``) and
then sends the config (ApplyConfiguration). The talosconfig is written before the apply so that
the node never holds a config whose admin credentials were lost.

The screens use Textual (:mod:`talos_apply.interactive.screens`), imported only here, on use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from libtalos.errors import TalosError, UsageError

if TYPE_CHECKING:
    from talos_apply.commands.apply_config import ApplyOptions
    from talos_apply.interactive.model import NodeFacts
    from talos_apply.options import Globals

FLAG_UP = 1  # net.FlagUp, the Interfaces reply's flags bit


async def node_facts(c: Any, address: str) -> NodeFacts:
    """Disks and Interfaces of the node, as the form shows them."""
    from google.protobuf import empty_pb2

    from libtalos.api._gen.network.network_grpc import NetworkServiceStub
    from libtalos.api._gen.storage.storage_grpc import StorageServiceStub
    from talos_apply.interactive.model import DiskInfo, IfaceInfo, NodeFacts
    from talos_apply.output import report_errors

    disks, errors = await c.unary("Disks", empty_pb2.Empty(), stub=StorageServiceStub)
    report_errors(errors)
    links, errors = await c.unary("Interfaces", empty_pb2.Empty(), stub=NetworkServiceStub)
    report_errors(errors)
    return NodeFacts(
        address=address,
        disks=tuple(DiskInfo(d.device_name, d.size, d.model) for m in disks[:1] for d in m.disks),
        interfaces=tuple(
            IfaceInfo(i.name, i.hardwareaddr, bool(int(i.flags) & FLAG_UP), tuple(i.ipaddress))
            for m in links[:1]
            for i in m.interfaces
        ),
    )


def run(
    g: Globals,
    *,
    insecure: bool,
    pins: list[str],
    options: ApplyOptions,
    output: Path | None = None,
) -> None:
    """The whole installer; returns once the node took the config (else raises)."""
    import sys

    from talos_apply import client
    from talos_apply.commands.apply_config import apply_request

    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise UsageError("--interactive needs a terminal (stdin and stdout)")
    if len(g.nodes) != 1:
        raise UsageError("--interactive configures one node: pass exactly one --nodes")
    target = client.insecure_target(g, pins) if insecure else client.secure_target(g)
    c = client.Client(target)
    address = target.nodes[0]
    facts = client.run(node_facts(c, address))

    async def generate(request: Any) -> Any:
        messages, errors = await c.unary("GenerateConfiguration", request)
        if errors:
            raise TalosError(errors[0].message)
        if not messages:
            raise TalosError("the node returned no reply")
        return messages[0]

    async def apply(data: bytes) -> str:
        from libtalos.api import machine_pb2

        messages, errors = await c.unary("ApplyConfiguration", apply_request(data, options))
        if errors:
            raise TalosError(errors[0].message)
        names = {v: k for k, v in machine_pb2.ApplyConfigurationRequest.Mode.items()}
        mode = messages[0].mode if messages else 0
        return str(names.get(mode, str(mode))).lower().replace("_", "-")

    from talos_apply.interactive.screens import InstallerApp

    mode = "maintenance mode, --insecure" if insecure else "mutual TLS"
    app = InstallerApp(
        facts,
        f"node {address} ({mode})",
        generate,
        apply,
        output or Path.cwd() / "talosconfig",
    )
    outcome = app.run()
    if outcome is None or not outcome.applied:
        why = (outcome.error if outcome is not None else "") or "the installer was closed"
        raise TalosError(f"nothing was applied: {why}")
    sys.stderr.write(
        f"applied to {address} ({outcome.mode}); talosconfig written to {outcome.talosconfig}\n"
    )
