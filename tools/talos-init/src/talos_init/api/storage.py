# ruff: noqa: N802 - handler names are the proto's method names (the generated base class)
"""``storage.StorageService``: the node's disks (docs/talos-facts.md#system-views).

``Disks`` lists /sys/block as Talos's blockdevice library does: every block device except those
named ``sg*``, ``sr*``, ``loop*``, ``md*``, ``dm-*`` and ``ram*``, and except those of size 0;
``device_name`` is ``/dev/<name>``, ``size`` the kernel's 512-byte sector count in bytes,
``model`` the device's ``device/model`` (empty for virtual devices). v0.9.3's ``Disk`` message
has no more fields (serial and type came later). Served in maintenance mode too: the interactive
installer asks it for the install disk.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpclib import GRPCError
from grpclib.const import Status as GrpcStatus
from grpclib.server import Stream

from libtalos.api._gen.storage import storage_grpc, storage_pb2
from talos_init.api.node import ApiBackend

SYS_BLOCK = Path("/sys/block")
SKIPPED_PREFIXES = ("sg", "sr", "loop", "md", "dm-", "ram")
SECTOR = 512  # /sys/block/<dev>/size counts 512-byte sectors whatever the device's own


@dataclass(frozen=True)
class Disk:
    device_name: str
    size: int
    model: str


def _text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def disks(sys_block: Path = SYS_BLOCK) -> list[Disk]:
    found = []
    for entry in sorted(sys_block.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name.startswith(SKIPPED_PREFIXES):
            continue
        sectors = _text(entry / "size")
        size = int(sectors) * SECTOR if sectors.isdigit() else 0
        if size == 0:
            continue
        found.append(Disk(f"/dev/{name}", size, _text(entry / "device" / "model")))
    return found


class StorageService(storage_grpc.StorageServiceBase):
    def __init__(self, node: ApiBackend, *, maintenance: bool) -> None:
        self.node = node
        self.maintenance = maintenance

    async def Disks(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        try:
            found = await asyncio.to_thread(disks)
        except OSError as exc:
            raise GRPCError(GrpcStatus.UNAVAILABLE, f"{SYS_BLOCK}: {exc.strerror}") from None
        msg = storage_pb2.Disks(
            disks=[
                storage_pb2.Disk(size=d.size, model=d.model, device_name=d.device_name)
                for d in found
            ]
        )
        await stream.send_message(storage_pb2.DisksResponse(messages=[msg]))
