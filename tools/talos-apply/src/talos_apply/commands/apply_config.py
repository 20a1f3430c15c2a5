"""``apply-config``: send a machine config to a node.

``--insecure`` (maintenance mode) dials the one node directly and, with ``--cert-fingerprint``,
refuses a server whose key does not match before any byte of the config is sent. Otherwise the
call goes over mutual TLS with the talosconfig's credentials, to every target node.
The config is read and checked to be UTF-8 before anything is dialled; the node validates it.
``--interactive`` runs the installer of :mod:`talos_apply.interactive` instead of reading a file.
"""

from __future__ import annotations

import datetime as dt
import enum
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from libtalos.errors import UsageError
from libtalos.fsutil import read_input_bytes
from libtalos.talosconfig import decode_text
from talos_apply.options import OutputFormat, OutputOpt, global_options, globals_of
from talos_apply.output import emit_structured, node_of, report_errors, table


class ApplyModeName(enum.StrEnum):
    auto = "auto"
    reboot = "reboot"
    no_reboot = "no-reboot"
    staged = "staged"
    try_ = "try"


@global_options()
def apply_config(
    ctx: typer.Context,
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="The machine config; - for stdin.")
    ] = None,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            help="Fill a form on screen; the node generates the config (writes ./talosconfig).",
        ),
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", "-i", help="Maintenance mode: TLS without a client cert."),
    ] = False,
    cert_fingerprint: Annotated[
        list[str] | None,
        typer.Option(
            "--cert-fingerprint",
            help="With --insecure: the node's SPKI fingerprint (base64) to pin; repeatable.",
        ),
    ] = None,
    mode: Annotated[
        ApplyModeName, typer.Option("--mode", "-m", help="How the node applies it (v1.x).")
    ] = ApplyModeName.auto,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate and report what would change; apply nothing."),
    ] = False,
    on_reboot: Annotated[
        bool,
        typer.Option("--on-reboot", help="v0.9: stage it for the next boot (= --mode staged)."),
    ] = False,
    immediate: Annotated[
        bool,
        typer.Option("--immediate", help="v0.9: apply without a reboot (= --mode no-reboot)."),
    ] = False,
    timeout: Annotated[
        str, typer.Option("--timeout", help="--mode try: roll back after this long (e.g. 1m).")
    ] = "1m",
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Apply a machine config to the nodes (maintenance mode: --insecure --nodes IP)."""
    from talos_apply import client

    if cert_fingerprint and not insecure:
        raise UsageError("--cert-fingerprint applies to --insecure (maintenance mode) only")
    checked = apply_options(mode, on_reboot, immediate, timeout)
    if interactive:
        if file is not None or dry_run:
            raise UsageError("--interactive excludes --file and --dry-run")
        from talos_apply.interactive import run as run_interactive

        run_interactive(
            globals_of(ctx), insecure=insecure, pins=cert_fingerprint or [], options=checked
        )
        return
    if file is None:
        raise UsageError("no config to apply: pass --file FILE (or --interactive)")
    data, source = read_input_bytes(file)
    decode_text(data, source)  # a machine config is UTF-8 text: checked before anything is dialled
    request = apply_request(data, checked, dry_run=dry_run)
    g = globals_of(ctx)
    target = (
        client.insecure_target(g, cert_fingerprint or []) if insecure else client.secure_target(g)
    )
    c = client.Client(target)
    messages, errors = client.run(c.unary("ApplyConfiguration", request))
    if insecure:
        for m in messages:
            m.metadata.hostname = m.metadata.hostname or target.nodes[0]
    if not emit_structured(messages, output):
        print_applied(messages)
    report_errors(errors)


@dataclass(frozen=True)
class ApplyOptions:
    """How a config is to be applied: checked ``--mode``/``--on-reboot``/``--immediate``/
    ``--timeout`` (apply-config's, and edit's and patch's)."""

    mode: int  # ApplyConfigurationRequest.Mode
    on_reboot: bool
    immediate: bool
    try_timeout: dt.timedelta | None


def apply_options(
    mode: ApplyModeName, on_reboot: bool, immediate: bool, timeout: str
) -> ApplyOptions:
    """The apply flags checked (UsageError when they contradict each other)."""
    from libtalos.api import machine_pb2
    from talos_apply.durations import parse_duration

    if on_reboot and immediate:
        raise UsageError("--on-reboot and --immediate exclude each other")
    req_mode = {
        ApplyModeName.auto: machine_pb2.ApplyConfigurationRequest.AUTO,
        ApplyModeName.reboot: machine_pb2.ApplyConfigurationRequest.REBOOT,
        ApplyModeName.no_reboot: machine_pb2.ApplyConfigurationRequest.NO_REBOOT,
        ApplyModeName.staged: machine_pb2.ApplyConfigurationRequest.STAGED,
        ApplyModeName.try_: machine_pb2.ApplyConfigurationRequest.TRY,
    }[mode]
    if on_reboot or immediate:
        if mode is not ApplyModeName.auto:
            raise UsageError("--on-reboot/--immediate (v0.9) and --mode exclude each other")
        # Both generations' fields: a v0.9 node reads on_reboot/immediate, a v1.x node the mode.
        req_mode = (
            machine_pb2.ApplyConfigurationRequest.STAGED
            if on_reboot
            else machine_pb2.ApplyConfigurationRequest.NO_REBOOT
        )
    try_timeout = parse_duration(timeout, "--timeout") if mode is ApplyModeName.try_ else None
    return ApplyOptions(int(req_mode), on_reboot, immediate, try_timeout)


def apply_request(data: bytes, options: ApplyOptions, *, dry_run: bool = False) -> Any:
    """The ApplyConfigurationRequest for ``data``."""
    from google.protobuf import duration_pb2

    from libtalos.api import machine_pb2

    request = machine_pb2.ApplyConfigurationRequest(
        data=data,
        on_reboot=options.on_reboot,
        immediate=options.immediate,
        mode=options.mode,  # type: ignore[arg-type]
        dry_run=dry_run,
    )
    if options.try_timeout is not None:
        d = duration_pb2.Duration()
        d.FromTimedelta(options.try_timeout)
        request.try_mode_timeout.CopyFrom(d)
    return request


def print_applied(messages: list[Any]) -> None:
    """The nodes' warnings (stderr) and what each did (NODE, MODE, DETAILS)."""
    from libtalos.api import machine_pb2

    names = dict(machine_pb2.ApplyConfigurationRequest.Mode.items())
    by_value = {v: k for k, v in names.items()}
    for m in messages:
        for w in m.warnings:
            sys.stderr.write(f"warning: {node_of(m)}: {w}\n")
    rows = [
        [
            node_of(m),
            by_value.get(m.mode, str(m.mode)).lower().replace("_", "-"),
            m.mode_details.replace("\n", " | "),
        ]
        for m in messages
    ]
    if rows and any(r[2] for r in rows):
        sys.stdout.write(table(["NODE", "MODE", "DETAILS"], rows))
