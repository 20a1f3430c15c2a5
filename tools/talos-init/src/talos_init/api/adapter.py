"""The machine API's :class:`~talos_init.api.node.ApiBackend` on a talos-init node.

:class:`InitBackend` translates the API's calls into the node's (:class:`talos_init.node.Node`,
its supervisor and its :class:`~talos_init.etcdmanager.EtcdManager`): apply (maintenance,
reboot, no_reboot, staged, try), bootstrap (etcd as a new cluster), reset, services, logs, etcd
members, the admin kubeconfig, the runtime events. Everything runs on the node's asyncio loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from libtalos.errors import DocumentError, TalosError
from talos_init import __version__
from talos_init.api.files import FileAccess
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
from talos_init.etcdmanager import EtcdExistsError, EtcdRefusedError
from talos_init.supervisor import State, UnknownServiceError

if TYPE_CHECKING:
    from talos_init.api.issuer import Issuer
    from talos_init.configsource import NodeConfig
    from talos_init.etcdmanager import EtcdManager
    from talos_init.events import EventRing
    from talos_init.node import Node

NO_KUBELET = "kubelet binary not found: the kubelet service is skipped"
SYSTEM_LABELS = {"STATE", "EPHEMERAL"}  # the partitions a reset can wipe
T = TypeVar("T")


def _ts(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class InitBackend:
    """:class:`~talos_init.api.node.ApiBackend` on top of talos-init's node and supervisor;
    ``in_maintenance`` says whether the maintenance server is the one serving."""

    def __init__(
        self, node: Node, etcd: EtcdManager, issue: Issuer, in_maintenance: Callable[[], bool]
    ) -> None:
        self._node = node
        self._etcd = etcd
        self._issue = issue
        self._in_maintenance = in_maintenance
        self._upgrading: asyncio.Task[None] | None = None  # the reboot after an upgrade, reset

    # -- identity -------------------------------------------------------------------------

    @property
    def hostname(self) -> str:
        return self._node.hostname()

    @hostname.setter
    def hostname(self, value: str) -> None:
        raise AttributeError("hostname follows the node's config; it cannot be set")

    @property
    def machine_type(self) -> str:
        config = self._node.config
        return config.machine_type if config is not None else ""

    @machine_type.setter
    def machine_type(self, value: str) -> None:
        raise AttributeError("machine_type follows the node's config; it cannot be set")

    @property
    def platform_mode(self) -> str:
        return self._node.mode

    @platform_mode.setter
    def platform_mode(self, value: str) -> None:
        raise AttributeError("platform_mode follows the node's config; it cannot be set")

    def version(self) -> VersionInfo:
        mode = self._node.mode
        return VersionInfo(
            tag=f"v{__version__}",
            runtime=f"python{sys.version_info.major}.{sys.version_info.minor}",
            arch=platform.machine(),
            platform=mode,
            platform_mode=mode,
        )

    def config_text(self) -> str | None:
        config = self._node.config
        return config.text if config is not None else None

    @property
    def event_ring(self) -> EventRing:
        """The node's runtime events (the ``Events`` method replays and follows them)."""
        return self._node.events

    # -- config ---------------------------------------------------------------------------

    async def apply_configuration(
        self, text: str, mode: ApplyMode, try_timeout: dt.timedelta | None
    ) -> AppliedConfig:
        node = self._node
        try:
            if self._in_maintenance():
                node.apply_configuration(text, "<api>")  # the maintenance wait takes it
                return AppliedConfig(ApplyMode.REBOOT, "Applied configuration with a reboot")
            config = node.parse_config(text, "<api>")
        except DocumentError as exc:
            raise NodeCallError(Status.INVALID_ARGUMENT, exc.message) from None
        if mode is ApplyMode.STAGED:
            node.persist_config(config)
            return AppliedConfig(mode, "Staged configuration to be applied after a reboot")
        if mode is ApplyMode.TRY:
            previous = node.config
            node.use_config(config)
            timeout = try_timeout or dt.timedelta(minutes=1)
            asyncio.get_running_loop().call_later(
                timeout.total_seconds(), self._rollback, config, previous
            )
            self._etcd.config_changed()
            return AppliedConfig(mode, f"Applied configuration in try mode for {timeout}")
        node.persist_config(config)
        if mode is ApplyMode.NO_REBOOT:
            node.use_config(config)
            self._etcd.config_changed()
            return AppliedConfig(mode, "Applied configuration without a reboot")
        node.console.log("config applied through the API: rebooting")
        node.reboot()
        return AppliedConfig(ApplyMode.REBOOT, "Applied configuration with a reboot")

    def _rollback(self, tried: NodeConfig, previous: NodeConfig | None) -> None:
        node = self._node
        if node.config is tried:
            node.use_config(previous)
            node.console.log("try mode: timeout reached, rolled back to the previous config")
            self._etcd.config_changed()

    async def admin_kubeconfig(self) -> bytes:
        """The Kubeconfig RPC's document, made in a child (a new admin certificate each call)."""
        config = self._node.config
        if config is None:
            raise NodeCallError(Status.FAILED_PRECONDITION, "the node has no config")
        try:
            made = await self._issue({"op": "kubeconfig", "config": config.text})
        except TalosError as exc:
            raise NodeCallError(Status.FAILED_PRECONDITION, exc.message) from None
        return str(made["kubeconfig"]).encode()

    # -- lifecycle ------------------------------------------------------------------------

    def etcd_data_exists(self) -> bool:
        return self._etcd.has_data()

    async def bootstrap(self) -> None:
        try:
            await self._etcd.bootstrap()
        except EtcdExistsError as exc:
            raise NodeCallError(Status.ALREADY_EXISTS, exc.message) from None
        except TalosError as exc:
            raise NodeCallError(Status.FAILED_PRECONDITION, exc.message) from None

    async def reboot(self, powercycle: bool) -> None:
        self._node.console.log("reboot requested through the API")
        self._node.reboot()

    async def shutdown(self, force: bool) -> None:
        self._node.console.log("shutdown requested through the API")
        self._node.shutdown()

    async def reset(self, graceful: bool, reboot: bool, wipe_labels: list[str]) -> None:
        labels = {label.upper() for label in wipe_labels} or set(SYSTEM_LABELS)
        unknown = labels - SYSTEM_LABELS
        if unknown:
            raise NodeCallError(
                Status.INVALID_ARGUMENT,
                f"unknown system partition(s): {', '.join(sorted(unknown))} "
                "(STATE and EPHEMERAL can be wiped)",
            )
        node = self._node
        node.console.log(f"reset requested through the API: wiping {', '.join(sorted(labels))}")
        if graceful and self._etcd.running():
            try:
                await self._etcd.leave()
            except TalosError as exc:
                raise NodeCallError(
                    Status.FAILED_PRECONDITION, f"graceful reset: cannot leave etcd: {exc.message}"
                ) from None
        # after the reply: stopping the services ends the DHCP client too, and with it the
        # node's address, which the reply would need
        self._upgrading = asyncio.get_running_loop().create_task(
            self._reset_after(labels, reboot=reboot), name="reset"
        )

    async def _reset_after(self, labels: set[str], *, reboot: bool) -> None:
        node = self._node
        await asyncio.sleep(0.2)  # the reply goes out first
        await node.supervisor.stop_all()
        node.wipe(labels)
        if reboot:
            node.reboot()
        else:
            node.shutdown()

    # -- upgrade and rollback (docs/upgrade.md) -------------------------------------------

    def _installed_only(self, what: str) -> None:
        if self._node.mode != "metal":
            raise NodeCallError(
                Status.FAILED_PRECONDITION,
                f"{what}: a container node runs its host's software; only a node installed to"
                " its disk has slots to write",
            )

    async def upgrade(
        self, source: str, label: str, *, preserve: bool, stage: bool, force: bool
    ) -> str:
        from talos_init import bootloader
        from talos_init.disks import DiskError

        self._installed_only("upgrade")
        node = self._node
        if not preserve and not stage and self._etcd.running() and not force:
            await self._can_leave_etcd()
        config = node.config
        section = config.model.machine.install if config is not None else None
        extra = tuple(section.extra_kernel_args) if section is not None else ()
        try:
            slot, version = await bootloader.upgrade(
                node.console,
                node.reaper,
                node.options.cmdline,
                lambda: bootloader.open_bundle(source),
                label,
                extra,
                force=force,
            )
        except bootloader.SlotWriteError as exc:
            raise NodeCallError(Status.FAILED_PRECONDITION, f"upgrade: {exc.message}") from None
        except bootloader.BundleError as exc:
            raise NodeCallError(Status.INVALID_ARGUMENT, exc.message) from None
        except DiskError as exc:
            raise NodeCallError(Status.FAILED_PRECONDITION, exc.message) from None
        shown = f"slot {slot} ({version})" if version else f"slot {slot}"
        if stage:
            node.console.log(f"upgrade: staged: {shown} boots at the next reboot")
            return f"Upgrade staged: {shown} boots at the next reboot"
        self._upgrading = asyncio.get_running_loop().create_task(
            self._reboot_into(shown, preserve=preserve, force=force), name="upgrade-reboot"
        )
        return f"Upgrade request received: rebooting into {shown}"

    async def _can_leave_etcd(self) -> None:
        """Refuse an upgrade without --preserve that would have to remove etcd's last member."""
        try:
            members = await self._etcd.members()
        except TalosError as exc:
            raise NodeCallError(
                Status.FAILED_PRECONDITION,
                f"upgrade: etcd does not answer ({exc.message}): use --preserve to keep this"
                " node's member, or --force",
            ) from None
        if len(members) <= 1:
            raise NodeCallError(
                Status.FAILED_PRECONDITION,
                "upgrade: this node is etcd's only member, which cannot leave its cluster:"
                " use --preserve (keeps etcd and EPHEMERAL)",
            )

    async def _reboot_into(self, shown: str, *, preserve: bool, force: bool) -> None:
        """After the reply: leave etcd and wipe EPHEMERAL unless ``preserve``, then reboot."""
        node = self._node
        await asyncio.sleep(0.2)  # the reply goes out first
        if not preserve and self._etcd.running():
            try:
                await self._etcd.leave()
            except TalosError as exc:
                node.console.log(f"upgrade: cannot leave etcd: {exc.message}")
                if not force:
                    node.console.log(f"upgrade: not rebooting; {shown} boots at the next reboot")
                    return
        if not preserve:
            await node.supervisor.stop_all()
            node.console.log("upgrade: wiping EPHEMERAL (no --preserve)")
            node.wipe({"EPHEMERAL"})
        node.console.log(f"upgrade: rebooting into {shown}")
        node.reboot()

    async def rollback(self) -> None:
        from talos_init import bootloader
        from talos_init.disks import DiskError

        self._installed_only("rollback")
        node = self._node
        try:
            await bootloader.rollback(node.console, node.reaper, node.options.cmdline)
        except DiskError as exc:
            raise NodeCallError(Status.FAILED_PRECONDITION, exc.message) from None
        node.reboot()

    def spool_path(self, name: str) -> Path:
        self._installed_only("upgrade")
        return self._node.ephemeral_dir() / name

    def boot_status(self) -> BootInfo | None:
        status = self._node.boot_status
        if status is None:
            return None
        return BootInfo(
            slot=status.slot,
            other=status.other,
            other_version=status.other_version,
            rolled_back_from=status.rolled_back_from,
            trial=status.trial,
        )

    # -- services -------------------------------------------------------------------------

    def services(self) -> list[ServiceStatus]:
        out = []
        for svc in self._node.supervisor.services.values():
            events = [ServiceEvent(e.message, str(e.state), _ts(e.timestamp)) for e in svc.events]
            out.append(
                ServiceStatus(
                    id=svc.spec.id,
                    state=str(svc.state),
                    healthy=svc.healthy if svc.spec.health is not None else svc.up or None,
                    last_message=events[-1].message if events else "",
                    last_change=events[-1].ts if events else None,
                    events=events,
                )
            )
        kubelet = self._kubelet_skipped()
        if kubelet is not None:
            out.append(kubelet)
        return out

    def _kubelet_skipped(self) -> ServiceStatus | None:
        if self._node.config is None or shutil.which("kubelet") is not None:
            return None
        now = dt.datetime.now(dt.UTC)
        return ServiceStatus(
            id="kubelet",
            state=str(State.SKIPPED),
            healthy=None,
            last_message=NO_KUBELET,
            last_change=now,
            events=[ServiceEvent(NO_KUBELET, str(State.SKIPPED), now)],
        )

    async def service_action(self, service_id: str, action: str) -> str:
        sup = self._node.supervisor
        if service_id == "kubelet" and self._kubelet_skipped() is not None:
            raise NodeCallError(Status.FAILED_PRECONDITION, NO_KUBELET)
        try:
            if action == "start":
                sup.start(service_id)
                return f"Service {service_id!r} started"
            if action == "stop":
                await sup.stop(service_id)
                return f"Service {service_id!r} stopped"
            if action == "restart":
                await sup.restart(service_id)
                return f"Service {service_id!r} restarted"
        except UnknownServiceError:
            raise NodeCallError(Status.NOT_FOUND, f"service {service_id!r} not found") from None
        raise NodeCallError(Status.INVALID_ARGUMENT, f"unknown service action {action!r}")

    async def logs(self, service_id: str, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        node = self._node
        if service_id == "machined":
            ring = node.console.ring
        else:
            try:
                ring = node.supervisor.log(service_id)
            except UnknownServiceError:
                raise NodeCallError(Status.NOT_FOUND, f"service {service_id!r} not found") from None
        if not follow:
            for line in ring.lines(tail):
                yield (line + "\n").encode()
            return
        start = len(ring.lines()) if tail is None else tail
        async for line in ring.follow(start):
            yield (line + "\n").encode()

    # -- etcd -----------------------------------------------------------------------------

    async def etcd_members(self) -> list[EtcdMember]:
        config = self._node.config
        if config is not None and config.model.machine.is_worker():
            raise NodeCallError(Status.FAILED_PRECONDITION, "etcd does not run on workers")
        if not self._etcd.running():
            raise NodeCallError(
                Status.FAILED_PRECONDITION, "etcd is not running on this node (bootstrap first)"
            )
        try:
            members = await self._etcd.members()
        except TalosError as exc:
            raise NodeCallError(Status.UNAVAILABLE, exc.message) from None
        return [_member(m) for m in members]

    def _etcd_member_node(self) -> None:
        """This node runs etcd; FAILED_PRECONDITION otherwise."""
        config = self._node.config
        if config is not None and config.model.machine.is_worker():
            raise NodeCallError(Status.FAILED_PRECONDITION, "etcd does not run on workers")
        if not self._etcd.running():
            raise NodeCallError(
                Status.FAILED_PRECONDITION, "etcd is not running on this node (bootstrap first)"
            )

    async def _etcd_call(self, call: Callable[[], Awaitable[T]]) -> T:
        self._etcd_member_node()
        try:
            return await call()
        except EtcdRefusedError as exc:
            raise NodeCallError(Status(exc.status), exc.message) from None
        except TalosError as exc:
            raise NodeCallError(Status.UNAVAILABLE, exc.message) from None

    async def etcd_leave(self) -> None:
        """EtcdLeaveCluster: this member leaves; etcd stops and its data is removed."""
        await self._etcd_call(self._etcd.leave_cluster)

    async def etcd_remove_member(self, name: str) -> None:
        await self._etcd_call(lambda: self._etcd.remove_member(name))

    async def etcd_forfeit_leadership(self) -> str:
        """The member that leads now ("" when this node was not the leader)."""
        return await self._etcd_call(self._etcd.forfeit_leadership)

    # -- files ----------------------------------------------------------------------------

    def file_access(self) -> FileAccess | None:
        """The node's root for the file methods: ``/`` once it is the node's own (a container
        node that built its root, or metal), else None (a ``--no-isolate`` node shares the
        host's)."""
        node = self._node
        if node.mode == "metal":
            return FileAccess("/", node.console.log)
        if node.system_dir() == Path("/system"):
            from talos_init.mounts import NODE_OWNED

            shared = frozenset(name for name in os.listdir("/") if name not in NODE_OWNED)
            return FileAccess("/", node.console.log, shared)
        return None


def _member(m: dict[str, Any]) -> EtcdMember:
    return EtcdMember(
        id=int(m.get("ID", 0)),
        hostname=str(m.get("name", "")),
        peer_urls=list(m.get("peerURLs", [])),
        client_urls=list(m.get("clientURLs", [])),
        is_learner=bool(m.get("isLearner", False)),
    )
