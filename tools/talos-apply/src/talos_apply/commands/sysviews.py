"""``interfaces``, ``routes`` (``route``), ``containers`` (``c``) and ``stats``: the nodes'
links, routes and containers.

Columns as talosctl v0.9.3 prints them (docs/talos-facts.md#system-views): interfaces one row
per address (``NODE INDEX NAME MAC MTU ADDRESS``), routes ``NODE INTERFACE DESTINATION GATEWAY
METRIC``, containers ``NODE NAMESPACE ID IMAGE PID STATUS`` and stats ``NODE NAMESPACE ID
MEMORY(MB) CPU``, sorted by id, a container of a pod shown as ``└─ ID``. ``-k`` asks for the
``k8s.io`` namespace through the CRI driver, otherwise the ``system`` namespace through
containerd. A node without a container runtime reports so as its error (exit 1).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from talos_apply.commands.common import unary
from talos_apply.options import OutputFormat, OutputOpt, global_options, globals_of
from talos_apply.output import emit_structured, node_of, report_errors, table

SYSTEM_NAMESPACE = "system"
K8S_NAMESPACE = "k8s.io"

KubernetesOpt = Annotated[
    bool, typer.Option("--kubernetes", "-k", help="Use the k8s.io containerd namespace.")
]
UseCriOpt = Annotated[bool, typer.Option("--use-cri", "-c", hidden=True, help="Use CRI.")]


@global_options()
def interfaces(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """List the network interfaces of each node (one row per address)."""
    from google.protobuf import empty_pb2

    from libtalos.api._gen.network.network_grpc import NetworkServiceStub

    messages, errors = unary(
        globals_of(ctx), "Interfaces", empty_pb2.Empty(), stub=NetworkServiceStub
    )
    if not emit_structured(messages, output):
        rows = [
            [node_of(m), str(i.index), i.name, i.hardwareaddr, str(i.mtu), address]
            for m in messages
            for i in m.interfaces
            for address in i.ipaddress
        ]
        sys.stdout.write(table(["NODE", "INDEX", "NAME", "MAC", "MTU", "ADDRESS"], rows))
    report_errors(errors)


@global_options()
def routes(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """List the network routes of each node."""
    from google.protobuf import empty_pb2

    from libtalos.api._gen.network.network_grpc import NetworkServiceStub

    messages, errors = unary(globals_of(ctx), "Routes", empty_pb2.Empty(), stub=NetworkServiceStub)
    if not emit_structured(messages, output):
        rows = [
            [node_of(m), r.interface, r.destination, r.gateway, str(r.metric)]
            for m in messages
            for r in m.routes
        ]
        headers = ["NODE", "INTERFACE", "DESTINATION", "GATEWAY", "METRIC"]
        sys.stdout.write(table(headers, rows))
    report_errors(errors)


def _container_request(kind: Any, kubernetes: bool) -> Any:
    from libtalos.api import common_pb2

    if kubernetes:
        return kind(namespace=K8S_NAMESPACE, driver=common_pb2.CRI)
    return kind(namespace=SYSTEM_NAMESPACE, driver=common_pb2.CONTAINERD)


def _display(item: Any) -> str:
    return str(item.id) if item.id == item.pod_id else f"└─ {item.id}"


@global_options()
def containers(
    ctx: typer.Context,
    kubernetes: KubernetesOpt = False,
    use_cri: UseCriOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List the containers of each node."""
    from libtalos.api import machine_pb2

    request = _container_request(machine_pb2.ContainersRequest, kubernetes)
    messages, errors = unary(globals_of(ctx), "Containers", request)
    if not emit_structured(messages, output):
        rows = [
            [node_of(m), c.namespace, _display(c), c.image, str(c.pid), c.status]
            for m in messages
            for c in sorted(m.containers, key=lambda c: c.id)
        ]
        headers = ["NODE", "NAMESPACE", "ID", "IMAGE", "PID", "STATUS"]
        sys.stdout.write(table(headers, rows))
    report_errors(errors)


@global_options()
def stats(
    ctx: typer.Context,
    kubernetes: KubernetesOpt = False,
    use_cri: UseCriOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show the memory and CPU use of each node's containers."""
    from libtalos.api import machine_pb2

    request = _container_request(machine_pb2.StatsRequest, kubernetes)
    messages, errors = unary(globals_of(ctx), "Stats", request)
    if not emit_structured(messages, output):
        rows = [
            [node_of(m), s.namespace, _display(s), f"{s.memory_usage * 1e-6:.2f}", str(s.cpu_usage)]
            for m in messages
            for s in sorted(m.stats, key=lambda s: s.id)
        ]
        headers = ["NODE", "NAMESPACE", "ID", "MEMORY(MB)", "CPU"]
        sys.stdout.write(table(headers, rows))
    report_errors(errors)
