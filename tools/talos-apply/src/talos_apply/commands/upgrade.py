"""``upgrade`` and ``rollback``: the A/B slots of nodes installed to their disks.

``upgrade --image`` takes an installer bundle (``talos-image installer``): an http(s) URL or a
path that the node reads itself (``MachineService/Upgrade``), or a file on this machine, which
is streamed to the node (``upgrade.UpgradeService/Upload``: the node itself is dialled, since
the API proxy forwards single requests only). A path that exists here is a local file; any
other path names a file on the node.

Nodes are upgraded one at a time, in the order given: after each node's reply the command waits
until the node went down and answers again, and checks which slot it came back on. A node that
does not come back within ``--timeout``, or comes back on its previous slot (its new slot failed
to boot: GRUB went back), stops the rollout there, so a second control plane is never taken down
while the first is not back; ``--force`` goes on to the next node anyway (and lets each node
upgrade without its own checks). The last node is waited for only with ``--wait``;
``--stage`` waits for none (the new slot boots at each node's next reboot).

Exit codes: 0 when every node upgraded (or staged), 1 when a node refused, did not come back or
rolled back (each named on stderr), 2 for a bad argument.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from talos_apply.options import global_options, globals_of

if TYPE_CHECKING:
    from talos_apply.client import Target

CHUNK = 1 << 20  # bytes of bundle per Upload message (the node's limit is a little more)
POLL = 2.0  # seconds between Version calls while a node reboots
PROBE_TIMEOUT = 5.0  # seconds one of those calls may take
DEFAULT_TIMEOUT = "15m"


def _err(text: str) -> None:
    sys.stderr.write(f"{text}\n")


def local_bundle(image: str) -> Path | None:
    """``image`` as a file on this machine (it exists here and is not a URL), else ``None``."""
    if "://" in image:
        return None
    path = Path(image)
    return path if path.is_file() else None


def check_image(image: str) -> None:
    from libtalos.errors import UsageError

    if not image:
        raise UsageError("--image: the installer bundle to upgrade to is required")
    if local_bundle(image) is None and not image.startswith(("http://", "https://", "/")):
        raise UsageError(
            f"--image {image!r}: not a file here, an http(s) URL or an absolute path on the"
            " node (nodes pull no container images: build a bundle with talos-image installer)"
        )


def _one(target: Target, node: str) -> Target:
    from dataclasses import replace

    return replace(target, nodes=[node])


def _direct(target: Target, node: str) -> Target:
    """``target`` dialling ``node`` itself, with no ``nodes`` metadata."""
    from dataclasses import replace

    return replace(target, endpoints=[node], nodes=[node], direct=True)


async def _boot(target: Target, node: str) -> Any:
    """The node's Version message (raises when it does not answer)."""
    from google.protobuf import empty_pb2

    from talos_apply import client

    c = client.Client(_one(target, node))
    messages, errors = await asyncio.wait_for(c.unary("Version", empty_pb2.Empty()), PROBE_TIMEOUT)
    if errors or not messages:
        raise client.CallError(node, "UNAVAILABLE", errors[0].message if errors else "no reply")
    return messages[0]


async def _upload(target: Target, node: str, path: Path, request: Any) -> str:
    from libtalos.api._gen.upgrade import upgrade_grpc, upgrade_pb2
    from talos_apply import client

    direct = _direct(target, node)
    c = client.Client(direct)
    size = path.stat().st_size

    async def attempt(stub: Any) -> Any:
        async with stub.Upload.open(timeout=None, metadata=direct.metadata) as s:
            sent = 0
            with path.open("rb") as fh:
                await s.send_message(upgrade_pb2.UploadRequest(request=request))
                while block := fh.read(CHUNK):
                    await s.send_message(upgrade_pb2.UploadRequest(data=block))
                    sent += len(block)
            await s.end()
            _err(f"{node}: sent {sent} of {size} bytes of {path.name}")
            return await s.recv_message()

    reply = await c.each_endpoint(attempt, upgrade_grpc.UpgradeServiceStub)
    return str(reply.messages[0].ack) if reply.messages else ""


async def _request(target: Target, node: str, image: str, request: Any) -> str:
    from talos_apply import client

    local = local_bundle(image)
    if local is not None:
        return await _upload(target, node, local, request)
    messages, errors = await client.Client(_one(target, node)).unary("Upgrade", request)
    if errors:
        raise client.CallError(node, "error", errors[0].message)
    return str(messages[0].ack) if messages else ""


async def _came_back(target: Target, node: str, before: Any, timeout: float) -> Any:
    """The node's Version once it went down and answers again; ``None`` at ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    went_down = False
    while loop.time() < deadline:
        await asyncio.sleep(POLL)
        try:
            now = await _boot(target, node)
        except Exception:  # noqa: BLE001 - any failure to answer means it is down
            went_down = True
            continue
        if went_down or now.boot.slot != before.boot.slot:
            return now
    return None


def _shown(v: Any) -> str:
    slot = f"slot {v.boot.slot}, " if v.boot.slot else ""
    return f"{slot}{v.version.tag}"


async def _rollout(
    target: Target, image: str, request: Any, *, wait: bool, timeout: float, force: bool
) -> list[str]:
    """Upgrade each node in turn; the problems, one line per node."""
    problems: list[str] = []
    nodes = list(target.nodes)
    for i, node in enumerate(nodes):
        problem = await _upgrade_one(
            target, node, image, request, wait=wait or i < len(nodes) - 1, timeout=timeout
        )
        if problem is None:
            continue
        problems.append(problem)
        left = nodes[i + 1 :]
        if left and not force:
            problems.append(f"not upgraded (the rollout stopped): {', '.join(left)}")
            break
    return problems


async def _upgrade_one(
    target: Target, node: str, image: str, request: Any, *, wait: bool, timeout: float
) -> str | None:
    """Upgrade ``node`` and, with ``wait``, see it back on its new slot; the problem or None."""
    try:
        before = await _boot(target, node)
        ack = await _request(target, node, image, request)
    except Exception as exc:  # noqa: BLE001 - reported per node
        return f"{node}: {getattr(exc, 'message', None) or exc}"
    _err(f"{node}: {ack}")
    if request.stage or not wait:
        return None
    _err(f"{node}: waiting for it to reboot and answer again (up to {timeout:g}s)")
    after = await _came_back(target, node, before, timeout)
    if after is None:
        return f"{node}: did not answer again within {timeout:g}s"
    if after.boot.slot == before.boot.slot:
        failed = after.boot.rolled_back_from or "the new slot"
        return (
            f"{node}: came back on {_shown(after)}: slot {failed} failed to boot and GRUB went"
            " back to the previous slot"
        )
    _err(f"{node}: upgraded: {_shown(after)} (was {_shown(before)})")
    return None


@global_options()
def upgrade(
    ctx: typer.Context,
    image: Annotated[
        str,
        typer.Option(
            "--image",
            "-i",
            help="The installer bundle: a file here (streamed to the node), an http(s) URL or a"
            " path on the node.",
        ),
    ] = "",
    preserve: Annotated[
        bool,
        typer.Option(
            "--preserve", "-p", help="Keep EPHEMERAL's data and, on control planes, etcd."
        ),
    ] = False,
    stage: Annotated[
        bool,
        typer.Option("--stage", "-s", help="Write the new slot now; it boots at the next reboot."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            "-f",
            help="Skip the node's checks and go on past a node that did not come back.",
        ),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Wait for the last node too (the others are waited for)."),
    ] = False,
    timeout: Annotated[
        str, typer.Option("--timeout", help="How long each node may take to answer again.")
    ] = DEFAULT_TIMEOUT,
) -> None:
    """Upgrade the nodes to an installer bundle, one node at a time (A/B, with rollback)."""
    from libtalos.api import machine_pb2
    from talos_apply import client
    from talos_apply.durations import parse_duration
    from talos_apply.output import NodesFailedError

    check_image(image)
    seconds = parse_duration(timeout, "--timeout").total_seconds()
    g = globals_of(ctx)
    target = client.secure_target(g)
    shown = image if local_bundle(image) is None else os.path.basename(image)
    request = machine_pb2.UpgradeRequest(image=shown, preserve=preserve, stage=stage, force=force)
    problems = client.run(_rollout(target, image, request, wait=wait, timeout=seconds, force=force))
    for line in problems:
        _err(f"error: {line}")
    if problems:
        raise NodesFailedError("upgrade did not complete on every node")


@global_options()
def rollback(
    ctx: typer.Context,
) -> None:
    """Boot the nodes' other slot: it becomes the default, and the nodes reboot into it."""
    from libtalos.api import machine_pb2
    from talos_apply.commands.common import unary
    from talos_apply.output import node_of, report_errors

    g = globals_of(ctx)
    messages, errors = unary(g, "Rollback", machine_pb2.RollbackRequest())
    for m in messages:
        node = node_of(m)
        _err(f"{node + ': ' if node else ''}rollback requested")
    report_errors(errors)
