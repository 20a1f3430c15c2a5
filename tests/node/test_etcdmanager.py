"""In-process tests of the etcd manager's decisions: leave (by error code), the initial cluster
of a join, bootstrap's refusals as the API reports them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from talos_init import etcd, etcdmanager
from talos_init.addresses import Addresses
from talos_init.api.adapter import InitBackend
from talos_init.api.node import NodeCallError, Status
from talos_init.etcdmanager import EtcdManager


class _Node(SimpleNamespace):
    def __init__(self, root: Path) -> None:
        super().__init__(root=root, lines=[], config=None)
        self.console = SimpleNamespace(log=self.lines.append)
        self.supervisor = SimpleNamespace(services={})

    def hostname(self) -> str:
        return "cp-1"

    def system_dir(self) -> Path:
        return self.root / "system"

    def ephemeral_dir(self) -> Path:
        return self.root / "ephemeral"


async def _no_issue(request: dict[str, Any]) -> Any:
    raise AssertionError(f"no certificate work expected: {request.get('op')}")


def _manager(tmp_path: Path) -> tuple[EtcdManager, _Node]:
    node = _Node(tmp_path)
    return EtcdManager(node, Addresses(node.lines.append), _no_issue), node  # type: ignore[arg-type]


MEMBERS = [{"ID": "11", "name": "cp-1"}, {"ID": "22", "name": "cp-2"}]


def _etcd_replies(monkeypatch: pytest.MonkeyPatch, errors: list[etcd.EtcdError]) -> list[int]:
    """member_list answers MEMBERS; member_remove raises ``errors`` one by one, then succeeds;
    the removed IDs are returned as they come."""
    removed: list[int] = []

    async def member_list(layout: Any, host: str = "127.0.0.1") -> list[dict[str, Any]]:
        return MEMBERS

    async def member_remove(layout: Any, member_id: int, host: str = "127.0.0.1") -> None:
        if errors:
            raise errors.pop(0)
        removed.append(member_id)

    monkeypatch.setattr(etcd, "member_list", member_list)
    monkeypatch.setattr(etcd, "member_remove", member_remove)
    monkeypatch.setattr(etcdmanager, "JOIN_RETRY", 0.01)
    return removed


def test_leave_waits_while_etcd_says_unhealthy(tmp_path: Path, monkeypatch) -> None:
    unhealthy = etcd.EtcdError("etcdserver: unhealthy cluster", code=etcd.UNHEALTHY)
    removed = _etcd_replies(monkeypatch, [unhealthy, unhealthy])
    manager, node = _manager(tmp_path)
    asyncio.run(manager.leave())
    assert removed == [11]
    assert node.lines == ["reset: left etcd (member cp-1)"]


def test_leave_decides_by_code_not_by_message(tmp_path: Path, monkeypatch) -> None:
    """Negative control: the same words without the code are an error at once."""
    other = etcd.EtcdError("etcd at 127.0.0.1: HTTP 500: etcdserver: unhealthy cluster")
    removed = _etcd_replies(monkeypatch, [other])
    manager, _ = _manager(tmp_path)
    with pytest.raises(etcd.EtcdError) as err:
        asyncio.run(manager.leave())
    assert err.value is other
    assert removed == []


def test_leave_gives_up_after_its_bound(tmp_path: Path, monkeypatch) -> None:
    unhealthy = [etcd.EtcdError("unhealthy", code=etcd.UNHEALTHY) for _ in range(1000)]
    removed = _etcd_replies(monkeypatch, unhealthy)
    monkeypatch.setattr(etcdmanager, "LEAVE_WAIT", 0.05)
    manager, _ = _manager(tmp_path)
    with pytest.raises(etcd.EtcdError):
        asyncio.run(manager.leave())
    assert removed == []


def test_a_single_member_is_left_alone(tmp_path: Path, monkeypatch) -> None:
    removed = _etcd_replies(monkeypatch, [])
    monkeypatch.setattr(etcdmanager, "JOIN_RETRY", 0.01)

    async def alone(layout: Any, host: str = "127.0.0.1") -> list[dict[str, Any]]:
        return MEMBERS[:1]

    monkeypatch.setattr(etcd, "member_list", alone)
    manager, node = _manager(tmp_path)
    asyncio.run(manager.leave())
    assert removed == [] and node.lines == []


def test_initial_cluster_names_unstarted_members() -> None:
    own = "https://10.0.0.3:2380"
    members = [
        {"ID": "1", "name": "cp-1", "peerURLs": ["https://10.0.0.1:2380"]},
        {"ID": "2", "name": "", "peerURLs": ["https://10.0.0.2:2380"]},  # added, not started
        {"ID": "3", "name": "", "peerURLs": [own]},  # this node, added
    ]
    assert etcdmanager._initial_cluster(members, "cp-3", own) == {
        "cp-1": ["https://10.0.0.1:2380"],
        "unstarted-2": ["https://10.0.0.2:2380"],
        "cp-3": [own],
    }


def test_bootstrap_refusals_become_api_statuses(tmp_path: Path) -> None:
    manager, node = _manager(tmp_path)
    backend = InitBackend(node, manager, _no_issue, lambda: False)  # type: ignore[arg-type]
    (manager.layout().data_dir / "member").mkdir(parents=True)
    with pytest.raises(NodeCallError) as err:
        asyncio.run(backend.bootstrap())
    assert (err.value.status, err.value.message) == (
        Status.ALREADY_EXISTS,
        "etcd data directory is not empty",
    )
    (manager.layout().data_dir / "member").rmdir()
    with pytest.raises(NodeCallError) as err:  # no config: etcd cannot be prepared
        asyncio.run(backend.bootstrap())
    assert (err.value.status, err.value.message) == (
        Status.FAILED_PRECONDITION,
        "the node has no config",
    )
