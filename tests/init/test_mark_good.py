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


@dataclass
class _Trial(_Node):
    """A stand-in node on a trial boot: its config's machine type, the reboots it asked for."""

    machine_type: str = "controlplane"
    reboots: int = 0
    boot_status: object = None
    _services_up: bool = True
    _marking: object = None
    options: object = None

    def _config(self) -> object:
        return type("Config", (), {"machine_type": self.machine_type})()

    def reboot(self) -> None:
        self.reboots += 1

    def _give_up_trial(self, slot: str, why: str) -> None:
        node_mod.Node._give_up_trial(self, slot, why)  # type: ignore[arg-type]

    async def _etcd_healthy(self) -> bool:
        return await node_mod.Node._etcd_healthy(self)  # type: ignore[arg-type]

    async def _mark_when_healthy(self) -> None:
        await node_mod.Node._mark_when_healthy(self)  # type: ignore[arg-type]


def test_a_trial_whose_etcd_never_gets_healthy_reboots_back_to_the_previous_slot() -> None:
    from talos_init.bootloader import BootStatus

    n = _Trial(_Supervisor({node_mod.ETCD_SERVICE: _Svc(up=False)}))
    n.boot_status = BootStatus("B", "A", trial=True)
    asyncio.run(n._mark_when_healthy())
    assert n.reboots == 1
    assert "slot B is not marked good; rebooting" in n.console.lines[-1]


def test_a_trial_whose_services_did_not_come_up_is_not_marked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from talos_init import bootloader

    async def status(*_: object, mark: bool = True) -> bootloader.BootStatus:
        assert mark is False  # only read: nothing is marked
        return bootloader.BootStatus("B", "A", trial=True)

    monkeypatch.setattr(bootloader, "mark_booted_good", status)
    n = _Trial(options=type("Options", (), {"cmdline": {"talos.slot": "B"}})())
    n.reaper = None  # type: ignore[attr-defined]
    n._services_up = False
    asyncio.run(node_mod.Node._mark_boot_good(n))  # type: ignore[arg-type]
    assert n.reboots == 1 and n._marking is None
    assert "not every service is up after the boot timeout: slot B" in n.console.lines[-1]
    n2 = _Trial(options=n.options)  # the control: services up, so the marking task starts
    n2.reaper = None  # type: ignore[attr-defined]

    async def run() -> None:
        await node_mod.Node._mark_boot_good(n2)  # type: ignore[arg-type]
        assert n2._marking is not None
        n2._marking.cancel()  # type: ignore[attr-defined]

    asyncio.run(run())
    assert n2.reboots == 0
