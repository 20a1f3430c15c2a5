"""``edit machineconfig``: the running config of each node, edited in place.

For each node in turn: the config is read with the Read method (``/system/state/config.yaml``,
the node's config file), written to a temporary file (mode 0600, removed afterwards) under a
``# Editing machineconfig/v1alpha1 at node NODE`` line, and opened in ``$TALOS_EDITOR``,
``$VISUAL`` or ``$EDITOR`` (split as a shell would, no shell run), else ``vi``. An empty file
or one whose text (comment lines aside) did not change applies nothing. Otherwise it is applied
with ApplyConfiguration as apply-config does (``--mode``, ``--immediate``, ``--on-reboot``);
when the node refuses it, the editor opens again on the edit with the node's errors as ``#``
lines at the top, until the edit applies, is emptied, or comes back unchanged (then nothing is
applied and the command fails). Docs: docs/talos-facts.md#edit-and-patch.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
from typing import Annotated, Any

import typer

from libtalos.errors import TalosError, UsageError
from talos_apply.commands.apply_config import (
    ApplyModeName,
    ApplyOptions,
    apply_options,
    apply_request,
    print_applied,
)
from talos_apply.options import Globals, global_options, globals_of

CONFIG_PATH = "/system/state/config.yaml"
RESOURCE_NAMES = {"machineconfig", "machineconfigs", "mc", "machineconfigs.config.talos.dev"}
CONFIG_ID = "v1alpha1"
EDITOR_VARIABLES = ("TALOS_EDITOR", "VISUAL", "EDITOR")


class EditError(TalosError):
    """The edit could not be made or applied."""


def check_resource(resource: str, resource_id: str | None, command: str) -> None:
    if resource.lower() not in RESOURCE_NAMES:
        raise UsageError(
            f"{command}: only the machineconfig resource can be edited, not {resource!r}"
        )
    if resource_id is not None and resource_id != CONFIG_ID:
        raise UsageError(f"{command}: machineconfig has one id, {CONFIG_ID!r}, not {resource_id!r}")


def each_node(g: Globals) -> list[Globals]:
    """One set of options per target node (each node is edited on its own)."""
    from talos_apply import client

    return [dataclasses.replace(g, nodes=[n]) for n in client.secure_target(g).nodes]


def read_config(g: Globals) -> bytes:
    """The one node's running config, read with the Read method."""
    from libtalos.api import machine_pb2
    from talos_apply.commands.files import stream_bytes

    buffer = io.BytesIO()
    errors = stream_bytes(g, "Read", machine_pb2.ReadRequest(path=CONFIG_PATH), buffer)
    if errors:
        raise EditError(f"{g.nodes[0]}: cannot read the machine config: {'; '.join(errors)}")
    return buffer.getvalue()


def apply(g: Globals, data: bytes, options: ApplyOptions) -> tuple[list[Any], str]:
    """Apply ``data`` on the one node: (its replies, its error message or "")."""
    from talos_apply import client

    c = client.Client(client.secure_target(g))
    try:
        messages, errors = client.run(c.unary("ApplyConfiguration", apply_request(data, options)))
    except client.CallError as exc:
        return [], exc.message
    return messages, "\n".join(e.message for e in errors)


def strip_comments(text: str) -> str:
    """The text without its comment lines, outer blank space trimmed (what is compared)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return "\n".join(lines).strip()


def _leading_comments_removed(text: str) -> str:
    lines = text.splitlines(keepends=True)
    while lines and lines[0].lstrip().startswith("#"):
        lines.pop(0)
    return "".join(lines)


def editor_argv() -> list[str]:
    import shlex

    for name in EDITOR_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                argv = shlex.split(value)
            except ValueError as exc:
                raise UsageError(f"${name}: cannot be split into words: {exc}") from None
            if argv:
                return argv
    return ["vi"]


def launch(text: str) -> str:
    """``text`` edited in the editor, in a temporary 0600 file removed afterwards."""
    import subprocess
    import tempfile

    argv = editor_argv()
    fd, path = tempfile.mkstemp(prefix=f"machineconfig-{CONFIG_ID}-edit-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:
            done = subprocess.run([*argv, path], check=False)
        except OSError as exc:
            raise EditError(f"editor {argv[0]!r}: cannot run: {exc.strerror}") from None
        if done.returncode != 0:
            raise EditError(f"editor {argv[0]!r} exited with {done.returncode}: nothing applied")
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    finally:
        os.unlink(path)


def edit_node(g: Globals, options: ApplyOptions) -> None:
    node = g.nodes[0]
    body = read_config(g).decode("utf-8", "replace")
    original = strip_comments(body)
    current, last_error, last_try = body, "", None
    while True:
        header = f"# Editing machineconfig/{CONFIG_ID} at node {node}\n"
        if last_error:
            header += "#\n# " + "\n# ".join(last_error.splitlines()) + "\n"
        edited = launch(header + current)
        stripped = strip_comments(edited)
        if not stripped:
            sys.stdout.write("Apply was skipped: empty file.\n")
            return
        if stripped == original:
            sys.stdout.write("Apply was skipped: no changes detected.\n")
            return
        if stripped == last_try:
            raise EditError(f"{node}: the edit did not change after the error: nothing applied")
        messages, error = apply(g, edited.encode("utf-8"), options)
        if not error:
            print_applied(messages)
            return
        last_error, last_try = error, stripped
        current = _leading_comments_removed(edited)


@global_options()
def edit(
    ctx: typer.Context,
    resource: Annotated[str, typer.Argument(metavar="TYPE", help="machineconfig (mc).")],
    resource_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="v1alpha1 (the only one).")
    ] = None,
    mode: Annotated[
        ApplyModeName, typer.Option("--mode", "-m", help="How the node applies it (v1.x).")
    ] = ApplyModeName.auto,
    immediate: Annotated[
        bool, typer.Option("--immediate", help="Apply the change immediately (without a reboot).")
    ] = False,
    on_reboot: Annotated[
        bool, typer.Option("--on-reboot", help="Apply the change on next reboot.")
    ] = False,
    timeout: Annotated[
        str, typer.Option("--timeout", help="--mode try: roll back after this long (e.g. 1m).")
    ] = "1m",
) -> None:
    """Edit the machine config of each node in your editor ($TALOS_EDITOR, $VISUAL, $EDITOR)."""
    check_resource(resource, resource_id, "edit")
    options = apply_options(mode, on_reboot, immediate, timeout)
    for g in each_node(globals_of(ctx)):
        edit_node(g, options)
