"""``config endpoint|node|merge|contexts|context|add``: editing the talosconfig."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Annotated

import typer

from libtalos import talosconfig
from libtalos.cli import make_app
from libtalos.errors import TalosIOError, UsageError
from talos_apply.options import global_options, globals_of

app = make_app(
    help="Edit the client config (talosconfig): endpoints, nodes, contexts.",
    no_args_is_help=True,
)


def _open(ctx: typer.Context) -> tuple[Path, talosconfig.TalosConfig]:
    path = talosconfig.default_path(globals_of(ctx).talosconfig)
    return path, talosconfig.load(path)


def _context_name(ctx: typer.Context, cfg: talosconfig.TalosConfig) -> str:
    name = globals_of(ctx).context or cfg.context
    cfg.current(name)  # raises a clear error when it does not exist
    return name


@app.command("endpoint")
@global_options("talosconfig", "context")
def endpoint(
    ctx: typer.Context,
    endpoints: Annotated[
        list[str], typer.Argument(help="Endpoints: IP or host name, optionally with :PORT.")
    ],
) -> None:
    """Replace the endpoints of the current context (each HOST, HOST:PORT or [IPv6]:PORT)."""
    checked = talosconfig.check_endpoints(endpoints, "ENDPOINTS")  # before anything is read
    path, cfg = _open(ctx)
    name = _context_name(ctx, cfg)
    cfg.contexts[name].endpoints = checked
    talosconfig.save(cfg, path)


@app.command("node")
@global_options("talosconfig", "context")
def node(
    ctx: typer.Context,
    nodes: Annotated[list[str] | None, typer.Argument(help="Nodes; none clears them.")] = None,
) -> None:
    """Replace the default target nodes of the current context."""
    path, cfg = _open(ctx)
    name = _context_name(ctx, cfg)
    cfg.contexts[name].nodes = list(nodes or [])
    talosconfig.save(cfg, path)


@app.command("context")
@global_options("talosconfig")
def use_context(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The context to make current.")],
) -> None:
    """Switch the current context."""
    path, cfg = _open(ctx)
    cfg.use(name)
    talosconfig.save(cfg, path)


@app.command("contexts")
@global_options("talosconfig")
def contexts(ctx: typer.Context) -> None:
    """List the contexts: CURRENT, NAME, ENDPOINTS, NODES."""
    from talos_apply.output import table

    _path, cfg = _open(ctx)
    rows = []
    for name, c in cfg.contexts.items():
        nodes = ",".join(c.nodes[:3]) + (",..." if len(c.nodes) > 3 else "")
        rows.append(["*" if name == cfg.context else "", name, ",".join(c.endpoints), nodes])
    sys.stdout.write(table(["CURRENT", "NAME", "ENDPOINTS", "NODES"], rows))


@app.command("merge")
@global_options("talosconfig")
def merge(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="The talosconfig to merge in.")],
) -> None:
    """Copy every context of FILE into the talosconfig (clashes are renamed NAME-1 …)."""
    path, cfg = _open(ctx)
    other_path = Path(file)
    if not other_path.exists():
        raise TalosIOError(f"{file}: no such file")
    other = talosconfig.load(other_path)
    for note in cfg.merge(other):
        sys.stderr.write(f"{note}\n")
    talosconfig.save(cfg, path)


def _read_pem(option: str, file: str) -> bytes:
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise TalosIOError(f"{option} {file}: cannot read: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise UsageError(f"{option} {file}: not a PEM file")
    return data


def _checked_pki(ca: str, crt: str, key: str) -> tuple[bytes, bytes, bytes]:
    """The three PEM files of a context, each parsed, and the key checked against the cert.

    A wrong file (garbled, swapped, a key that is not the certificate's) is a usage error
    naming its flag; the messages never quote key material.
    """
    from libtalos import pki
    from libtalos.errors import PKIError

    ca_pem, crt_pem, key_pem = (
        _read_pem("--ca", ca),
        _read_pem("--crt", crt),
        _read_pem("--key", key),
    )
    try:
        pki.load_certificates(ca_pem, f"--ca {ca}")
        pki.load_certificate(crt_pem, f"--crt {crt}")
        pki.load_private_key(key_pem, f"--key {key}")
        pki.check_key_matches(crt_pem, key_pem, f"--crt {crt} and --key {key}")
    except PKIError as exc:
        raise UsageError(exc.message) from None
    return ca_pem, crt_pem, key_pem


@app.command("add")
@global_options("talosconfig")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The new context's name.")],
    ca: Annotated[str, typer.Option("--ca", help="CA certificate file (PEM).")],
    crt: Annotated[str, typer.Option("--crt", help="Client certificate file (PEM).")],
    key: Annotated[str, typer.Option("--key", help="Client key file (PEM), the --crt's key.")],
) -> None:
    """Add a context from PEM files (stored as base64); the files are checked first."""
    talosconfig.check_context_name(name, "NAME (the context name)")
    ca_pem, crt_pem, key_pem = _checked_pki(ca, crt, key)
    path, cfg = _open(ctx)
    if name in cfg.contexts:
        raise UsageError(f"context {name!r} already exists")
    enc = base64.b64encode
    cfg.contexts[name] = talosconfig.Context(
        ca=enc(ca_pem).decode(), crt=enc(crt_pem).decode(), key=enc(key_pem).decode()
    )
    if not cfg.context:
        cfg.context = name
    talosconfig.save(cfg, path)


# talosctl's aliases
app.command("endpoints", hidden=True)(endpoint)
app.command("nodes", hidden=True)(node)
app.command("use-context", hidden=True)(use_context)
app.command("get-contexts", hidden=True)(contexts)
