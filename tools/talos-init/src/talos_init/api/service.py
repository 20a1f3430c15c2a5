# ruff: noqa: N802 - handler names are the proto's method names (the generated base class)
"""``machine.MachineService``: gRPC calls into the :class:`~talos_init.api.node.ApiBackend`.

Maintenance mode serves only ApplyConfiguration and Version (grpclib answers everything else
with UNIMPLEMENTED, since the other methods are not in the mapping). Configured mode serves all
of them. Applies are serialized by one lock; a config is parsed and validated before the node
sees it.

Hostile input is bounded before it costs anything: request messages over their limit are
refused while they arrive (:mod:`talos_init.api.server`), a config of more than
:data:`MAX_CONFIG_NODES` YAML nodes is refused before it is built, parsing and validation run in
a worker thread (one at a time, within :data:`LOAD_BUDGET`) so that the event loop keeps
answering Version and handling signals, and an error message names at most
:data:`MAX_REPORTED` problems in at most :data:`MAX_MESSAGE_BYTES` (it travels in the
``grpc-message`` trailer).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf import timestamp_pb2
from grpclib import GRPCError
from grpclib.const import Handler
from grpclib.const import Status as GrpcStatus
from grpclib.server import Stream

from libtalos import config as talosconfig_model
from libtalos.api import common_pb2, machine_pb2
from libtalos.api._gen.machine import machine_grpc
from libtalos.api.wire import kubeconfig_archive
from libtalos.errors import DocumentError, TalosError
from talos_init.api.node import ApiBackend, ApplyMode, NodeCallError

MAX_CONFIG_BYTES = 4 << 20  # a machine config is a few KiB; refuse anything absurd
MAX_CONFIG_NODES = 20_000  # a generated config has about 300; each costs ~0.5 KiB once built
LOAD_BUDGET = 30.0  # seconds for parsing and validating one config in the worker
MAX_REPORTED = 20  # problems (and warnings) named in one reply; the rest are counted
MAX_MESSAGE_BYTES = 4096  # UTF-8 bytes of an error message
DEFAULT_TRY_TIMEOUT = dt.timedelta(minutes=1)
MAINTENANCE_METHODS = ("ApplyConfiguration", "Version")
_Req = machine_pb2.ApplyConfigurationRequest


def _wire_mode(mode: ApplyMode) -> Any:
    return getattr(_Req, mode.name)


def _unimplemented(name: str) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
    async def handler(stream: Stream[Any, Any]) -> None:
        raise GRPCError(
            GrpcStatus.UNIMPLEMENTED,
            f"{name.rsplit('/', 1)[-1]} is not available in maintenance mode",
        )

    return handler


def bounded(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``message`` cut to ``limit`` UTF-8 bytes at a line (or character) boundary, saying so."""
    data = message.encode("utf-8")
    if len(data) <= limit:
        return message
    note = f"\n... (message cut at {limit} of {len(data)} bytes)"
    cut = data[: limit - len(note.encode())].decode("utf-8", errors="ignore")
    if "\n" in cut:
        cut = cut[: cut.rindex("\n")]
    return cut + note


def _first(items: list[str], what: str) -> list[str]:
    """The first :data:`MAX_REPORTED` of ``items`` and a line counting the rest."""
    if len(items) <= MAX_REPORTED:
        return items
    more = len(items) - MAX_REPORTED
    return [*items[:MAX_REPORTED], f"... and {more} more {what}{'s' if more != 1 else ''}"]


def document_message(exc: DocumentError) -> str:
    """What a refusal says: the count, the first problems and how many more there are."""
    lines = [p.render() for p in exc.problems]
    if len(lines) <= 1:
        return exc.message
    return "\n".join([f"{len(lines)} problems found", *_first(lines, "problem")])


def _fail(status: GrpcStatus, message: str) -> GRPCError:
    return GRPCError(status, bounded(message))


def _ts(when: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if when is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when.astimezone(dt.UTC))
    return ts


def _diff(old: Any, new: Any, path: str = "") -> list[str]:
    """Key paths where two plain-data trees differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in list(dict.fromkeys([*old, *new])):
            out += _diff(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if old == new else [path or "<document>"]


async def _guard(call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await call()
    except NodeCallError as exc:
        raise _fail(GrpcStatus(int(exc.status)), exc.message) from None


class MachineService(machine_grpc.MachineServiceBase):
    def __init__(self, node: ApiBackend, *, maintenance: bool) -> None:
        self.node = node
        self.maintenance = maintenance
        self.apply_lock = asyncio.Lock()
        self.load_slot = asyncio.Lock()  # one config parsed at a time, in the worker

    def __mapping__(self) -> dict[str, Any]:
        mapping = super().__mapping__()
        if self.maintenance:
            # Methods outside the maintenance set stay routed, to a handler that answers
            # UNIMPLEMENTED with a full gRPC response (grpclib's own "method not found" reply
            # lacks content-type, which grpclib clients then misreport as UNKNOWN).
            keep = {f"/machine.MachineService/{m}" for m in MAINTENANCE_METHODS}
            mapping = {
                k: v if k in keep else Handler(_unimplemented(k), *v[1:])
                for k, v in mapping.items()
            }
        return mapping

    # ------------------------------------------------------------ ApplyConfiguration

    def _requested_mode(self, req: _Req) -> ApplyMode:
        mode = ApplyMode(req.mode) if req.mode in ApplyMode._value2member_map_ else None
        if mode is None:
            raise _fail(GrpcStatus.INVALID_ARGUMENT, f"unknown apply mode {req.mode}")
        legacy = [name for name in ("on_reboot", "immediate") if getattr(req, name)]
        if len(legacy) > 1:
            raise _fail(GrpcStatus.INVALID_ARGUMENT, "on_reboot and immediate exclude each other")
        if legacy:
            # A client may send the v0.9 flag and its v1.x mode together (so that servers of
            # either generation understand it); any other mode contradicts the flag.
            same = ApplyMode.STAGED if legacy[0] == "on_reboot" else ApplyMode.NO_REBOOT
            if mode not in (ApplyMode.REBOOT, same):
                raise _fail(
                    GrpcStatus.INVALID_ARGUMENT,
                    f"{legacy[0]} (v0.9) contradicts mode {mode.name.lower()}",
                )
            mode = same
        if self.maintenance and mode not in (ApplyMode.REBOOT, ApplyMode.AUTO, ApplyMode.TRY):
            what = "on_reboot" if req.on_reboot else f"mode {mode.name.lower()}"
            raise _fail(GrpcStatus.INVALID_ARGUMENT, f"{what} is not supported in maintenance mode")
        return mode

    def _load(self, data: bytes) -> tuple[str, Any, list[str]]:
        if len(data) > MAX_CONFIG_BYTES:
            raise _fail(
                GrpcStatus.INVALID_ARGUMENT,
                f"config is {len(data)} bytes; the limit is {MAX_CONFIG_BYTES}",
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(GrpcStatus.INVALID_ARGUMENT, "config is not UTF-8 text") from None
        try:
            loaded = talosconfig_model.load(text, "config", max_nodes=MAX_CONFIG_NODES)
            result = talosconfig_model.validate(loaded.config, self.node.platform_mode)
            result.raise_for_errors()
        except DocumentError as exc:
            raise _fail(GrpcStatus.INVALID_ARGUMENT, document_message(exc)) from None
        except TalosError as exc:
            raise _fail(GrpcStatus.INVALID_ARGUMENT, exc.message) from None
        return text, loaded.config, _first([w.render() for w in result.warnings], "warning")

    async def _load_in_worker(self, data: bytes) -> tuple[str, Any, list[str]]:
        """:meth:`_load` off the event loop. A thread cannot be stopped: past the budget the
        caller is answered, and the slot stays taken until the thread ends."""
        await self.load_slot.acquire()
        work = asyncio.ensure_future(asyncio.to_thread(self._load, data))
        work.add_done_callback(lambda _: self.load_slot.release())
        try:
            return await asyncio.wait_for(asyncio.shield(work), LOAD_BUDGET)
        except TimeoutError:
            work.add_done_callback(lambda done: done.cancelled() or done.exception())
            raise _fail(
                GrpcStatus.INVALID_ARGUMENT,
                f"the config took more than {LOAD_BUDGET:g} s to parse and validate",
            ) from None

    def _resolve(self, mode: ApplyMode, new: Any) -> tuple[ApplyMode, list[str]]:
        """The mode to apply in, given what changed against the running config."""
        if self.maintenance:
            return (ApplyMode.TRY if mode is ApplyMode.TRY else ApplyMode.REBOOT), []
        current_text = self.node.config_text()
        if current_text is None:
            return (ApplyMode.REBOOT if mode is ApplyMode.AUTO else mode), []
        current = talosconfig_model.load(current_text, "running config").config
        if (current.machine.ca and new.machine.ca) and current.machine.ca.crt != new.machine.ca.crt:
            raise _fail(
                GrpcStatus.FAILED_PRECONDITION,
                "the config belongs to another cluster (machine.ca differs from the node's)",
            )
        old_data = talosconfig_model.to_data(current)
        new_data = talosconfig_model.to_data(new)
        old_data.pop("cluster", None)
        new_data.pop("cluster", None)
        changed = _diff(old_data, new_data)
        if mode is ApplyMode.AUTO:
            return (ApplyMode.REBOOT if changed else ApplyMode.NO_REBOOT), changed
        if mode in (ApplyMode.NO_REBOOT, ApplyMode.TRY) and changed:
            raise _fail(
                GrpcStatus.FAILED_PRECONDITION,
                f"mode {mode.name.lower()} applies only changes under `cluster`; "
                "these need a reboot: " + ", ".join(changed),
            )
        return mode, changed

    async def ApplyConfiguration(self, stream: Stream[Any, Any]) -> None:
        req = await stream.recv_message()
        assert req is not None  # noqa: S101 - grpclib delivers the unary request
        mode = self._requested_mode(req)
        text, cfg, warnings = await self._load_in_worker(req.data)
        try_timeout: dt.timedelta | None = None
        if mode is ApplyMode.TRY:
            try_timeout = (
                req.try_mode_timeout.ToTimedelta()
                if req.HasField("try_mode_timeout")
                else DEFAULT_TRY_TIMEOUT
            )
            if try_timeout <= dt.timedelta(0):
                raise _fail(GrpcStatus.INVALID_ARGUMENT, "try_mode_timeout must be positive")
        async with self.apply_lock:
            resolved, changed = self._resolve(mode, cfg)
            reply = machine_pb2.ApplyConfiguration(warnings=warnings)
            reply.mode = _wire_mode(resolved)
            if req.dry_run:
                lines = [f"Dry run summary: the config would be applied in mode {resolved.name}"]
                lines += [f"  changed: {p}" for p in changed] or ["  no changes outside cluster"]
                reply.mode_details = "\n".join(lines)
            else:
                done = await _guard(
                    lambda: self.node.apply_configuration(text, resolved, try_timeout)
                )
                reply.mode = _wire_mode(done.mode)
                reply.mode_details = done.details
        await stream.send_message(machine_pb2.ApplyConfigurationResponse(messages=[reply]))

    # ------------------------------------------------------------ Version

    async def Version(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        v = self.node.version()
        msg = machine_pb2.Version(
            version=machine_pb2.VersionInfo(
                tag=v.tag, sha=v.sha, built=v.built, go_version=v.runtime, os=v.os, arch=v.arch
            ),
            platform=machine_pb2.PlatformInfo(
                name=v.platform, mode="maintenance" if self.maintenance else v.platform_mode
            ),
            features=machine_pb2.FeaturesInfo(rbac=False),
        )
        await stream.send_message(machine_pb2.VersionResponse(messages=[msg]))

    # ------------------------------------------------------------ lifecycle

    def _on_worker(self) -> bool:
        """The running config makes the node a worker (libtalos's ``Machine.is_worker``)."""
        text = self.node.config_text()
        if text is None:
            return False
        current = talosconfig_model.load(text, "running config").config
        return bool(current.machine.is_worker())

    async def Bootstrap(self, stream: Stream[Any, Any]) -> None:
        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        if req.recover_etcd:
            raise _fail(GrpcStatus.UNIMPLEMENTED, "etcd recovery from a snapshot is not supported")
        if self._on_worker():
            raise _fail(GrpcStatus.FAILED_PRECONDITION, "bootstrap is not available on workers")
        if self.node.etcd_data_exists():
            raise _fail(GrpcStatus.ALREADY_EXISTS, "etcd data directory is not empty")
        await _guard(self.node.bootstrap)
        await stream.send_message(machine_pb2.BootstrapResponse(messages=[machine_pb2.Bootstrap()]))

    async def Reboot(self, stream: Stream[Any, Any]) -> None:
        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        await _guard(lambda: self.node.reboot(req.mode == machine_pb2.RebootRequest.POWERCYCLE))
        await stream.send_message(machine_pb2.RebootResponse(messages=[machine_pb2.Reboot()]))

    async def Shutdown(self, stream: Stream[Any, Any]) -> None:
        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        await _guard(lambda: self.node.shutdown(req.force))
        await stream.send_message(machine_pb2.ShutdownResponse(messages=[machine_pb2.Shutdown()]))

    async def Reset(self, stream: Stream[Any, Any]) -> None:
        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        if req.user_disks_to_wipe:
            raise _fail(GrpcStatus.UNIMPLEMENTED, "wiping user disks is not supported")
        labels = [p.label for p in req.system_partitions_to_wipe if p.wipe]
        await _guard(lambda: self.node.reset(req.graceful, req.reboot, labels))
        await stream.send_message(machine_pb2.ResetResponse(messages=[machine_pb2.Reset()]))

    # ------------------------------------------------------------ kubeconfig

    async def Kubeconfig(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        text = self.node.config_text()
        if text is None:
            raise _fail(GrpcStatus.FAILED_PRECONDITION, "the node has no config")
        # A node may render it its own way (talos-init: in a child, so that PID 1 never loads
        # cryptography); otherwise here.
        own = getattr(self.node, "admin_kubeconfig", None)
        try:
            if own is not None:
                data = await own()
            else:
                from talos_init.api.kubeconfig import admin_kubeconfig

                data = admin_kubeconfig(talosconfig_model.load(text, "running config").config)
        except NodeCallError as exc:
            raise _fail(GrpcStatus(int(exc.status)), exc.message) from None
        await stream.send_message(common_pb2.Data(bytes=kubeconfig_archive(data)))

    # ------------------------------------------------------------ services

    async def ServiceList(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        infos = []
        for s in self.node.services():
            health = machine_pb2.ServiceHealth(
                unknown=s.healthy is None,
                healthy=bool(s.healthy),
                last_message=s.last_message,
                last_change=_ts(s.last_change),
            )
            events = machine_pb2.ServiceEvents(
                events=[
                    machine_pb2.ServiceEvent(msg=e.message, state=e.state, ts=_ts(e.ts))
                    for e in s.events
                ]
            )
            infos.append(
                machine_pb2.ServiceInfo(id=s.id, state=s.state, events=events, health=health)
            )
        await stream.send_message(
            machine_pb2.ServiceListResponse(messages=[machine_pb2.ServiceList(services=infos)])
        )

    async def _service(self, stream: Stream[Any, Any], action: str, reply: Any, item: Any) -> None:
        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        if not req.id:
            raise _fail(GrpcStatus.INVALID_ARGUMENT, "service id is empty")
        resp = await _guard(lambda: self.node.service_action(req.id, action))
        await stream.send_message(reply(messages=[item(resp=resp)]))

    async def ServiceStart(self, stream: Stream[Any, Any]) -> None:
        await self._service(
            stream, "start", machine_pb2.ServiceStartResponse, machine_pb2.ServiceStart
        )

    async def ServiceStop(self, stream: Stream[Any, Any]) -> None:
        await self._service(
            stream, "stop", machine_pb2.ServiceStopResponse, machine_pb2.ServiceStop
        )

    async def ServiceRestart(self, stream: Stream[Any, Any]) -> None:
        await self._service(
            stream, "restart", machine_pb2.ServiceRestartResponse, machine_pb2.ServiceRestart
        )

    async def Logs(self, stream: Stream[Any, Any]) -> None:
        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        if req.tail_lines < -1:
            raise _fail(GrpcStatus.INVALID_ARGUMENT, "tail_lines must be -1 (all) or more")
        tail = None if req.tail_lines < 0 else req.tail_lines  # -1: all (talosctl's default)
        try:
            async for chunk in self.node.logs(req.id, req.follow, tail):
                await stream.send_message(common_pb2.Data(bytes=chunk))
        except NodeCallError as exc:
            raise _fail(GrpcStatus(int(exc.status)), exc.message) from None

    # ------------------------------------------------------------ node inspection

    async def Dmesg(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.inspect import kernel_log

        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        try:
            records = kernel_log(req.follow, req.tail)
            async for line in records:
                await stream.send_message(common_pb2.Data(bytes=line.encode()))
        except OSError as exc:
            raise _fail(GrpcStatus.UNAVAILABLE, f"kernel log: {exc.strerror}") from None

    async def Memory(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.inspect import meminfo

        await stream.recv_message()
        try:
            values = meminfo()
        except OSError as exc:
            raise _fail(GrpcStatus.UNAVAILABLE, f"/proc/meminfo: {exc.strerror}") from None
        fields = machine_pb2.MemInfo.DESCRIPTOR.fields_by_name
        info = machine_pb2.MemInfo(**{k: v for k, v in values.items() if k in fields})
        await stream.send_message(
            machine_pb2.MemoryResponse(messages=[machine_pb2.Memory(meminfo=info)])
        )

    async def Processes(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.inspect import processes

        await stream.recv_message()
        procs = await asyncio.to_thread(processes)
        infos = [machine_pb2.ProcessInfo(**vars(p)) for p in procs]
        await stream.send_message(
            machine_pb2.ProcessesResponse(messages=[machine_pb2.Process(processes=infos)])
        )

    # ------------------------------------------------------------ etcd

    async def EtcdMemberList(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        members = await _guard(self.node.etcd_members)
        msg = machine_pb2.EtcdMembers(
            legacy_members=[m.hostname for m in members],
            members=[
                machine_pb2.EtcdMember(
                    id=m.id,
                    hostname=m.hostname,
                    peer_urls=m.peer_urls,
                    client_urls=m.client_urls,
                    is_learner=m.is_learner,
                )
                for m in members
            ],
        )
        await stream.send_message(machine_pb2.EtcdMemberListResponse(messages=[msg]))
