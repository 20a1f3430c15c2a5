# ruff: noqa: N802 - handler names are the proto's method names (the generated base class)
"""``machine.MachineService``: gRPC calls into the :class:`~talos_init.api.node.ApiBackend`.

Maintenance mode serves only ApplyConfiguration, GenerateConfiguration and Version and answers
every other method UNIMPLEMENTED. Configured mode serves the methods implemented here; the rest
of v0.9.3's methods (grouped at the end of the class) answer UNIMPLEMENTED in either mode.
Applies are serialized by one lock; a config is parsed and validated before the node sees it.

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
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf import timestamp_pb2
from grpclib import GRPCError
from grpclib.const import Handler
from grpclib.const import Status as GrpcStatus
from grpclib.server import Stream

from libtalos.api import common_pb2, machine_pb2
from libtalos.api._gen.machine import machine_grpc
from libtalos.api.wire import kubeconfig_archive
from libtalos.errors import DocumentError, TalosError
from talos_init.api.node import ApiBackend, ApplyMode, NodeCallError
from talos_init.events import EventsOverrunError

MAX_CONFIG_BYTES = 4 << 20  # a machine config is a few KiB; refuse anything absurd
MAX_CONFIG_NODES = 20_000  # a generated config has about 300; each costs ~0.5 KiB once built
LOAD_BUDGET = 30.0  # seconds for parsing and validating one config in the worker
MAX_REPORTED = 20  # problems (and warnings) named in one reply; the rest are counted
MAX_MESSAGE_BYTES = 4096  # UTF-8 bytes of an error message
DEFAULT_TRY_TIMEOUT = dt.timedelta(minutes=1)
# GenerateConfiguration: the interactive installer asks a node in maintenance mode for its config
MAINTENANCE_METHODS = ("ApplyConfiguration", "GenerateConfiguration", "Version")
# Containers and Stats: Talos's containerd sockets and namespaces (constants.go)
SYSTEM_NAMESPACE = "system"
K8S_NAMESPACE = "k8s.io"
SYSTEM_CONTAINERD_SOCKET = "/system/run/containerd/containerd.sock"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
NO_RUNTIME = "no container runtime on this node"
NAMESPACE_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,74}[A-Za-z0-9])?")  # containerd's
_Req = machine_pb2.ApplyConfigurationRequest


def _model() -> Any:
    """libtalos's config model, loaded at the first call that reads a config: the maintenance
    banner does not wait for its import (a few hundred ms under emulation)."""
    from libtalos import config

    return config


def _wire_mode(mode: ApplyMode) -> Any:
    return getattr(_Req, mode.name)


def _unimplemented(name: str) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
    async def handler(stream: Stream[Any, Any]) -> None:
        raise GRPCError(
            GrpcStatus.UNIMPLEMENTED,
            f"{name.rsplit('/', 1)[-1]} is not available in maintenance mode",
        )

    return handler


def maintenance_mapping(
    mapping: dict[str, Any], service: str, methods: tuple[str, ...]
) -> dict[str, Any]:
    """``mapping`` of the gRPC ``service`` with every method outside ``methods`` answering
    UNIMPLEMENTED: maintenance mode serves only those (each service names its own)."""
    # Methods outside the maintenance set stay routed, to a handler that answers
    # UNIMPLEMENTED with a full gRPC response (grpclib's own "method not found" reply
    # lacks content-type, which grpclib clients then misreport as UNKNOWN).
    keep = {f"/{service}/{m}" for m in methods}
    return {k: v if k in keep else Handler(_unimplemented(k), *v[1:]) for k, v in mapping.items()}


def not_implemented(name: str) -> GRPCError:
    """The answer of a method this node does not serve (yet)."""
    return GRPCError(GrpcStatus.UNIMPLEMENTED, f"{name} is not implemented on this node")


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


MAX_MEMBER_NAME = 253  # an etcd member is named after its node's hostname (a DNS name)


def _member_name(name: str) -> str:
    """An etcd member name from a request; INVALID_ARGUMENT when it cannot be one."""
    if not name:
        raise _fail(GrpcStatus.INVALID_ARGUMENT, "member: the name is empty")
    if len(name) > MAX_MEMBER_NAME:
        raise _fail(
            GrpcStatus.INVALID_ARGUMENT,
            f"member: the name is {len(name)} characters long; the limit is {MAX_MEMBER_NAME}",
        )
    if not name.isprintable():
        raise _fail(GrpcStatus.INVALID_ARGUMENT, f"member {name!r}: control characters")
    if name.startswith(".") or not all(c.isascii() and (c.isalnum() or c in "._-") for c in name):
        # members are named by their nodes' hostnames
        raise _fail(GrpcStatus.INVALID_ARGUMENT, f"member {name!r} is not a hostname")
    return name


MAX_SERVICE_ID = 128  # characters of a service id in a request


def _service_id(value: str) -> str:
    """A service id from a request; INVALID_ARGUMENT, naming it, when it cannot be one (ids are
    names such as ``etcd``, ``kubelet`` or ``ext-NAME``: letters, digits, ``.``, ``_``, ``-``)."""
    if not value:
        raise _fail(GrpcStatus.INVALID_ARGUMENT, "service id is empty")
    if len(value) > MAX_SERVICE_ID:
        raise _fail(
            GrpcStatus.INVALID_ARGUMENT,
            f"service id is {len(value)} characters long; the limit is {MAX_SERVICE_ID}",
        )
    if value.startswith(".") or not all(c.isascii() and (c.isalnum() or c in "._-") for c in value):
        raise _fail(GrpcStatus.INVALID_ARGUMENT, f"service id {value!r} is not a service name")
    return value


def _client_name(stream: Any) -> str:
    """The caller as its certificate names it (its common name, else its serial number), for
    the node's log."""
    peer = getattr(stream, "peer", None)
    try:
        cert = peer.cert() if peer is not None else None
    except Exception:  # noqa: BLE001 - a peer without TLS details is simply unnamed
        cert = None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and value:
                return f"client {value!r}"
    serial = (cert or {}).get("serialNumber")
    return f"the client with certificate serial {serial}" if serial else "an unnamed client"


class MachineService(machine_grpc.MachineServiceBase):
    def __init__(self, node: ApiBackend, *, maintenance: bool) -> None:
        self.node = node
        self.maintenance = maintenance
        self.apply_lock = asyncio.Lock()
        self.load_slot = asyncio.Lock()  # one config parsed at a time, in the worker

    def __mapping__(self) -> dict[str, Any]:
        mapping = super().__mapping__()
        if self.maintenance:
            mapping = maintenance_mapping(mapping, "machine.MachineService", MAINTENANCE_METHODS)
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
            loaded = _model().load(text, "config", max_nodes=MAX_CONFIG_NODES)
            result = _model().validate(loaded.config, self.node.platform_mode)
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
        current = _model().load(current_text, "running config").config
        if (current.machine.ca and new.machine.ca) and current.machine.ca.crt != new.machine.ca.crt:
            raise _fail(
                GrpcStatus.FAILED_PRECONDITION,
                "the config belongs to another cluster (machine.ca differs from the node's)",
            )
        old_data = _model().to_data(current)
        new_data = _model().to_data(new)
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
        from talos_init import imageinfo

        await stream.recv_message()
        v = imageinfo.overlay(self.node.version())  # a node booted from the image names it
        msg = machine_pb2.Version(
            version=machine_pb2.VersionInfo(
                tag=v.tag, sha=v.sha, built=v.built, go_version=v.runtime, os=v.os, arch=v.arch
            ),
            platform=machine_pb2.PlatformInfo(
                name=v.platform, mode="maintenance" if self.maintenance else v.platform_mode
            ),
            features=machine_pb2.FeaturesInfo(rbac=False),
        )
        boot = None if self.maintenance else self.node.boot_status()
        if boot is not None:
            msg.boot.CopyFrom(
                machine_pb2.BootInfo(
                    slot=boot.slot,
                    rolled_back_from=boot.rolled_back_from,
                    other_slot=boot.other,
                    other_version=boot.other_version,
                    trial=boot.trial,
                )
            )
        await stream.send_message(machine_pb2.VersionResponse(messages=[msg]))

    # ------------------------------------------------------------ lifecycle

    def _on_worker(self) -> bool:
        """The running config makes the node a worker (libtalos's ``Machine.is_worker``)."""
        text = self.node.config_text()
        if text is None:
            return False
        current = _model().load(text, "running config").config
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

                data = admin_kubeconfig(_model().load(text, "running config").config)
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
        sid = _service_id(req.id)
        resp = await _guard(lambda: self.node.service_action(sid, action))
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
        sid = _service_id(req.id)
        if req.tail_lines < -1:
            raise _fail(GrpcStatus.INVALID_ARGUMENT, "tail_lines must be -1 (all) or more")
        tail = None if req.tail_lines < 0 else req.tail_lines  # -1: all (talosctl's default)
        try:
            async for chunk in self.node.logs(sid, req.follow, tail):
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

    # ------------------------------------------------------------ system views
    # /proc as the node sees it (talos_init.api.stats; docs/talos-facts.md#system-views)

    async def _proc(self, stream: Stream[Any, Any], what: str, read: Callable[[], Any]) -> Any:
        await stream.recv_message()
        try:
            return await asyncio.to_thread(read)
        except OSError as exc:
            raise _fail(GrpcStatus.UNAVAILABLE, f"{what}: {exc.strerror or exc}") from None
        except (ValueError, IndexError):
            raise _fail(GrpcStatus.INTERNAL, f"{what}: unexpected contents") from None

    async def LoadAvg(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.stats import loadavg

        values = await self._proc(stream, "/proc/loadavg", loadavg)
        await stream.send_message(
            machine_pb2.LoadAvgResponse(messages=[machine_pb2.LoadAvg(**values)])
        )

    async def SystemStat(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.stats import system_stat

        values = await self._proc(stream, "/proc/stat", system_stat)
        msg = machine_pb2.SystemStat(
            **{k: v for k, v in values.items() if k not in ("cpu_total", "cpu", "soft_irq")}
        )
        if "cpu_total" in values:
            msg.cpu_total.CopyFrom(machine_pb2.CPUStat(**values["cpu_total"]))
        msg.cpu.extend(machine_pb2.CPUStat(**c) for c in values["cpu"])
        if "soft_irq" in values:
            msg.soft_irq.CopyFrom(machine_pb2.SoftIRQStat(**values["soft_irq"]))
        await stream.send_message(machine_pb2.SystemStatResponse(messages=[msg]))

    async def CPUInfo(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.stats import cpu_info

        blocks = await self._proc(stream, "/proc/cpuinfo", cpu_info)
        msg = machine_pb2.CPUsInfo(cpu_info=[machine_pb2.CPUInfo(**b) for b in blocks])
        await stream.send_message(machine_pb2.CPUInfoResponse(messages=[msg]))

    async def NetworkDeviceStats(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.stats import net_dev

        total, rows = await self._proc(stream, "/proc/net/dev", net_dev)
        msg = machine_pb2.NetworkDeviceStats(
            total=machine_pb2.NetDev(**total), devices=[machine_pb2.NetDev(**r) for r in rows]
        )
        await stream.send_message(machine_pb2.NetworkDeviceStatsResponse(messages=[msg]))

    async def DiskStats(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.stats import disk_stats

        total, rows = await self._proc(stream, "/proc/diskstats", disk_stats)
        msg = machine_pb2.DiskStats(
            total=machine_pb2.DiskStat(**total), devices=[machine_pb2.DiskStat(**r) for r in rows]
        )
        await stream.send_message(machine_pb2.DiskStatsResponse(messages=[msg]))

    # ------------------------------------------------------------ containers
    # No container runtime runs on these nodes (docs/talos-facts.md#system-views).

    async def _containers(self, stream: Stream[Any, Any]) -> None:
        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        if not NAMESPACE_RE.fullmatch(req.namespace):
            shown = req.namespace[:80] + ("..." if len(req.namespace) > 80 else "")
            raise _fail(
                GrpcStatus.INVALID_ARGUMENT,
                f"namespace {shown!r} is not a containerd namespace name",
            )
        if req.driver not in (common_pb2.CONTAINERD, common_pb2.CRI):
            raise _fail(GrpcStatus.INVALID_ARGUMENT, f"unsupported driver {req.driver}")
        if req.driver == common_pb2.CRI and req.namespace != K8S_NAMESPACE:
            raise _fail(
                GrpcStatus.INVALID_ARGUMENT,
                f"driver CRI is supported only for namespace {K8S_NAMESPACE}",
            )
        socket_path = (
            SYSTEM_CONTAINERD_SOCKET if req.namespace == SYSTEM_NAMESPACE else CONTAINERD_SOCKET
        )
        if not os.path.exists(socket_path):
            raise _fail(GrpcStatus.FAILED_PRECONDITION, NO_RUNTIME)
        raise _fail(
            GrpcStatus.UNIMPLEMENTED,
            f"a container runtime listens on {socket_path}, but this node cannot inspect it",
        )

    async def Containers(self, stream: Stream[Any, Any]) -> None:
        await self._containers(stream)

    async def Stats(self, stream: Stream[Any, Any]) -> None:
        await self._containers(stream)

    # ------------------------------------------------------------ events

    async def Events(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.eventwire import event_message, parse_request

        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        ring = getattr(self.node, "event_ring", None)
        if ring is None:
            raise _fail(GrpcStatus.UNIMPLEMENTED, "this node keeps no runtime events")
        try:
            options = parse_request(req.tail_events, req.tail_id, req.tail_seconds)
        except ValueError as exc:
            raise _fail(GrpcStatus.INVALID_ARGUMENT, str(exc)) from None
        try:
            async for event in ring.watch(*options):
                await stream.send_message(event_message(event))
        except EventsOverrunError as exc:
            raise _fail(GrpcStatus.RESOURCE_EXHAUSTED, f"events: {exc}") from None

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

    async def EtcdLeaveCluster(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await _guard(self._etcd("etcd_leave"))
        reply = machine_pb2.EtcdLeaveClusterResponse(messages=[machine_pb2.EtcdLeaveCluster()])
        await stream.send_message(reply)

    async def EtcdRemoveMember(self, stream: Stream[Any, Any]) -> None:
        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        member = _member_name(req.member)
        await _guard(lambda: self._etcd("etcd_remove_member")(member))
        await stream.send_message(
            machine_pb2.EtcdRemoveMemberResponse(messages=[machine_pb2.EtcdRemoveMember()])
        )

    async def EtcdForfeitLeadership(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        leader = await _guard(self._etcd("etcd_forfeit_leadership"))
        msg = machine_pb2.EtcdForfeitLeadership(member=leader)
        await stream.send_message(machine_pb2.EtcdForfeitLeadershipResponse(messages=[msg]))

    def _etcd(self, name: str) -> Callable[..., Awaitable[Any]]:
        call = getattr(self.node, name, None)
        if call is None:
            raise _fail(GrpcStatus.UNIMPLEMENTED, f"{name} is not available on this node")
        return call  # type: ignore[no-any-return]

    # ------------------------------------------------------------ files and mounts

    def _files(self) -> Any:
        """The node's :class:`~talos_init.api.files.FileAccess`, or FAILED_PRECONDITION."""
        own = getattr(self.node, "file_access", None)
        access = own() if own is not None else None
        if access is None:
            raise _fail(
                GrpcStatus.FAILED_PRECONDITION,
                "files are served only by a node with its own root "
                "(container mode with --isolate, or metal)",
            )
        return access

    async def _send_all(self, stream: Stream[Any, Any], items: Any, make: Any) -> None:
        from talos_init.api.files import pull

        try:
            async for item in pull(items):
                await stream.send_message(make(item))
        except NodeCallError as exc:
            raise _fail(GrpcStatus(int(exc.status)), exc.message) from None

    async def List(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.files import list_entries

        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        access = self._files()
        depth = req.recursion_depth
        if depth < 0:
            raise _fail(GrpcStatus.INVALID_ARGUMENT, "recursion_depth must be 0 or more")
        entries = list_entries(access, req.root, req.recurse, depth, set(req.types))
        await self._send_all(stream, entries, lambda e: machine_pb2.FileInfo(**e))

    async def DiskUsage(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.files import disk_usage

        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        access = self._files()
        entries = disk_usage(access, list(req.paths), req.recursion_depth, req.all, req.threshold)
        await self._send_all(stream, entries, lambda e: machine_pb2.DiskUsageInfo(**e))

    async def Read(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.files import read_chunks

        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        chunks = read_chunks(self._files(), req.path, _client_name(stream))
        await self._send_all(stream, chunks, lambda b: common_pb2.Data(bytes=b))

    async def Copy(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.files import tar_chunks

        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        skipped: list[str] = []
        chunks = tar_chunks(self._files(), req.root_path, skipped)
        await self._send_all(stream, chunks, lambda b: common_pb2.Data(bytes=b))
        if skipped:  # as Talos: one last frame naming what was left out
            text = bounded("\n".join(_first(skipped, "file")))
            await stream.send_message(common_pb2.Data(metadata=common_pb2.Metadata(error=text)))

    async def Mounts(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.files import mounts

        await stream.recv_message()
        access = self._files()
        try:
            found = await asyncio.to_thread(mounts, access)
        except OSError as exc:
            raise _fail(GrpcStatus.UNAVAILABLE, f"/proc/self/mounts: {exc.strerror}") from None
        stats = [machine_pb2.MountStat(**vars(m)) for m in found]
        await stream.send_message(
            machine_pb2.MountsResponse(messages=[machine_pb2.Mounts(stats=stats)])
        )

    async def Hostname(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        msg = machine_pb2.Hostname(hostname=self.node.hostname)
        await stream.send_message(machine_pb2.HostnameResponse(messages=[msg]))

    # ------------------------------------------------------------ GenerateConfiguration

    async def GenerateConfiguration(self, stream: Stream[Any, Any]) -> None:
        from talos_init.api.genconfig import generate_configuration

        req = await stream.recv_message()
        assert req is not None  # noqa: S101 - grpclib delivers the unary request
        reply = await asyncio.to_thread(
            generate_configuration,
            req,
            maintenance=self.maintenance,
            running_config=None if self.maintenance else self.node.config_text(),
            platform_mode=self.node.platform_mode,
        )
        await stream.send_message(reply)

    # ------------------------------------------------------------ not served (yet)

    async def Recover(self, stream: Stream[Any, Any]) -> None:
        raise not_implemented("Recover")

    async def RemoveBootkubeInitializedKey(self, stream: Stream[Any, Any]) -> None:
        raise not_implemented("RemoveBootkubeInitializedKey")

    async def Restart(self, stream: Stream[Any, Any]) -> None:
        raise not_implemented("Restart")

    async def Rollback(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await _guard(self.node.rollback)
        await stream.send_message(machine_pb2.RollbackResponse(messages=[machine_pb2.Rollback()]))

    async def Upgrade(self, stream: Stream[Any, Any]) -> None:
        from talos_init.bootloader import bundle_source

        req = await stream.recv_message()
        assert req is not None  # noqa: S101
        image = bounded(req.image, 512)
        if not req.image:
            raise _fail(
                GrpcStatus.INVALID_ARGUMENT,
                "image: the installer bundle to upgrade to is required (an http(s) URL or a"
                " path on the node)",
            )
        source = bundle_source(req.image)
        if source is None:
            raise _fail(
                GrpcStatus.INVALID_ARGUMENT,
                f"image {image!r}: not an http(s) URL or a path of an installer bundle (nodes"
                " pull no container images; talosctl upgrade --image FILE streams a local file)",
            )
        ack = await _guard(
            lambda: self.node.upgrade(
                source, f"image {image}", preserve=req.preserve, stage=req.stage, force=req.force
            )
        )
        await stream.send_message(
            machine_pb2.UpgradeResponse(messages=[machine_pb2.Upgrade(ack=ack)])
        )
