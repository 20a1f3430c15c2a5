"""The Typer app of ``talos-init`` (imported only when a command runs, never for --version)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from talos_init.cli import boot_node
from talos_init.modes import Mode

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    help="PID 1 of a Talos node: boot sequence, service supervisor, zombie reaper.",
)

@app.command()
def boot(
    mode: Annotated[Mode, typer.Option(help="container (namespaces) or metal (real kernel)")],
    state_dir: Annotated[
        Path, typer.Option(help="holds state/ (STATE) and ephemeral/ (EPHEMERAL)")
    ],
    services_dir: Annotated[
        Path | None, typer.Option(help="extension services, one YAML document per file")
    ] = None,
    config: Annotated[
        str | None, typer.Option(help="machine config: a file, or a file:// or http(s):// URL")
    ] = None,
    cmdline: Annotated[
        str | None,
        typer.Option(help="kernel-style parameters (metal mode reads /proc/cmdline)"),
    ] = None,
    isolate: Annotated[
        bool, typer.Option(help="container mode: read-only root in its own mount namespace")
    ] = True,
    echo_services: Annotated[
        bool, typer.Option(help="copy service output to the console as 'NAME: line'")
    ] = False,
    manage_network: Annotated[
        bool,
        typer.Option(
            help="container mode: apply machine.network.interfaces (the node has its own netns)"
        ),
    ] = False,
    fetch_timeout: Annotated[
        float, typer.Option(help="bound on fetching the config URL, in seconds")
    ] = 70.0,
    api: Annotated[
        bool,
        typer.Option(
            help="serve the machine API (default: on when the node is isolated or metal)"
        ),
    ] = True,
    api_port: Annotated[
        int | None,
        typer.Option(help="machine API port (default 50000; with --no-isolate only if given)"),
    ] = None,
    reap_orphans: Annotated[
        bool, typer.Option(hidden=True, help="off only for the tests' negative control")
    ] = True,
    cert_ttl: Annotated[
        float | None,
        typer.Option(hidden=True, help="tests: API certificate lifetime in seconds (24 h)"),
    ] = None,
    cert_check_period: Annotated[
        float, typer.Option(hidden=True, help="tests: seconds between renewal checks (1 h)")
    ] = 3600.0,
) -> int:
    return boot_node(
        mode=mode,
        state_dir=state_dir,
        services_dir=services_dir,
        config=config,
        cmdline=cmdline,
        isolate=isolate,
        echo_services=echo_services,
        fetch_timeout=fetch_timeout,
        manage_network=manage_network,
        reap_orphans=reap_orphans,
        api=api,
        api_port=api_port,
        cert_ttl=cert_ttl,
        cert_check_period=cert_check_period,
    )
