"""``kubeconfig [PATH]``: fetch the admin kubeconfig from one control-plane node.

By default it is merged into ``~/.kube/config`` (as talosctl does); a clash is renamed unless
``--force``. ``--merge=false`` writes the file (an existing one only with ``--force``). A PATH
that is a directory receives ``PATH/kubeconfig``. ``--force-context-name NAME`` names the new
context NAME (its cluster and user keep their names, as with talosctl); a clash with an
existing NAME is renamed ``NAME-1`` or, with ``--force``, replaced. Files are written
atomically, 0600 (they hold a private key; talosctl writes 0640).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from talos_apply.options import global_options, globals_of


@global_options()
def kubeconfig(
    ctx: typer.Context,
    path: Annotated[
        str | None, typer.Argument(help="Where to write it (default ~/.kube/config); - stdout.")
    ] = None,
    merge: Annotated[
        bool, typer.Option("--merge/--no-merge", "-m", help="Merge into an existing file.")
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Replace clashing entries / an existing file.")
    ] = False,
    force_context_name: Annotated[
        str,
        typer.Option("--force-context-name", help="Name the new context so (kept on a merge)."),
    ] = "",
) -> None:
    """Download the admin kubeconfig from a control-plane node."""
    from google.protobuf import empty_pb2

    from libtalos import yamlio
    from libtalos.api.wire import ArchiveError, kubeconfig_from_archive
    from libtalos.errors import (
        NetworkError,
        OutputExistsError,
        TalosError,
        TalosIOError,
        UsageError,
    )
    from libtalos.fsutil import SECRET_MODE, atomic_write
    from libtalos.talosconfig import decode_text
    from talos_apply import client, kubemerge

    if force_context_name:
        _check_context_name(force_context_name)
    g = globals_of(ctx)
    api_target = client.secure_target(g, need_nodes=False)  # no node: the endpoint answers
    if len(api_target.nodes) > 1:
        raise UsageError("kubeconfig takes exactly one node (--nodes IP)")
    # The file to merge into is read and checked before the node is asked.
    target = Path(path) if path else Path.home() / ".kube" / "config"
    if target.is_dir():
        target = target / "kubeconfig"
    existing: dict[str, Any] | None = None
    if path != "-" and target.exists():
        if not merge and not force:
            raise OutputExistsError(f"{target}: file exists", hint="pass --force to overwrite it")
        if merge:
            try:
                current = target.read_bytes()
            except OSError as exc:
                raise TalosIOError(f"{target}: cannot read: {exc.strerror}") from None
            existing = kubemerge.parse(decode_text(current, str(target)), str(target))
    c = client.Client(api_target)

    async def fetch() -> bytes:
        chunks: list[bytes] = []
        async for frame in c.stream("Kubeconfig", empty_pb2.Empty()):
            if frame.metadata.error:
                raise NetworkError(f"{frame.metadata.hostname}: {frame.metadata.error}")
            chunks.append(frame.bytes)
        return b"".join(chunks)

    archive: bytes = client.run(fetch())
    try:
        data = kubeconfig_from_archive(archive)
    except ArchiveError as exc:
        raise TalosError(f"kubeconfig reply: {exc}") from None
    if path == "-":
        sys.stdout.buffer.write(data)
        return
    if force_context_name and existing is None:
        existing = {}  # the file is written from the merge, so that the context gets its name
    if existing is not None:
        new = kubemerge.parse(decode_text(data, "kubeconfig reply"), "kubeconfig reply")
        if force_context_name:
            _name_context(new, force_context_name)
        for note in kubemerge.merge(existing, new, force=force):
            sys.stderr.write(f"{note}\n")
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(target, yamlio.dump(existing), mode=SECRET_MODE)
        return
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(target, data, mode=SECRET_MODE)


def _check_context_name(name: str) -> None:
    from libtalos.errors import UsageError

    if not name.strip() or any(ord(c) < 32 for c in name):
        raise UsageError(f"--force-context-name: {name!r} is not a usable context name")


def _name_context(kubeconfig: dict[str, Any], name: str) -> None:
    """Rename the contexts of a fetched kubeconfig (Talos's holds one) to ``name``."""
    for entry in kubeconfig.get("contexts") or []:
        if isinstance(entry, dict):
            entry["name"] = name
    if kubeconfig.get("current-context"):
        kubeconfig["current-context"] = name
