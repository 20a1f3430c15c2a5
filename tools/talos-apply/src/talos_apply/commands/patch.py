"""``patch machineconfig -p PATCH``: the running config of each node, patched in place.

The patch is an RFC 6902 JSON patch (a list of operations; a YAML mapping is merged instead, as
talos-gen's patches are), given inline, as ``@FILE`` or with ``--patch-file FILE``. For each
node the config is read with the Read method, patched with :mod:`libtalos.patch` and applied as
apply-config does (``--mode``, ``--immediate``, ``--on-reboot``); a patch that changes nothing
applies nothing ("Apply was skipped: no changes detected."). Docs:
docs/talos-facts.md#edit-and-patch.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from libtalos.errors import UsageError
from talos_apply.commands.apply_config import ApplyModeName, apply_options, print_applied
from talos_apply.commands.edit import EditError, apply, check_resource, each_node, read_config
from talos_apply.options import global_options, globals_of


@global_options()
def patch(
    ctx: typer.Context,
    resource: Annotated[str, typer.Argument(metavar="TYPE", help="machineconfig (mc).")],
    resource_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="v1alpha1 (the only one).")
    ] = None,
    patch_text: Annotated[
        str | None,
        typer.Option("--patch", "-p", help="The patch to be applied (JSON 6902); @FILE reads one."),
    ] = None,
    patch_file: Annotated[
        str | None,
        typer.Option("--patch-file", help="A file containing a patch to be applied."),
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
    """Update field(s) of the machine config of each node using a JSON patch."""
    from libtalos import yamlio
    from libtalos.patch import apply_patch, read_patch

    check_resource(resource, resource_id, "patch")
    if (patch_text is None) == (patch_file is None):
        raise UsageError("either --patch or --patch-file should be given (one of them)")
    arg = patch_text if patch_text is not None else f"@{patch_file}"
    option = "--patch" if patch_text is not None else "--patch-file"
    body, source = read_patch(arg, option=option)
    options = apply_options(mode, on_reboot, immediate, timeout)
    for g in each_node(globals_of(ctx)):
        node = g.nodes[0]
        text = read_config(g).decode("utf-8", "replace")
        data = yamlio.load_one(text, f"{node}:/system/state/config.yaml").data
        patched = apply_patch(data, body, source)
        if patched == data:
            sys.stdout.write("Apply was skipped: no changes detected.\n")
            continue
        messages, error = apply(g, yamlio.dump(patched).encode("utf-8"), options)
        if error:
            raise EditError(f"{node}: {error}")
        sys.stdout.write(f"patched {resource} at the node {node}\n")
        print_applied(messages)
