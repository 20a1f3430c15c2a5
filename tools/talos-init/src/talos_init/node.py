"""The node: boot sequences, config, maintenance, and the way it ends.

:class:`Node` knows nothing of the machine API. Whatever serves one (for talos-init,
:mod:`talos_init.api.lifecycle`, attached by :func:`talos_init.wiring.make_node`) is its
:attr:`Node.hooks`, a :class:`NodeHooks` that the node calls at four points of its life.

What a layer above the node may use (the API's backend, the etcd manager):

- ``config`` (the running :class:`~talos_init.configsource.NodeConfig`, None in maintenance),
  :meth:`Node.use_config` (run with another config without a reboot), :meth:`Node.persist_config`
  (saved to STATE for the next boot), :meth:`Node.parse_config`, :meth:`Node.apply_configuration`
  (maintenance mode: the config the node waits for);
- :meth:`Node.hostname`, :attr:`Node.mode`, :meth:`Node.system_dir`, :meth:`Node.ephemeral_dir`;
- ``console`` (the node's log and its ring), ``reaper`` (the one owner of ``wait()``),
  ``supervisor`` (services);
- :meth:`Node.reboot`, :meth:`Node.shutdown`, :meth:`Node.wipe` (reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from libtalos.errors import DocumentError, Problem, TalosError
from libtalos.fsutil import atomic_write
from talos_init import configsource, mounts
from talos_init.configsource import NodeConfig
from talos_init.events import EventRing
from talos_init.logring import Console
from talos_init.reaper import Reaper
from talos_init.sequencer import Phase, Sequencer, TaskFailedError
from talos_init.services import ServiceSpec
from talos_init.shutdown import NodeExit, bounded_sync, metal_fatal, signal_exit
from talos_init.sigloop import SignalLoop
from talos_init.supervisor import Supervisor

if TYPE_CHECKING:
    from talos_init.bootloader import BootStatus
    from talos_init.disks import SystemDisk

MAINTENANCE_POLL = 0.2  # seconds between looks for a dropped config file
BOOT_TIMEOUT = 15 * 60.0  # Talos's BootTimeout for startEverything
BOOT_CANCEL_BOUND = 5.0  # seconds a cancelled boot sequence gets to unwind
MARK_ETCD_WAIT = 10 * 60.0  # seconds a control plane on trial waits for etcd before giving up
MARK_ETCD_APPEAR = 30.0  # seconds after which a control plane with no etcd service is marked
CONTROL_PLANES = ("init", "controlplane")
ETCD_SERVICE = "etcd"  # talos_init.etcd.SERVICE_ID, not imported: PID 1 keeps its imports few

# docs/talos-facts.md#kernel-parameters: enforced kernel parameters and the KSPP sysctls written at
# boot.
REQUIRED_KERNEL_PARAMS = {"slab_nomerge": "", "pti": "on"}
PLATFORMS = (
    "aws",
    "azure",
    "container",
    "digital-ocean",
    "gcp",
    "metal",
    "openstack",
    "packet",
    "vmware",
)
KSPP_SYSCTLS = {
    "kernel.kptr_restrict": "1",
    "kernel.dmesg_restrict": "1",
    "kernel.perf_event_paranoid": "3",
    "kernel.yama.ptrace_scope": "1",
    "user.max_user_namespaces": "0",
    "kernel.unprivileged_bpf_disabled": "1",
    "net.core.bpf_jit_harden": "2",
}


class BootError(TalosError):
    """A boot task cannot complete (the message names what is missing)."""


@dataclass
class NodeOptions:
    mode: str  # "container" or "metal"
    state_dir: Path
    cmdline: dict[str, str] = field(default_factory=dict)
    config_source: str | None = None  # URL (talos.config= or --config)
    config_text: tuple[str, str] | None = None  # (text, source) read before the root switch
    services: list[ServiceSpec] = field(default_factory=list)
    service_problems: list[Problem] = field(default_factory=list)
    isolate: bool = True  # container mode: build the read-only root in a mount namespace
    reap_orphans: bool = True
    echo_services: bool = False
    manage_network: bool = False  # container mode: the node owns its network namespace
    fetch_timeout: float = configsource.FETCH_TIMEOUT
    api_port: int | None = None  # the machine API (talos_init.api.lifecycle); None: off
    cert_ttl: float | None = None  # seconds; the API certificate's lifetime (None: 24 h)
    cert_check: float = 3600.0  # seconds between certificate renewal checks


@dataclass(frozen=True)
class Request:
    kind: str  # "shutdown", "reboot", "fatal"
    code: int


class NodeHooks(Protocol):
    """What serves the node from outside (the machine API), called on the node's loop."""

    async def enter_maintenance(self) -> None:
        """No config yet: the node waits for one (maintenance mode starts)."""
        ...

    async def leave_maintenance(self) -> None:
        """A config was taken (or the wait was cancelled): maintenance mode ends."""
        ...

    def configured(self) -> None:
        """A config is loaded and the services are about to start (must not block)."""
        ...

    async def stop(self) -> None:
        """The services have stopped: the node reboots or stops."""
        ...


class Node:
    def __init__(self, options: NodeOptions, console: Console, mask: frozenset[int]) -> None:
        self.options = options
        self.console = console
        self.mask = mask
        self.reaper = Reaper(reap_orphans=options.reap_orphans)
        self.events = EventRing()  # sequences, phases, tasks, services: the API's Events
        self.supervisor = Supervisor(
            self.reaper, console, echo_output=options.echo_services, events=self.events
        )
        self.sequencer = Sequencer(console, self.events)
        self.config: NodeConfig | None = None
        self.config_from_url = False
        self.state = options.state_dir / "state"
        self.ephemeral = options.state_dir / "ephemeral"
        self._signals: SignalLoop | None = None
        self._request: asyncio.Future[Request] | None = None
        self._applied: asyncio.Future[NodeConfig] | None = None
        self._root_built = False
        self.boots = 0  # completed boot sequences (a container-mode reboot adds one)
        self._booted: list[asyncio.Event] = []
        self._disk: SystemDisk | None = None  # metal mode's STATE and EPHEMERAL
        self._installed = False  # this boot installed the system disk with its bootloader
        self.boot_status: BootStatus | None = None  # the slots, on a node booted from its disk
        self._marking: asyncio.Task[None] | None = None  # marks a slot on trial good
        self._services_up = True  # False when startAllServices ended at its timeout
        self.hooks: NodeHooks | None = None  # set by whatever serves the node

    # -- the surface for the layers above (see the module docstring) -------------------------

    @property
    def mode(self) -> str:
        """``container`` or ``metal``."""
        return self.options.mode

    def hostname(self) -> str:
        """The config's hostname, else ``talos.hostname=``, else the kernel's."""
        config = self.config
        name = (config.hostname if config is not None else None) or self.options.cmdline.get(
            "talos.hostname"
        )
        return name or socket.gethostname()

    def system_dir(self) -> Path:
        """/system inside an isolated node; the state directory's parent otherwise."""
        if self.state == Path("/system/state"):
            return Path("/system")
        return self.options.state_dir / "system"

    def ephemeral_dir(self) -> Path:
        """EPHEMERAL (where etcd keeps its data)."""
        return self.ephemeral

    def parse_config(self, text: str, source: str) -> NodeConfig:
        """Load and validate ``text`` for the node's mode; raises DocumentError when bad."""
        return configsource.parse(text, source, self.options.mode)

    def persist_config(self, config: NodeConfig) -> None:
        """Save ``config`` to STATE: the next boot loads it."""
        configsource.persist(self.state, config)

    def use_config(self, config: NodeConfig | None) -> None:
        """Run with ``config`` from now on, without a reboot (or back to a previous one)."""
        self.config = config

    def wipe(self, labels: set[str]) -> None:
        """Empty the system directories named (``STATE``, ``EPHEMERAL``); services stopped."""
        for label, path in (("STATE", self.state), ("EPHEMERAL", self.ephemeral)):
            if label in labels:
                _wipe(path)

    def shutdown(self) -> None:
        self._ask(Request("shutdown", NodeExit.SHUTDOWN))

    def reboot(self) -> None:
        self._ask(Request("reboot", NodeExit.SHUTDOWN))

    def apply_configuration(self, text: str, source: str = "<api>") -> NodeConfig:
        """Validate and take a config (maintenance mode); raises DocumentError when bad."""
        config = configsource.parse(text, source, self.options.mode)
        if self._applied is not None and not self._applied.done():
            self._applied.set_result(config)
        return config

    async def wait_booted(self, count: int = 1) -> None:
        """Return once ``count`` boot sequences have completed (for the API and tests)."""
        while self.boots < count:
            event = asyncio.Event()
            self._booted.append(event)
            try:
                await event.wait()
            finally:
                self._booted.remove(event)

    def _ask(self, request: Request) -> None:
        if self._request is not None and not self._request.done():
            self._request.set_result(request)

    # -- signals ----------------------------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        """Runs on the loop for every signal but SIGCHLD (reaped in the signal thread)."""
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.console.log(f"received {signal.Signals(signum).name}: shutting down")
            self._ask(Request("shutdown", signal_exit(signum)))
        elif signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            self.supervisor.forward(signum)

    def _start_signal_loop(self) -> None:
        if self._signals is None:
            self._signals = SignalLoop(
                asyncio.get_running_loop(), self.mask, self.on_signal, self.reaper.reap
            )
            self._signals.start()
            self.reaper.reap()  # anything that exited before the loop started

    # -- main -------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        while True:
            self._request = loop.create_future()
            boot = loop.create_task(self._boot(), name="boot")
            boot.add_done_callback(self._boot_done)
            request = await self._request
            if not boot.done():
                boot.cancel()
                # asyncio.timeout (not wait_for) everywhere below keeps the cancellation from
                # being swallowed; the bound is a second guard so that shutdown always proceeds.
                await asyncio.wait({boot}, timeout=BOOT_CANCEL_BOUND)
                if not boot.done():
                    self.console.log("boot sequence did not stop when cancelled; going on")
            if self._marking is not None and not self._marking.done():
                self._marking.cancel()  # a slot not marked yet stays on trial
            name = "reboot" if request.kind == "reboot" else "shutdown"
            with contextlib.suppress(TaskFailedError):
                stop = Phase("stopEverything", [("stopAllServices", self._stop_all)])
                disk = [Phase("unmountSystem", [("unmountSystemDisk", self._unmount_system)])]
                await self.sequencer.run(name, [stop, *(disk if self._disk else [])])
            if self.hooks is not None:
                await self.hooks.stop()
            self.reaper.reap()
            if request.kind == "reboot" and self.options.mode == "container":
                self.config = None
                self.supervisor = Supervisor(
                    self.reaper,
                    self.console,
                    echo_output=self.options.echo_services,
                    events=self.events,
                )
                continue
            self.console.log(
                f"reaper: {self.reaper.orphans_reaped} orphans and "
                f"{self.reaper.children_reaped} children reaped"
            )
            if self._signals is not None:
                self._signals.stop()
            if self.options.mode == "metal":
                # PID 1 of a machine never returns: the kernel would panic.
                if request.kind == "fatal":
                    metal_fatal(self.console, self.options.cmdline.get("panic"))
                self.console.log("rebooting" if request.kind == "reboot" else "powering off")
                bounded_sync()
                mounts.reboot(power_off=request.kind != "reboot")
                metal_fatal(self.console, self.options.cmdline.get("panic"))
            return int(request.code)

    def _boot_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, TaskFailedError):
            self.console.log(f"fatal: {exc}")
        else:
            self.console.log(f"fatal: internal error ({type(exc).__name__})")
        self._ask(Request("fatal", NodeExit.FATAL))

    async def _boot(self) -> None:
        first = not self._root_built
        await self.sequencer.run("initialize", self._initialize_phases(first))
        self._start_signal_loop()
        if self.config is None:
            self.config = await self._maintenance()
        if self.options.mode == "metal":
            self._installed = False
            phases = [Phase("install", [("install", self._install)])]
            await self.sequencer.run("install", phases)
            if self._installed:  # the disk boots now: STATE gets the config, then a reboot
                await self.sequencer.run("install", self._after_install_phases())
                self.console.log("install: done; rebooting from the installed disk")
                self.reboot()
                return
        await self.sequencer.run("boot", self._boot_phases())
        self.boots += 1
        for event in self._booted:
            event.set()

    # -- initialize -------------------------------------------------------------------------

    def _initialize_phases(self, first: bool) -> list[Phase]:
        phases = [Phase("logger", [("setupLogger", self._setup_logger)])]
        if first:
            requirements = [("setupSystemDirectory", self._setup_system_directory)]
            if self.options.mode == "metal":
                requirements = [
                    ("enforceKSPPRequirements", self._enforce_kspp),
                    ("determinePlatform", self._determine_platform),
                    ("mountPseudoFilesystems", self._mount_pseudo),
                    ("writeRequiredSysctls", self._write_kspp_sysctls),
                    *requirements,
                ]
            phases.append(Phase("systemRequirements", requirements))
            if self.options.mode == "metal":
                phases.append(Phase("mountSystem", [("mountState", self._mount_state)]))
        phases.append(Phase("config", [("loadConfig", self._load_config)]))
        return phases

    async def _setup_logger(self) -> None:
        self.console.log(f"talos-init mode {self.options.mode}, pid {os.getpid()}")

    async def _enforce_kspp(self) -> None:
        params = self.options.cmdline
        missing = [
            f"{k}={v}" if v else k for k, v in REQUIRED_KERNEL_PARAMS.items() if params.get(k) != v
        ]
        if missing:
            raise BootError(f"KSPP: missing kernel parameters: {' '.join(missing)}")

    async def _determine_platform(self) -> None:
        # docs/talos-facts.md#kernel-parameters: talos.platform is required; the PLATFORM variable
        # overrides it.
        platform = os.environ.get("PLATFORM") or self.options.cmdline.get("talos.platform")
        if not platform:
            raise BootError("failed to determine platform: talos.platform is not set")
        if platform not in PLATFORMS:
            raise BootError(f"failed to determine platform: unknown platform {platform!r}")
        self.console.log(f"platform {platform}")

    async def _mount_pseudo(self) -> None:
        done = mounts.mount_pseudo_filesystems()
        self.console.log(f"mounted {', '.join(done) or 'nothing (already mounted)'}")

    async def _write_kspp_sysctls(self) -> None:
        for key, value in KSPP_SYSCTLS.items():
            path = Path("/proc/sys") / key.replace(".", "/")
            try:
                path.write_text(value)
            except OSError as exc:
                raise BootError(f"sysctl {key}: cannot write: {exc.strerror}") from None

    async def _setup_system_directory(self) -> None:
        if self.options.mode == "container" and self.options.isolate:
            if os.getpid() != 1:
                raise BootError(
                    "container mode builds its root only as PID 1 (or use --no-isolate)"
                )
            mounts.build_node_root(self.options.state_dir)
            self.state = Path("/system/state")
            self.ephemeral = Path("/var")
            mounts.unshare_uts()
        else:
            self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.ephemeral.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.getpid() != 1:
            _become_subreaper()
        self._root_built = True
        self.console.log(f"STATE at {self.state}, EPHEMERAL at {self.ephemeral}")

    async def _load_config(self) -> None:
        removed = configsource.remove_stale_temp(self.state)
        if removed:
            self.console.log(f"removed {removed} unfinished config write(s) from STATE")
        self.config = None
        self.config_from_url = False
        text_source = self.options.config_text
        url = self.options.config_source
        if text_source is None and url is not None:
            uuid = configsource.smbios_uuid()
            url = configsource.expand_url(url, uuid)
            if self._owns_network() and not url.startswith("file:"):
                await self._setup_links(None)  # an http(s) fetch needs the links (DHCP) up
            self.console.log(f"fetching config from {url}")
            try:
                text = await asyncio.to_thread(configsource.fetch, url, self.options.fetch_timeout)
                text_source = (text, url)
            except TalosError as exc:
                self.console.log(f"config: {exc.message}")
        if text_source is not None:
            try:
                self.config = configsource.parse(*text_source, self.options.mode)
                self.config_from_url = True
                self.console.log(f"config loaded from {text_source[1]}")
                return
            except DocumentError as exc:
                self._report_bad_config(exc)
        try:
            self.config = configsource.load_persisted(self.state, self.options.mode)
        except (DocumentError, TalosError) as exc:
            if isinstance(exc, DocumentError):
                self._report_bad_config(exc)
            else:
                self.console.log(f"config: {exc.message}")
        if self.config is not None:
            self.console.log(f"config loaded from STATE ({self.config.source})")
        else:
            self.console.log("no config: entering maintenance mode")

    def _report_bad_config(self, exc: DocumentError) -> None:
        self.console.log("config rejected:")
        for problem in exc.problems:
            self.console.log(f"  {problem.render()}")

    async def _maintenance(self) -> NodeConfig:
        """Wait for a config: through the API seam, or a file dropped into STATE."""
        loop = asyncio.get_running_loop()
        self._applied = loop.create_future()
        drop = self.state / configsource.DROP_NAME
        if self._owns_network():
            await self._setup_links(None)  # the banner lists the addresses leased here
        self.console.log("starting maintenance service")
        if self.hooks is not None:  # the maintenance banner follows that line
            if self.options.mode == "metal" or self.options.isolate:
                with contextlib.suppress(OSError):
                    _loopback_up()  # the maintenance service answers on loopback too
            await self.hooks.enter_maintenance()
        self.console.log(f"waiting for a machine config: apply it, or write it to {drop}")
        try:
            return await self._wait_for_config(drop)
        finally:
            if self.hooks is not None:
                await self.hooks.leave_maintenance()

    async def _wait_for_config(self, drop: Path) -> NodeConfig:
        assert self._applied is not None  # noqa: S101 - _maintenance made it
        while not self._applied.done():
            found = configsource.read_drop(self.state)
            if found is not None:
                text, source = found
                try:
                    config = configsource.parse(text, source, self.options.mode)
                except DocumentError as exc:
                    self._report_bad_config(exc)
                    rejected = drop.with_name(drop.name + ".rejected")
                    with contextlib.suppress(OSError):
                        drop.replace(rejected)
                    self.console.log(f"moved it to {rejected}; still in maintenance mode")
                else:
                    configsource.persist(self.state, config)
                    with contextlib.suppress(OSError):
                        drop.unlink()
                    self.console.log(f"config accepted from {source}")
                    return config
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MAINTENANCE_POLL):
                    await asyncio.shield(self._applied)
        config = self._applied.result()
        configsource.persist(self.state, config)
        return config

    # -- boot -------------------------------------------------------------------------------

    def _boot_phases(self) -> list[Phase]:
        metal = self.options.mode == "metal"
        return [
            *([Phase("mountState", [("mountState", self._mount_state)])] if metal else []),
            Phase("validateConfig", [("validateConfig", self._validate_config)]),
            Phase("saveConfig", [("saveConfig", self._save_config)]),
            *([Phase("ephemeral", [("mountEphemeral", self._mount_ephemeral)])] if metal else []),
            Phase(
                "userSetup",
                [
                    ("writeUserFiles", self._write_user_files),
                    ("setHostname", self._set_hostname),
                    ("writeUserSysctls", self._write_user_sysctls),
                ],
            ),
            Phase("setupNetwork", [("setupNetwork", self._setup_network)]),
            Phase("startEverything", [("startAllServices", self._start_all_services)]),
            *([Phase("bootloader", [("markBootGood", self._mark_boot_good)])] if metal else []),
        ]

    def _after_install_phases(self) -> list[Phase]:
        """Talos's install sequence after the installer: STATE and the config on it."""
        return [
            Phase("mountState", [("mountState", self._mount_state)]),
            Phase("saveConfig", [("saveConfig", self._save_installed_config)]),
        ]

    # -- system disk (metal mode): talos_init.disks and talos_init.install -------------------

    def _system_disk(self) -> SystemDisk:
        from talos_init.disks import SystemDisk

        if self._disk is None:
            self._disk = SystemDisk(self.console, self.reaper, self.options.cmdline)
        return self._disk

    async def _mount_state(self) -> None:
        mounted = await self._system_disk().mount_state(self.config, self.state)
        self.state = mounted or self.state

    async def _install(self) -> None:
        from talos_init.install import install_system

        self._installed = await install_system(self.console, self.reaper, self._config())

    async def _save_installed_config(self) -> None:
        path = configsource.persist(self.state, self._config())
        self.console.log(f"config saved to {path}")

    async def _mark_boot_good(self) -> None:
        """The booted slot's status (:mod:`talos_init.bootloader`); a slot on trial becomes
        GRUB's default once its services run and, on a control plane, etcd is healthy (in the
        background: the boot sequence does not wait for etcd). A slot on trial whose services
        did not all come up, or whose etcd stays unhealthy, is not marked: the node reboots and
        GRUB goes back to the previous slot. A failure to read grubenv is logged, and the boot
        counting then decides the next boot."""
        from talos_init.bootloader import mark_booted_good

        try:
            status = await mark_booted_good(
                self.console, self.reaper, self.options.cmdline, mark=False
            )
        except TalosError as exc:
            self.console.log(f"bootloader: {exc.message}")
            return
        self.boot_status = status
        if status is None or not status.trial:
            return
        if not self._services_up:
            self._give_up_trial(status.slot, "not every service is up after the boot timeout")
            return
        self._marking = asyncio.get_running_loop().create_task(
            self._mark_when_healthy(), name="mark-good"
        )

    def _give_up_trial(self, slot: str, why: str) -> None:
        """A slot on trial that did not come up is not marked good: the node reboots, and
        GRUB's boot counting goes back to the previous slot."""
        self.console.log(
            f"bootloader: {why}: slot {slot} is not marked good; rebooting, and GRUB goes back"
            " to the previous slot"
        )
        self.reboot()

    async def _mark_when_healthy(self) -> None:
        from talos_init.bootloader import mark_booted_good

        config = self._config()
        if config.machine_type in CONTROL_PLANES and not await self._etcd_healthy():
            slot = self.boot_status.slot if self.boot_status else "?"
            self._give_up_trial(slot, f"etcd is not healthy after {MARK_ETCD_WAIT:g}s")
            return
        try:
            self.boot_status = await mark_booted_good(
                self.console, self.reaper, self.options.cmdline
            )
        except TalosError as exc:
            self.console.log(f"bootloader: {exc.message}")

    async def _etcd_healthy(self) -> bool:
        """True once the etcd service is up (healthy), or when a control plane runs none
        after :data:`MARK_ETCD_APPEAR` seconds (not bootstrapped yet: no etcd to wait for)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while (waited := loop.time() - started) < MARK_ETCD_WAIT:
            etcd = self.supervisor.services.get(ETCD_SERVICE)
            if etcd is None and waited >= MARK_ETCD_APPEAR:
                self.console.log("bootloader: this control plane runs no etcd (not bootstrapped)")
                return True
            if etcd is not None and etcd.up:
                self.console.log("bootloader: etcd is healthy")
                return True
            await self.supervisor.changed(1.0)
        return False

    async def _mount_ephemeral(self) -> None:
        mounted = await self._system_disk().mount_ephemeral(self._config())
        self.ephemeral = mounted or self.ephemeral

    async def _unmount_system(self) -> None:
        if self._disk is not None:
            await self._disk.unmount()

    def _config(self) -> NodeConfig:
        if self.config is None:  # boot phases run only after a config was loaded
            raise BootError("no machine config")
        return self.config

    async def _validate_config(self) -> None:
        config = self._config()
        self.console.log(f"machine type {config.machine_type}")
        for warning in config.warnings:
            self.console.log(f"config warning: {warning}")

    async def _save_config(self) -> None:
        config = self._config()
        if self.config_from_url:
            path = configsource.persist(self.state, config)
            self.console.log(f"config saved to {path}")

    async def _write_user_files(self) -> None:
        config = self._config()
        for i, f in enumerate(config.files):
            try:
                if f.op == "append":
                    with open(f.path, "a", encoding="utf-8") as fh:
                        fh.write(f.content)
                    os.chmod(f.path, f.permissions)
                else:
                    if f.op == "create" and os.path.exists(f.path):
                        self.console.log(f"machine.files[{i}]: {f.path} exists, left as is")
                        continue
                    atomic_write(f.path, f.content, mode=f.permissions)
            except TalosError as exc:  # its message names the path
                self.console.log(f"machine.files[{i}]: {exc.message}")
            except OSError as exc:
                self.console.log(f"machine.files[{i}]: {f.path}: {exc.strerror}")

    async def _set_hostname(self) -> None:
        config = self._config()
        name = config.hostname or self.options.cmdline.get("talos.hostname")
        if not name or (self.options.mode == "container" and not self.options.isolate):
            return  # without our own UTS namespace the host's name is not ours to change
        socket.sethostname(name)
        self.console.log(f"hostname set to {name}")

    async def _write_user_sysctls(self) -> None:
        config = self._config()
        if self.options.mode != "metal":
            if config.sysctls:
                self.console.log("machine.sysctls: not applied in container mode")
            return
        for key, value in config.sysctls.items():
            try:
                (Path("/proc/sys") / key.replace(".", "/")).write_text(value)
            except OSError as exc:
                self.console.log(f"machine.sysctls.{key}: {exc.strerror}")

    async def _setup_network(self) -> None:
        if self.options.mode == "metal" or self.options.isolate:
            try:
                _loopback_up()
            except OSError as exc:
                self.console.log(f"setupNetwork: lo: {exc.strerror}")
        config = self._config()
        if self._owns_network():
            await self._setup_links(config)
        elif config.interfaces:
            self.console.log(
                "machine.network.interfaces: left to the launcher (no --manage-network)"
            )
        self.supervisor.set_network_up()

    def _owns_network(self) -> bool:
        """Metal mode, or a container node in a network namespace of its own."""
        return self.options.mode == "metal" or self.options.manage_network

    async def _setup_links(self, config: NodeConfig | None) -> None:
        """The links (:mod:`talos_init.network`): the config's, ``ip=``, DHCP on the others with
        carrier (the first leases waited for, bounded), and the resolver file."""
        from talos_init import network

        log = self.console.log
        interfaces = config.interfaces if config is not None else ()
        plan = await asyncio.to_thread(network.plan, interfaces, self.options.cmdline)
        for message in plan.messages:
            log(f"network: {message}")
        net = config.model.machine.network if config is not None else None
        pinned = tuple(net.nameservers if net is not None else ()) or plan.nameservers
        resolv = self.system_dir() / network.RESOLV_CONF
        spec = None
        if plan.dhcp:
            leases = self.system_dir() / "dhcp"
            spec = network.dhcp_service(plan.dhcp, leases, None if pinned else resolv)
        if pinned or not self._dhcp_runs(spec):  # else the running client keeps it up to date
            try:
                network.write_resolv_conf(resolv, pinned)
            except OSError as exc:
                log(f"network: {resolv}: {exc.strerror}")
        started = await self._run_dhcp(spec)  # a replaced client releases before static settings
        if plan.static:
            for message in await asyncio.to_thread(network.apply, plan.static, plan.labels):
                log(message)
        if not started:
            return
        bound = network.LEASE_WAIT
        found = await asyncio.to_thread(network.wait_for_leases, plan.dhcp, bound)
        for link in sorted(plan.dhcp):
            if link in found:
                log(f"network: {link} has {', '.join(found[link])} (DHCP)")
            else:
                log(f"network: {link}: no DHCP lease after {bound:g}s; going on")

    def _dhcp_runs(self, spec: ServiceSpec | None) -> bool:
        """The DHCP service runs already as ``spec``."""
        from talos_init.network import DHCP_SERVICE

        current = self.supervisor.services.get(DHCP_SERVICE)
        running = current is not None and current.task is not None and not current.task.done()
        return running and current is not None and current.spec == spec

    async def _run_dhcp(self, spec: ServiceSpec | None) -> bool:
        """Run the DHCP service as ``spec`` (None: not at all); False when it already runs so."""
        from talos_init.network import DHCP_SERVICE

        if self._dhcp_runs(spec):
            return False
        if DHCP_SERVICE in self.supervisor.services:
            await self.supervisor.stop(DHCP_SERVICE)
            del self.supervisor.services[DHCP_SERVICE]
        if spec is None:
            return False
        self.supervisor.add(spec)
        self.supervisor.start(spec.id)
        return True

    async def _start_all_services(self) -> None:
        self._services_up = True
        for problem in self.options.service_problems:
            self.console.log(f"extension service rejected: {problem.render()}")
        for spec in self.options.services:
            self.supervisor.add(spec)
        if self.hooks is not None:
            self.hooks.configured()
        self.supervisor.start_all()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BOOT_TIMEOUT
        services = self.supervisor.services.values()
        while not all(s.up or s.task is None or s.task.done() for s in services):
            left = deadline - loop.time()
            if left <= 0:
                self.console.log("not every service is up after the boot timeout")
                self._services_up = False
                return
            await self.supervisor.changed(left)
        self.console.log(f"services running: {len(self.supervisor.services)}")

    async def _stop_all(self) -> None:
        await self.supervisor.stop_all()


def _wipe(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


def _become_subreaper() -> None:
    """When not PID 1 (tests, a launcher), orphans of our services still come back to us."""
    import ctypes

    pr_set_child_subreaper = 36
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def _loopback_up() -> None:
    """Bring ``lo`` up (a fresh network namespace starts with it down): two ioctls."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, req))[1]
        if not flags & iff_up:
            fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
