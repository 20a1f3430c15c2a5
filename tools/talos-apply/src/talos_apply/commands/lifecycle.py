"""``bootstrap``, ``reboot``, ``shutdown``, ``reset``: one call each, per-node results."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from talos_apply.commands.common import unary
from talos_apply.options import global_options, globals_of
from talos_apply.output import node_of, report_errors


def _done(messages: list[Any], what: str) -> None:
    for m in messages:
        node = node_of(m)
        sys.stderr.write(f"{node + ': ' if node else ''}{what}\n")


@global_options()
def bootstrap(
    ctx: typer.Context,
) -> None:
    """Start etcd as a new cluster on one control-plane node (refused if etcd has data)."""
    from libtalos.api import machine_pb2

    g = globals_of(ctx)
    messages, errors = unary(g, "Bootstrap", machine_pb2.BootstrapRequest(), single="bootstrap")
    _done(messages, "bootstrap requested")
    report_errors(errors)


@global_options()
def reboot(
    ctx: typer.Context,
    powercycle: Annotated[
        bool, typer.Option("--powercycle", help="Power-cycle instead of a warm reboot (v1.x).")
    ] = False,
) -> None:
    """Reboot the nodes."""
    from libtalos.api import machine_pb2

    g = globals_of(ctx)
    mode = machine_pb2.RebootRequest.POWERCYCLE if powercycle else machine_pb2.RebootRequest.DEFAULT
    messages, errors = unary(g, "Reboot", machine_pb2.RebootRequest(mode=mode))
    _done(messages, "reboot requested")
    report_errors(errors)


@global_options()
def shutdown(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Do not cordon and drain first (v1.x).")
    ] = False,
) -> None:
    """Power the nodes off."""
    from libtalos.api import machine_pb2

    g = globals_of(ctx)
    messages, errors = unary(g, "Shutdown", machine_pb2.ShutdownRequest(force=force))
    _done(messages, "shutdown requested")
    report_errors(errors)


@global_options()
def reset(
    ctx: typer.Context,
    graceful: Annotated[
        bool,
        typer.Option("--graceful/--no-graceful", help="Leave etcd (and drain) before wiping."),
    ] = True,
    reboot_after: Annotated[
        bool, typer.Option("--reboot", help="Reboot after the reset instead of powering off.")
    ] = False,
    system_labels_to_wipe: Annotated[
        list[str] | None,
        typer.Option(
            "--system-labels-to-wipe",
            help="Wipe only these system partitions (e.g. STATE, EPHEMERAL); repeatable.",
        ),
    ] = None,
) -> None:
    """Wipe the nodes' system partitions and power off (or --reboot)."""
    from libtalos.api import machine_pb2

    labels = [v.strip() for item in system_labels_to_wipe or [] for v in item.split(",") if v]
    request = machine_pb2.ResetRequest(
        graceful=graceful,
        reboot=reboot_after,
        system_partitions_to_wipe=[
            machine_pb2.ResetPartitionSpec(label=label, wipe=True) for label in labels
        ],
    )
    g = globals_of(ctx)
    messages, errors = unary(g, "Reset", request)
    _done(messages, "reset requested")
    report_errors(errors)
