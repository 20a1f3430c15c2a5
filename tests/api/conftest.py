"""Fixtures for the machine API: a cluster's PKI and configs, and real API servers on loopback.

Each server runs an :class:`~talos_init.api.ApiServer` in its own thread and event loop (the
client under test, ``talos_apply.cli.main``, runs its own ``asyncio.run`` in the test's thread),
on 127.0.0.1 with a port the kernel picks. Nodes are :class:`memory_node.MemoryNode`
(tests/memory_node.py).
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from memory_node import MemoryNode

from libtalos import config as config_model
from libtalos import pki, talosconfig
from libtalos.secrets import CertKey
from talos_init.api import ApiServer, MaintenanceCert, node_server_cert


@dataclass
class Cluster:
    bundle: Any
    configs: dict[str, str]  # kind -> YAML text


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    bundle = pki.generate_secrets()
    inp = config_model.GenerateInput(cluster_name="demo", endpoint="https://127.0.0.1:6443")
    configs = {
        kind: config_model.encode(cfg, comments=False)
        for kind, cfg in config_model.generate(inp, bundle).items()
    }
    return Cluster(bundle, configs)


@pytest.fixture(scope="session")
def other_cluster() -> Cluster:
    bundle = pki.generate_secrets()
    inp = config_model.GenerateInput(cluster_name="other", endpoint="https://127.0.0.1:6443")
    configs = {
        kind: config_model.encode(cfg, comments=False)
        for kind, cfg in config_model.generate(inp, bundle).items()
    }
    return Cluster(bundle, configs)


class ServerThread:
    """One API server in a background event loop."""

    def __init__(self, make: Callable[[], ApiServer], host: str = "127.0.0.1") -> None:
        self.host = host
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server: ApiServer = self.call(self._build(make))
        self.port: int = self.call(self.server.start(host, 0))
        self.running = True

    @staticmethod
    async def _build(make: Callable[[], ApiServer]) -> ApiServer:
        return make()  # built inside the loop: asyncio objects bind to it

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def stop(self) -> None:
        if self.running:
            self.call(self.server.stop())
            self.running = False

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def servers() -> Iterator[list[ServerThread]]:
    started: list[ServerThread] = []
    yield started
    for s in started:
        s.close()


@pytest.fixture
def maintenance(servers: list[ServerThread]) -> Callable[..., tuple[ServerThread, Any, Any]]:
    """Start a maintenance-mode server; returns (server, node, cert)."""

    def start(**node_args: Any) -> tuple[ServerThread, Any, Any]:
        cert = MaintenanceCert.create(["127.0.0.1"], "talos-maint")
        holder: dict[str, Any] = {}

        def make() -> ApiServer:
            holder["node"] = MemoryNode("talos-maint", **node_args)
            return ApiServer.maintenance(holder["node"], cert)

        s = ServerThread(make)
        servers.append(s)
        return s, holder["node"], cert

    return start


@pytest.fixture
def configured(
    servers: list[ServerThread], cluster: Cluster
) -> Callable[..., tuple[ServerThread, MemoryNode]]:
    """Start a configured (mutual TLS) server running ``kind``'s config."""

    def start(kind: str = "init", hostname: str = "node", **node_args: Any):
        text = cluster.configs[kind]
        server_cert = node_server_cert(cluster.bundle.talos_ca, ["127.0.0.1"], hostname)
        holder: dict[str, Any] = {}

        def make() -> ApiServer:
            holder["node"] = MemoryNode(hostname, config_text=text, **node_args)
            return ApiServer.configured(holder["node"], server_cert, cluster.bundle.talos_ca.crt)

        s = ServerThread(make)
        s.ca = cluster.bundle.talos_ca
        servers.append(s)
        return s, holder["node"]

    return start


def write_talosconfig(
    path: Path, ca: bytes, client: CertKey, endpoints: list[str], nodes: list[str]
) -> Path:
    cfg = talosconfig.for_cluster("demo", endpoints, ca, client.crt, client.key)
    cfg.contexts["demo"].nodes = list(nodes)
    talosconfig.save(cfg, path)
    return path


@pytest.fixture
def admin(cluster: Cluster) -> CertKey:
    return pki.admin_client_cert(cluster.bundle.talos_ca)


@pytest.fixture
def talosconfig_for(tmp_path: Path, cluster: Cluster, admin: CertKey):
    def make(endpoints: list[str], nodes: list[str] | None = None, name: str = "talosconfig"):
        return write_talosconfig(
            tmp_path / name, cluster.bundle.talos_ca.crt, admin, endpoints, nodes or []
        )

    return make


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
