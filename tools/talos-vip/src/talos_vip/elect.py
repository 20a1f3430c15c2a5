"""Deciding who holds the VIP: an etcd lease plus a campaign key, fenced by our own clock.

Each candidate owns a lease (2 s by default) and one key under the election prefix,
``talos:v1:vip:election:<ip>/<lease id in hex>``, whose value is the node name. The candidate
whose key has the lowest creation revision leads (the order etcd's own ``concurrency.Election``
uses). When a leader dies its lease expires, etcd deletes its key, and the next-oldest key leads.

Fencing: before each keep-alive we read our monotonic clock; etcd cannot expire the lease before
``sent + ttl`` by its own clock, so a leader that stops hearing from etcd gives the address up at
``sent + ttl - margin``, strictly before any other node can be elected. This module only decides;
:mod:`talos_vip.apply` acts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from talos_vip.etcd import Client, EtcdError

log = logging.getLogger("talos_vip")

KEY_PREFIX = "talos:v1:vip:election:"


def election_prefix(ip: str) -> str:
    return f"{KEY_PREFIX}{ip}"


@dataclass(frozen=True)
class View:
    """What one election step learnt."""

    leader: bool  # we lead and the lease is safely ours until fence_at
    holder: str | None  # node name of the current leader, if any
    lease: int | None
    ttl: int
    fence_at: float  # monotonic time by which we must not hold the address any more


class Election:
    """One candidate's campaign. Call :meth:`step` periodically; :meth:`resign` on stop."""

    def __init__(
        self,
        client: Client,
        ip: str,
        name: str,
        *,
        ttl: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.prefix = election_prefix(ip)
        self.name = name
        self.requested_ttl = ttl
        self.clock = clock
        self.lease: int | None = None
        self.ttl = ttl
        self.key: str | None = None
        self.fence_at = 0.0  # nothing held yet: any time is past the fence
        self._renewed_at = 0.0  # monotonic time the last successful keep-alive was sent
        self._cleaned = False

    @property
    def renew_interval(self) -> float:
        return self.ttl / 4

    @property
    def margin(self) -> float:
        """How long before etcd could expire the lease we give up the address."""
        return self.ttl / 4

    def _budget(self, deadline: float | None, default: float) -> float:
        if deadline is None:
            return default
        return min(default, max(0.0, deadline - self.clock()))

    def _new_session(self, timeout: float) -> None:
        sent = self.clock()
        lease, ttl = self.client.grant(self.requested_ttl, timeout=timeout)
        self.lease, self.ttl = lease, max(1, ttl)
        self._renewed_at = sent
        self.fence_at = sent + self.ttl - self.margin
        if not self._cleaned:
            # A key of ours under another lease is a leftover of a previous run of this node:
            # remove it so the election does not wait for its lease to run out.
            for kv in self.client.range_prefix(self.prefix, timeout=timeout):
                if kv.value == self.name and kv.lease != lease:
                    log.info("removing leftover campaign key %s of this node", kv.key)
                    self.client.delete(kv.key, timeout=timeout)
            self._cleaned = True
        self.key = f"{self.prefix}/{lease:x}"
        if not self.client.create(self.key, self.name, lease, timeout=timeout):
            raise EtcdError(f"campaign key {self.key} exists already")
        log.info("campaigning with lease %x (ttl %ds)", lease, self.ttl)

    def drop_session(self) -> None:
        """Forget the lease (it is gone or no longer trusted); the next step starts afresh."""
        self.lease = None
        self.key = None
        self.fence_at = 0.0

    def step(self, *, timeout: float = 0.5, deadline: float | None = None) -> View:
        """Renew the lease when due, read the election, and decide.

        ``deadline`` bounds the time spent waiting on etcd (the caller passes its fence time
        while it holds the address). Raises :class:`EtcdError` when etcd cannot be asked; the
        caller then relies on ``fence_at`` alone.
        """
        if self.lease is None:
            self._new_session(self._budget(deadline, timeout))
        elif self.clock() >= self._renewed_at + self.renew_interval:
            sent = self.clock()
            ttl = self.client.keepalive(self.lease, timeout=self._budget(deadline, timeout))
            if ttl <= 0:
                log.warning("lease %x is gone at etcd", self.lease)
                self.drop_session()
                return View(False, None, None, self.ttl, 0.0)
            self.ttl = ttl
            self._renewed_at = sent
            self.fence_at = sent + ttl - self.margin
        kvs = self.client.range_prefix(self.prefix, timeout=self._budget(deadline, timeout))
        holder = kvs[0] if kvs else None
        mine = holder is not None and holder.key == self.key
        if self.key is not None and not any(kv.key == self.key for kv in kvs):
            log.warning("campaign key %s vanished", self.key)
            self.drop_session()
            mine = False
        leader = mine and self.clock() < self.fence_at
        return View(
            leader=leader,
            holder=holder.value if holder else None,
            lease=self.lease,
            ttl=self.ttl,
            fence_at=self.fence_at,
        )

    def resign(self, *, timeout: float = 1.0) -> None:
        """Give up: revoke the lease, which deletes our key at once."""
        if self.lease is None:
            return
        lease = self.lease
        self.drop_session()
        try:
            self.client.revoke(lease, timeout=timeout)
            log.info("resigned (lease %x revoked)", lease)
        except EtcdError as exc:
            log.warning("could not revoke lease %x: %s (it expires on its own)", lease, exc)
