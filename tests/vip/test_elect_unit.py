"""The election's fencing arithmetic with an injected clock and a scripted etcd.

The three-node tests run the real etcd; these pin the decision rules exactly: when a leader must
let go by its own clock, and that an etcd outage never extends the fence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from talos_vip.elect import Election
from talos_vip.etcd import EtcdError, KeyValue


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedEtcd:
    """Answers like etcd for one candidate; ``down`` makes every call fail as a timeout would."""

    down: bool = False
    lease_alive: bool = True
    keys: list[KeyValue] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise EtcdError(f"etcd: {what}: timed out")

    def grant(self, ttl: int, *, timeout: float | None = None) -> tuple[int, int]:
        self._check("grant")
        return 0x42, ttl

    def keepalive(self, lease: int, *, timeout: float | None = None) -> int:
        self._check("keepalive")
        return 2 if self.lease_alive else 0

    def range_prefix(self, prefix: str, *, timeout: float | None = None) -> list[KeyValue]:
        self._check("range")
        return list(self.keys)

    def create(self, key: str, value: str, lease: int, *, timeout: float | None = None) -> bool:
        self._check("create")
        self.keys.append(KeyValue(key, value, 10 + len(self.keys), lease))
        return True

    def delete(self, key: str, *, timeout: float | None = None) -> None:
        self._check("delete")

    def revoke(self, lease: int, *, timeout: float | None = None) -> None:
        self._check("revoke")


def _elected() -> tuple[Election, ScriptedEtcd, Clock]:
    etcd, clock = ScriptedEtcd(), Clock()
    e = Election(etcd, "10.66.0.100", "node1", ttl=2, clock=clock)  # type: ignore[arg-type]
    view = e.step()
    assert view.leader and view.holder == "node1"
    assert e.key == "talos:v1:vip:election:10.66.0.100/42"
    return e, etcd, clock


def test_fence_is_ttl_minus_margin_from_the_send_time() -> None:
    e, _, clock = _elected()
    assert e.fence_at == pytest.approx(clock.now + 2 - 0.5)


def test_keepalive_moves_the_fence_only_when_it_succeeds() -> None:
    e, etcd, clock = _elected()
    clock.now += 0.5
    e.step()
    assert e.fence_at == pytest.approx(clock.now + 1.5)
    fence = e.fence_at
    etcd.down = True
    for _ in range(5):
        clock.now += 0.25
        with pytest.raises(EtcdError):
            e.step()
        assert e.fence_at == fence  # an outage never extends the fence


def test_outage_past_the_fence_then_recovery_with_the_lease_alive() -> None:
    e, etcd, clock = _elected()
    etcd.down = True
    clock.now += 1.6  # past fence (1.5 s after the last successful send)
    with pytest.raises(EtcdError):
        e.step()
    etcd.down = False
    # The keep-alive succeeds again: the lease was never lost, leadership resumes safely.
    view = e.step()
    assert view.leader


def test_lease_gone_at_etcd_drops_leadership_at_once() -> None:
    e, etcd, clock = _elected()
    etcd.lease_alive = False
    clock.now += 0.5
    view = e.step()
    assert not view.leader and e.lease is None and e.fence_at == 0.0


def test_someone_older_leads() -> None:
    etcd, clock = ScriptedEtcd(), Clock()
    etcd.keys.append(KeyValue("talos:v1:vip:election:10.66.0.100/7", "node0", 1, 7))
    e = Election(etcd, "10.66.0.100", "node1", ttl=2, clock=clock)  # type: ignore[arg-type]
    view = e.step()
    assert not view.leader and view.holder == "node0"


def test_resign_revokes() -> None:
    e, etcd, _ = _elected()
    e.resign()
    assert etcd.calls[-1] == "revoke" and e.lease is None
