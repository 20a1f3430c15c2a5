"""The service supervisor: dependencies, health, restart with back-off, orderly stop.

States and console lines follow Talos: ``[talos] service[etcd](Running): Health check
successful``. Every service keeps an event history and a bounded log ring.

The machine API (:mod:`talos_init.api.adapter`) works on this object: its ``ServiceList`` reads
``services`` (each :class:`Service`'s state, health and events), ``ServiceStart/Stop/Restart``
call :meth:`Supervisor.start`, :meth:`~Supervisor.stop` and :meth:`~Supervisor.restart`, and
``Logs`` reads :meth:`~Supervisor.log`. Every state change (and health change) is also
published to the node's :class:`~talos_init.events.EventRing` as a ``ServiceStateEvent``
(``Events``). Everything runs on the asyncio loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from talos_init.events import EventRing, ServiceStateEvent
from talos_init.health import run_check
from talos_init.logring import Console, LineReader, LogRing
from talos_init.reaper import Reaper, describe, exit_code
from talos_init.services import ServiceSpec
from talos_init.spawn import SpawnError

MAX_BACKOFF = 60.0
EVENT_HISTORY = 64


class State(enum.StrEnum):
    INITIALIZED = "Initialized"
    PREPARING = "Preparing"
    WAITING = "Waiting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    FINISHED = "Finished"
    FAILED = "Failed"
    SKIPPED = "Skipped"


@dataclass(frozen=True)
class Event:
    timestamp: float
    state: State
    message: str


class UnknownServiceError(KeyError):
    """No service with that id."""


class Service:
    """The runtime side of one :class:`ServiceSpec`."""

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.state = State.INITIALIZED
        self.events: deque[Event] = deque(maxlen=EVENT_HISTORY)
        self.log = LogRing(spec.id)
        self.healthy: bool | None = None
        self.health_message = ""
        self.health_changed: float | None = None
        self.pid: int | None = None
        self.runs = 0
        self.failures = 0  # consecutive
        self.succeeded = False
        self.task: asyncio.Task[None] | None = None
        self.exit: asyncio.Future[int] | None = None
        self.stopping = False
        self.helper_pid: int | None = None  # a running pre-start command

    @property
    def up(self) -> bool:
        """What a dependent waits for.

        An until-success service is a one-shot job: it is up once it has succeeded. Any other
        service is up while running (and healthy, when it has a health check).
        """
        if self.spec.restart == "until-success":
            return self.state == State.FINISHED and self.succeeded
        if self.state == State.RUNNING:
            return self.spec.health is None or self.healthy is True
        return False


class Supervisor:
    def __init__(
        self,
        reaper: Reaper,
        console: Console,
        *,
        echo_output: bool = False,
        events: EventRing | None = None,
    ) -> None:
        self.reaper = reaper
        self.console = console
        self.echo_output = echo_output
        self.events = events
        self.services: dict[str, Service] = {}
        self.network_up = False
        self._changed = asyncio.Event()
        self._pending: set[asyncio.Task[object]] = set()

    # -- registration and queries --------------------------------------------------------------

    def add(self, spec: ServiceSpec) -> Service:
        svc = Service(spec)
        self.services[spec.id] = svc
        return svc

    def get(self, sid: str) -> Service:
        try:
            return self.services[sid]
        except KeyError:
            raise UnknownServiceError(sid) from None

    def log(self, sid: str) -> LogRing:
        return self.get(sid).log

    def set_network_up(self, up: bool = True) -> None:
        self.network_up = up
        self._notify()

    # -- state changes ------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, timeout: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    def _event(self, svc: Service, state: State, message: str) -> None:
        svc.state = state
        svc.events.append(Event(time.time(), state, message))
        self.console.log(f"service[{svc.spec.id}]({state}): {message}")
        if self.events is not None:
            self.events.publish(
                ServiceStateEvent(
                    svc.spec.id,
                    state.name,
                    message,
                    svc.healthy if svc.spec.health is not None else None,
                    svc.health_message,
                    svc.health_changed,
                )
            )
        self._notify()

    # -- start ---------------------------------------------------------------------------------

    def start_all(self) -> None:
        for sid in self.order():
            self.start(sid)

    def start(self, sid: str) -> None:
        svc = self.get(sid)
        if svc.task is not None and not svc.task.done():
            return
        svc.stopping = False
        svc.failures = 0
        svc.task = asyncio.get_running_loop().create_task(self._run(svc), name=f"svc-{sid}")

    def order(self) -> list[str]:
        """Service ids in dependency order (dependencies first)."""
        seen: list[str] = []

        def visit(sid: str, stack: tuple[str, ...]) -> None:
            if sid in seen or sid in stack or sid not in self.services:
                return
            for dep in self.services[sid].spec.depends_services:
                visit(dep, (*stack, sid))
            seen.append(sid)

        for sid in self.services:
            visit(sid, ())
        return seen

    def _unmet(self, svc: Service) -> list[str]:
        unmet = [
            f"service {d}"
            for d in svc.spec.depends_services
            if d not in self.services or not self.services[d].up
        ]
        unmet += [f"path {p}" for p in svc.spec.depends_paths if not os.path.exists(p)]
        if svc.spec.depends_network and not self.network_up:
            unmet.append("network")
        return unmet

    async def _wait_dependencies(self, svc: Service) -> None:
        said = ""
        while unmet := self._unmet(svc):
            message = f"Waiting for {', '.join(unmet)}"
            if message != said:
                self._event(svc, State.WAITING, message)
                said = message
            # Service changes wake us at once; paths are polled.
            await self.changed(0.1 if svc.spec.depends_paths else None)

    async def _run(self, svc: Service) -> None:
        spec = svc.spec
        while True:
            self._event(svc, State.PREPARING, "Running pre-stage")
            await self._wait_dependencies(svc)
            if spec.pre_start:
                self._event(svc, State.PREPARING, "Running pre-start command")
                code = await self._run_once(svc, spec.pre_start)
                if code != 0:
                    message = f"Pre-start command failed with code {code}"
                    if await self._after_failure(svc, message):
                        continue
                    return
            self._event(svc, State.PREPARING, "Starting service")
            ok, message = await self._run_process(svc)
            if svc.stopping:
                self._event(svc, State.FINISHED, "Service stopped")
                return
            if ok:
                svc.succeeded = True
                svc.failures = 0
                self._event(svc, State.FINISHED, message)
                if spec.restart != "always":
                    return
                if not await self._backoff(svc, spec.restart_delay):
                    return
                continue
            if not await self._after_failure(svc, message):
                return

    async def _after_failure(self, svc: Service, message: str) -> bool:
        """Record a failure; ``True`` when the service is to be started again."""
        svc.failures += 1
        self._event(svc, State.FAILED, message)
        if svc.spec.restart == "never" or svc.stopping:
            return False
        delay = min(svc.spec.restart_delay * 2 ** (svc.failures - 1), MAX_BACKOFF)
        return await self._backoff(svc, delay)

    async def _backoff(self, svc: Service, delay: float) -> bool:
        self._event(svc, svc.state, f"Restarting in {delay:g}s")
        await asyncio.sleep(delay)  # a stop() cancels this task
        return not svc.stopping

    def _open_log_pipe(self, svc: Service) -> tuple[int, asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        done: asyncio.Future[None] = loop.create_future()
        reader = LineReader(svc.log, self.console if self.echo_output else None, svc.spec.id, done)
        pipe = os.fdopen(r, "rb", buffering=0)
        task = loop.create_task(loop.connect_read_pipe(lambda: reader, pipe))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return w, done

    async def _run_once(self, svc: Service, argv: Iterable[str]) -> int:
        """Run a helper command (pre-start) to completion; its output goes to the service log."""
        loop = asyncio.get_running_loop()
        w, _ = self._open_log_pipe(svc)
        done: asyncio.Future[int] = loop.create_future()
        try:
            svc.helper_pid = self.reaper.spawn(
                list(argv),
                lambda _p, status: done.set_result(status),
                env=self._env(svc),
                stdout=w,
                stderr=w,
            )
        except SpawnError as exc:
            svc.log.append(exc.message)
            return exc.code
        finally:
            os.close(w)
        try:
            return exit_code(await done)
        finally:
            svc.helper_pid = None

    def _env(self, svc: Service) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        env.update(svc.spec.environment)
        return env

    async def _run_process(self, svc: Service) -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        w, output_done = self._open_log_pipe(svc)
        exit_future: asyncio.Future[int] = loop.create_future()
        try:
            pid = self.reaper.spawn(
                svc.spec.argv,
                lambda _p, status: exit_future.set_result(status),
                env=self._env(svc),
                stdout=w,
                stderr=w,
            )
        except SpawnError as exc:
            svc.log.append(exc.message)
            return False, exc.message
        finally:
            os.close(w)
        svc.pid = pid
        svc.runs += 1
        svc.exit = exit_future
        svc.healthy = None
        self._event(svc, State.RUNNING, f"Started process with PID {pid}")
        health = None
        if svc.spec.health is not None:
            health = loop.create_task(self._health_loop(svc), name=f"health-{svc.spec.id}")
        try:
            status = await asyncio.shield(exit_future)
        finally:
            if health is not None:
                health.cancel()
            svc.pid = None
        # Read what the process wrote before it died (its children may hold the pipe: bounded).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await asyncio.shield(output_done)
        svc.healthy = None
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return True, "Service finished successfully"
        return False, f"Process {describe(status)}"

    async def _health_loop(self, svc: Service) -> None:
        check = svc.spec.health
        if check is None:
            return
        await asyncio.sleep(check.initial_delay)
        while True:
            ok, message = await run_check(check, self.reaper)
            if ok != svc.healthy:
                svc.healthy = ok
                svc.health_message = message
                svc.health_changed = time.time()
                text = "Health check successful" if ok else f"Health check failed: {message}"
                self._event(svc, svc.state, text)
            await asyncio.sleep(check.period)

    # -- stop ----------------------------------------------------------------------------------

    async def stop(self, sid: str) -> None:
        """Stop one service: SIGTERM to its process group, SIGKILL after the grace."""
        svc = self.get(sid)
        svc.stopping = True
        task = svc.task
        if task is None or task.done():
            return
        exit_future = svc.exit
        if svc.pid is not None and exit_future is not None and not exit_future.done():
            pid = svc.pid
            grace = svc.spec.stop_grace
            self._event(svc, State.STOPPING, f"Sending SIGTERM to {pid}")
            _signal_group(pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await asyncio.shield(exit_future)
            except TimeoutError:
                self._event(svc, State.STOPPING, f"Sending SIGKILL to {pid} after {grace:g}s")
                _signal_group(pid, signal.SIGKILL)
            await asyncio.shield(exit_future)
            # Anything left in the group is killed too (a service's children go with it).
            _signal_group(pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            if svc.helper_pid is not None:  # a pre-start command goes with its service
                _signal_group(svc.helper_pid, signal.SIGKILL)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._event(svc, State.FINISHED, "Service stopped")

    async def restart(self, sid: str) -> None:
        await self.stop(sid)
        self.start(sid)

    async def stop_all(self) -> None:
        """Stop every service, dependents before what they depend on."""
        done = {sid: asyncio.Event() for sid in self.services}
        dependents: dict[str, list[str]] = {sid: [] for sid in self.services}
        for sid, svc in self.services.items():
            for dep in svc.spec.depends_services:
                if dep in dependents:
                    dependents[dep].append(sid)

        async def stop_one(sid: str) -> None:
            for other in dependents[sid]:
                await done[other].wait()
            try:
                await self.stop(sid)
            finally:
                done[sid].set()

        await asyncio.gather(*(stop_one(sid) for sid in self.services))

    def forward(self, signum: int) -> int:
        """Pass a signal to the services that asked for it; returns how many got it."""
        count = 0
        for svc in self.services.values():
            if signum in svc.spec.forward_signals and svc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(svc.pid, signum)
                    count += 1
        return count


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
