# ruff: noqa: N802 - handler names are the proto's method names (the generated base class)
"""``upgrade.UpgradeService``: an upgrade from an installer bundle the client streams.

Beyond Talos v0.9.3 (docs/upgrade.md): ``talosctl upgrade --image FILE`` sends the bundle in
``UploadRequest`` messages of at most :data:`CHUNK` bytes, the first carrying the
``machine.UpgradeRequest``. The node spools the bytes to EPHEMERAL (at most
:data:`MAX_BUNDLE` in all), then upgrades from the spooled file as ``MachineService/Upgrade``
does from a URL, and removes it. Configured nodes only (mutual TLS); maintenance mode answers
UNIMPLEMENTED. The stream goes to the node itself: the API proxy forwards single requests
only, so a call carrying ``nodes``/``node`` is refused (:mod:`talos_init.api.proxy`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from grpclib import GRPCError
from grpclib.const import Status as GrpcStatus
from grpclib.server import Stream

from libtalos.api._gen.machine import machine_pb2
from libtalos.api._gen.upgrade import upgrade_grpc
from talos_init.api.node import ApiBackend, NodeCallError

CHUNK = 1 << 20  # bytes of bundle data in one message (the client sends this much)
MAX_BUNDLE = 1 << 30  # bytes in all: a bundle is ~160 MB; the slot on BOOT holds less
SPOOL_NAME = ".upgrade-bundle.tar"


class UpgradeService(upgrade_grpc.UpgradeServiceBase):
    def __init__(self, node: ApiBackend, *, maintenance: bool) -> None:
        self.node = node
        self.maintenance = maintenance

    async def Upload(self, stream: Stream[Any, Any]) -> None:
        if self.maintenance:
            raise GRPCError(GrpcStatus.UNIMPLEMENTED, "Upload is not available in maintenance mode")
        first = await stream.recv_message()
        if first is None or not first.HasField("request"):
            raise GRPCError(
                GrpcStatus.INVALID_ARGUMENT, "Upload: the first message carries the request"
            )
        req = first.request
        name = os.path.basename(req.image)[:200] or "bundle"
        try:
            spool = self.node.spool_path(SPOOL_NAME)
        except NodeCallError as exc:
            raise GRPCError(GrpcStatus(int(exc.status)), exc.message) from None
        size = 0
        try:
            with open(spool, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                message = first
                while message is not None:
                    if message is not first and message.HasField("request"):
                        raise GRPCError(
                            GrpcStatus.INVALID_ARGUMENT,
                            "Upload: only the first message carries the request",
                        )
                    size += len(message.data)
                    if size > MAX_BUNDLE:
                        raise GRPCError(
                            GrpcStatus.RESOURCE_EXHAUSTED,
                            f"Upload: the bundle is over {MAX_BUNDLE} bytes",
                        )
                    out.write(message.data)
                    message = await stream.recv_message()
                out.flush()
                os.fsync(out.fileno())
            try:
                ack = await self.node.upgrade(
                    str(spool),
                    f"upload {name} ({size} bytes)",
                    preserve=req.preserve,
                    stage=req.stage,
                    force=req.force,
                )
            except NodeCallError as exc:
                raise GRPCError(GrpcStatus(int(exc.status)), exc.message) from None
        except OSError as exc:
            raise GRPCError(
                GrpcStatus.UNAVAILABLE, f"Upload: cannot spool the bundle: {exc.strerror}"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                spool.unlink()
        await stream.send_message(
            machine_pb2.UpgradeResponse(messages=[machine_pb2.Upgrade(ack=ack)])
        )
