"""A complete in-memory :class:`~talos_init.api.node.ApiBackend`: tests, benchmarks, a reference.

A test double, kept with the tests: tests/api builds its servers on it, and bench/api_bench.py
borrows it (adding tests/ to its import path).

Everything is real except the machine underneath: the config is kept as text, "services" are
state records with events and a log ring, reboot/shutdown/reset are recorded as actions, and
``accepted`` hands each applied config to whoever waits on it (the maintenance flow).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import platform
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from libtalos import config as config_model
from talos_init.api.node import (
    AppliedConfig,
    ApplyMode,
    BootInfo,
    EtcdMember,
    NodeCallError,
    ServiceEvent,
    ServiceStatus,
    Status,
    VersionInfo,
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class MemoryService:
    id: str
    state: str = "Running"
    healthy: bool | None = True
    events: list[ServiceEvent] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self, state: str, message: str) -> None:
        self.state = state
        self.events.append(ServiceEvent(message, state, _now()))

    def append(self, line: str) -> None:
        self.log.append(line)
        self.changed.set()


class MemoryNode:
    def __init__(
        self,
        hostname: str = "talos-memory",
        *,
        config_text: str | None = None,
        platform_mode: str = "container",
        services: Sequence[str] = ("apid", "etcd", "kubelet"),
        tag: str = "v0.9.0-py",
    ) -> None:
        self.hostname = hostname
        self.platform_mode = platform_mode
        self.tag = tag
        self._config = config_text
        self.machine_type = self._type_of(config_text)
        self.services_by_id = {sid: MemoryService(sid) for sid in services}
        for svc in self.services_by_id.values():
            svc.set("Running", "Health check successful")
            svc.append(f"{svc.id}: started")
        self.actions: list[tuple[str, object]] = []
        self.accepted: asyncio.Queue[str] = asyncio.Queue()
        self.etcd_data = False
        self.etcd: list[EtcdMember] = []
        self.applying = 0  # concurrent applies in progress (tests assert it never exceeds 1)
        self.max_applying = 0
        self.apply_delay = 0.0
        self.boot: BootInfo | None = None  # a node "booted from its disk" reports its slots
        self.upgrade_refusal: NodeCallError | None = None  # what upgrade() raises, if set
        self.spool_dir = Path(tempfile.mkdtemp(prefix="memory-node-"))

    @staticmethod
    def _type_of(text: str | None) -> str:
        if text is None:
            return ""
        return config_model.load(text, "config").config.machine.type

    def version(self) -> VersionInfo:
        return VersionInfo(
            tag=self.tag,
            runtime=f"python{sys.version_info.major}.{sys.version_info.minor}",
            arch=platform.machine(),
            platform="container",
            platform_mode=self.platform_mode,
        )

    def config_text(self) -> str | None:
        return self._config

    async def apply_configuration(
        self, text: str, mode: ApplyMode, try_timeout: dt.timedelta | None
    ) -> AppliedConfig:
        self.applying += 1
        self.max_applying = max(self.max_applying, self.applying)
        try:
            if self.apply_delay:
                await asyncio.sleep(self.apply_delay)
            self.actions.append(("apply", mode))
            if mode is not ApplyMode.STAGED:
                previous = self._config
                self._config = text
                self.machine_type = self._type_of(text)
                if mode is ApplyMode.TRY and try_timeout is not None:
                    asyncio.get_running_loop().call_later(
                        try_timeout.total_seconds(), self._rollback, previous
                    )
            self.accepted.put_nowait(text)
            details = {
                ApplyMode.REBOOT: "Applied configuration with a reboot",
                ApplyMode.NO_REBOOT: "Applied configuration without a reboot",
                ApplyMode.STAGED: "Staged configuration to be applied after a reboot",
                ApplyMode.TRY: f"Applied configuration in try mode for {try_timeout}",
            }.get(mode, "Applied configuration")
            return AppliedConfig(mode, details)
        finally:
            self.applying -= 1

    def _rollback(self, previous: str | None) -> None:
        self._config = previous
        self.actions.append(("rollback", None))

    def etcd_data_exists(self) -> bool:
        return self.etcd_data

    async def bootstrap(self) -> None:
        self.etcd_data = True
        self.etcd = [
            EtcdMember(
                id=0x1234ABCD,
                hostname=self.hostname,
                peer_urls=["https://127.0.0.1:2380"],
                client_urls=["https://127.0.0.1:2379"],
            )
        ]
        self.actions.append(("bootstrap", None))

    async def reboot(self, powercycle: bool) -> None:
        self.actions.append(("reboot", powercycle))

    async def shutdown(self, force: bool) -> None:
        self.actions.append(("shutdown", force))

    async def reset(self, graceful: bool, reboot: bool, wipe_labels: list[str]) -> None:
        self.actions.append(("reset", (graceful, reboot, tuple(wipe_labels))))

    async def upgrade(
        self, source: str, label: str, *, preserve: bool, stage: bool, force: bool
    ) -> str:
        """Records the source, the flags and the sha256 of the bundle's bytes as read."""
        if self.upgrade_refusal is not None:
            raise self.upgrade_refusal
        digest = ""
        if source.startswith("/"):
            digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
        self.actions.append(("upgrade", (source, label, preserve, stage, force, digest)))
        return f"Upgrade request received: {label}"

    async def rollback(self) -> None:
        self.actions.append(("rollback", ()))

    def spool_path(self, name: str) -> Path:
        return self.spool_dir / name

    def boot_status(self) -> BootInfo | None:
        return self.boot

    def _service(self, sid: str) -> MemoryService:
        try:
            return self.services_by_id[sid]
        except KeyError:
            raise NodeCallError(Status.NOT_FOUND, f"service {sid!r} not found") from None

    def services(self) -> list[ServiceStatus]:
        return [
            ServiceStatus(
                id=s.id,
                state=s.state,
                healthy=s.healthy,
                last_message=s.events[-1].message if s.events else "",
                last_change=s.events[-1].ts if s.events else None,
                events=list(s.events),
            )
            for s in self.services_by_id.values()
        ]

    async def service_action(self, service_id: str, action: str) -> str:
        svc = self._service(service_id)
        if action == "stop":
            svc.set("Finished", "Service finished successfully")
        elif action in ("start", "restart"):
            svc.set("Running", f"Service {action}ed")
        else:
            raise NodeCallError(Status.INVALID_ARGUMENT, f"unknown service action {action!r}")
        svc.append(f"{svc.id}: {action}")
        verb = {"start": "Service %r started", "stop": "Service %r stopped"}
        return verb.get(action, "Service %r restarted") % service_id

    async def logs(self, service_id: str, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        svc = self._service(service_id)
        lines = svc.log if tail is None else svc.log[len(svc.log) - tail :] if tail else []
        sent = len(svc.log)
        for line in lines:
            yield (line + "\n").encode()
        while follow:
            svc.changed.clear()
            await svc.changed.wait()
            for line in svc.log[sent:]:
                yield (line + "\n").encode()
            sent = len(svc.log)

    async def etcd_members(self) -> list[EtcdMember]:
        if self.machine_type in ("join", "worker"):
            raise NodeCallError(Status.FAILED_PRECONDITION, "etcd does not run on workers")
        if not self.etcd_data:
            raise NodeCallError(Status.FAILED_PRECONDITION, "etcd is not running (bootstrap first)")
        return list(self.etcd)
