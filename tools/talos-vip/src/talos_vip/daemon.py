"""The run loop: ask the election, then make the interface match, then announce.

Single-threaded on purpose: every wait (etcd calls, sleeps) is bounded by the fence time while we
hold the address, so nothing can keep the address on past it. Signals only set a flag and wake
the loop through a self-pipe; the loop then removes the address and resigns, in that order, so a
clean stop hands the VIP over at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from talos_vip.apply import Applier
from talos_vip.arp import Announcer, IPAddress, Schedule
from talos_vip.elect import Election
from talos_vip.etcd import Client, Endpoint, EtcdError

log = logging.getLogger("talos_vip")


@dataclass
class Settings:
    interface: str
    vip: IPAddress
    endpoints: list[Endpoint]
    node_name: str
    lease_ttl: int = 2
    poll_interval: float = 0.1
    request_timeout: float = 0.5
    burst: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    refresh: float = 10.0
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None


class _Signals:
    """SIGTERM/SIGINT/SIGHUP set a flag and wake ``wait``."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old: dict[int, object] = {}
        self._old_fd = -1

    def install(self) -> None:
        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum

    def wait(self, seconds: float) -> None:
        if self.received is not None or seconds <= 0:
            return
        ready, _, _ = select.select([self._r], [], [], seconds)
        if ready:
            with contextlib.suppress(OSError):
                os.read(self._r, 512)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]  # handlers returned by signal()
        signal.set_wakeup_fd(self._old_fd)
        os.close(self._r)
        os.close(self._w)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s = settings
        self.clock = clock
        self.client = Client(  # first: checks the TLS files before touching any interface
            settings.endpoints,
            ca=settings.etcd_ca,
            cert=settings.etcd_cert,
            key=settings.etcd_key,
            timeout=settings.request_timeout,
        )
        self.applier = Applier(settings.interface, settings.vip)
        self.announcer = Announcer(settings.interface, self.applier.mac, settings.vip)
        self.schedule = Schedule(burst=settings.burst, refresh=settings.refresh)
        self.election = Election(
            self.client, str(settings.vip), settings.node_name, ttl=settings.lease_ttl, clock=clock
        )
        self.holding = False
        self._etcd_ok = True

    # --- acting ----------------------------------------------------------------------------

    def _take(self) -> None:
        self.applier.add()
        self.holding = True
        self.schedule.start(self.clock())
        log.info(
            "acquired %s on %s (lease %x)", self.s.vip, self.s.interface, self.election.lease or 0
        )
        self._announce_if_due()

    def _release(self, why: str) -> None:
        self.applier.remove()
        self.schedule.stop()
        if self.holding:
            log.info("released %s: %s", self.s.vip, why)
        self.holding = False

    def _announce_if_due(self) -> None:
        if self.holding and self.schedule.due(self.clock()):
            try:
                self.announcer.announce()
            except OSError as exc:
                log.warning("announcing %s failed: %s", self.s.vip, exc.strerror)

    # --- the loop --------------------------------------------------------------------------

    def tick(self) -> None:
        """One round: fence check, election step, apply, announce."""
        if self.holding and self.clock() >= self.election.fence_at:
            self._release("lease not renewed in time (fenced by our clock)")
        deadline = self.election.fence_at if self.holding else None
        try:
            view = self.election.step(timeout=self.s.request_timeout, deadline=deadline)
        except EtcdError as exc:
            if self._etcd_ok:
                log.warning("%s", exc)
            self._etcd_ok = False
            if self.holding and self.clock() >= self.election.fence_at:
                self._release("lease not renewed in time (fenced by our clock)")
            # The lease is kept: once etcd answers, a keep-alive either renews it (nobody else
            # can have been elected meanwhile) or reports it gone and a new campaign starts.
            return
        if not self._etcd_ok:
            log.info("etcd answers again")
        self._etcd_ok = True
        if view.leader:
            if not self.holding:
                self._take()
            elif not self.applier.present():
                log.warning(
                    "%s was removed from %s by someone else; re-adding",
                    self.s.vip,
                    self.s.interface,
                )
                self.applier.add()
                self.schedule.start(self.clock())
        elif self.holding:
            self._release(f"leader is now {view.holder or 'nobody'}")
        self._announce_if_due()

    def _sleep_time(self) -> float:
        now = self.clock()
        wake = now + self.s.poll_interval
        nxt = self.schedule.next_due()
        if nxt is not None:
            wake = min(wake, nxt)
        if self.holding:
            wake = min(wake, self.election.fence_at)
        return max(0.0, wake - now)

    def run(self) -> int:
        """Run until a signal; returns the signal number that stopped us."""
        signals = _Signals()
        signals.install()
        try:
            log.info(
                "node %s campaigning for %s on %s (etcd %s, lease ttl %ds)",
                self.s.node_name,
                self.s.vip,
                self.s.interface,
                ",".join(map(str, self.s.endpoints)),
                self.s.lease_ttl,
            )
            if self.applier.remove():
                log.info("removed %s left on %s by an earlier run", self.s.vip, self.s.interface)
            while signals.received is None:
                self.tick()
                signals.wait(self._sleep_time())
            return signals.received
        finally:
            # Address first, then the lease: the next leader can only appear after both.
            self._release("stopping")
            # Up to one TTL: past that the lease has expired anyway.
            self.election.resign(timeout=max(self.s.request_timeout, float(self.election.ttl)))
            self.client.close()
            self.applier.close()
            signals.restore()
