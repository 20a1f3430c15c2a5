"""What the API server needs from a node: the :class:`ApiBackend` protocol and its value types.

On a talos-init node :class:`talos_init.api.adapter.InitBackend` implements it on top of the
node and its supervisor; the API server translates gRPC calls into these calls and their results
(and :class:`NodeCallError`) back into replies.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from libtalos.errors import TalosError


class ApplyMode(enum.IntEnum):
    """``ApplyConfigurationRequest.Mode`` (v1.x numbering)."""

    REBOOT = 0
    AUTO = 1
    NO_REBOOT = 2
    STAGED = 3
    TRY = 4


class Status(enum.IntEnum):
    """The gRPC status codes the node may fail with (google.rpc.Code numbering)."""

    INVALID_ARGUMENT = 3
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    FAILED_PRECONDITION = 9
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14


class NodeCallError(TalosError):
    """A call the node refuses or cannot complete; ``status`` becomes the gRPC status."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class VersionInfo:
    tag: str
    sha: str = ""
    built: str = ""
    runtime: str = ""  # Talos: go_version; ours: the Python version
    os: str = "linux"
    arch: str = ""
    platform: str = "container"
    platform_mode: str = "container"


@dataclass(frozen=True)
class BootInfo:
    slot: str
    other: str
    other_version: str = ""
    rolled_back_from: str = ""
    trial: bool = False


@dataclass(frozen=True)
class ServiceEvent:
    message: str
    state: str
    ts: dt.datetime


@dataclass(frozen=True)
class ServiceStatus:
    id: str
    state: str
    healthy: bool | None = None  # None: unknown
    last_message: str = ""
    last_change: dt.datetime | None = None
    events: list[ServiceEvent] = field(default_factory=list)


@dataclass(frozen=True)
class EtcdMember:
    id: int
    hostname: str
    peer_urls: list[str]
    client_urls: list[str]
    is_learner: bool = False


@dataclass(frozen=True)
class AppliedConfig:
    """What the node did with an accepted config (the reply's ``mode``/``mode_details``)."""

    mode: ApplyMode
    details: str


class ApiBackend(Protocol):
    """The node as the API sees it. Methods raise :class:`NodeCallError` to refuse."""

    hostname: str
    machine_type: str  # "" (no config yet), "init", "controlplane" or "join"/"worker"
    platform_mode: str  # validation mode: "container", "metal" or "cloud"

    def version(self) -> VersionInfo: ...

    def config_text(self) -> str | None:
        """The active machine config (``None`` in maintenance mode)."""
        ...

    async def apply_configuration(
        self, text: str, mode: ApplyMode, try_timeout: dt.timedelta | None
    ) -> AppliedConfig:
        """Take a config the server has already parsed and validated; ``mode`` is resolved
        (never AUTO). Called one at a time (the server serializes applies)."""
        ...

    def etcd_data_exists(self) -> bool: ...

    async def bootstrap(self) -> None: ...

    async def reboot(self, powercycle: bool) -> None: ...

    async def shutdown(self, force: bool) -> None: ...

    async def reset(self, graceful: bool, reboot: bool, wipe_labels: list[str]) -> None: ...

    async def upgrade(
        self, source: str, label: str, *, preserve: bool, stage: bool, force: bool
    ) -> str:
        """Write the installer bundle at ``source`` (a URL or a path on the node) to the other
        slot and reboot into it (``stage``: at the next reboot); returns the reply's ack."""
        ...

    async def rollback(self) -> None:
        """Make the other slot the default and reboot into it."""
        ...

    def spool_path(self, name: str) -> Path:
        """Where an uploaded bundle is kept until it is written (on EPHEMERAL)."""
        ...

    def boot_status(self) -> BootInfo | None:
        """The slots of a node booted from its disk (``None`` otherwise)."""
        ...

    def services(self) -> list[ServiceStatus]: ...

    async def service_action(self, service_id: str, action: str) -> str:
        """``action`` is start, stop or restart; returns the reply text (``resp``)."""
        ...

    def logs(self, service_id: str, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        """Log lines (each ending in a newline); unknown service: NodeCallError NOT_FOUND."""
        ...

    async def etcd_members(self) -> list[EtcdMember]: ...
