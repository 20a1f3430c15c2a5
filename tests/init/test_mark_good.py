"""When a control plane on trial marks its slot good: etcd healthy, or no etcd to wait for.

``Node._etcd_healthy`` on a stand-in node (a supervisor with a services table and its change
event, a console that keeps lines): the real method, short waits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from talos_init import node as node_mod


@dataclass
class _Svc:
    up: bool = False


@dataclass
class _Supervisor:
    services: dict[str, _Svc] = field(default_factory=dict)

    async def changed(self, timeout: float | None = None) -> None:
        await asyncio.sleep(min(timeout or 0.01, 0.01))


@dataclass
class _Console:
    lines: list[str] = field(default_factory=list)

    def log(self, line: str) -> None:
        self.lines.append(line)


@dataclass
class _Node:
    supervisor: _Supervisor = field(default_factory=_Supervisor)
    console: _Console = field(default_factory=_Console)


def _healthy(n: _Node) -> bool:
    return asyncio.run(node_mod.Node._etcd_healthy(n))  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_mod, "MARK_ETCD_APPEAR", 0.1)
    monkeypatch.setattr(node_mod, "MARK_ETCD_WAIT", 0.5)


def test_a_healthy_etcd_marks_the_slot() -> None:
    n = _Node(_Supervisor({node_mod.ETCD_SERVICE: _Svc(up=True)}))
    assert _healthy(n) is True
    assert n.console.lines == ["bootloader: etcd is healthy"]


def test_etcd_becoming_healthy_later_is_waited_for() -> None:
    svc = _Svc(up=False)
    n = _Node(_Supervisor({node_mod.ETCD_SERVICE: svc}))

    async def run() -> bool:
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, lambda: setattr(svc, "up", True))
        return await node_mod.Node._etcd_healthy(n)  # type: ignore[arg-type]

    assert asyncio.run(run()) is True
    assert n.console.lines == ["bootloader: etcd is healthy"]


def test_no_etcd_service_is_a_control_plane_not_bootstrapped_yet() -> None:
    n = _Node()
    assert _healthy(n) is True
    assert n.console.lines == ["bootloader: this control plane runs no etcd (not bootstrapped)"]


def test_an_etcd_that_never_gets_healthy_leaves_the_slot_on_trial() -> None:
    n = _Node(_Supervisor({node_mod.ETCD_SERVICE: _Svc(up=False)}))
    assert _healthy(n) is False
    assert n.console.lines == []
