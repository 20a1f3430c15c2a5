"""Fixtures for the integrated node: talos-init as PID 1 serving the machine API, driven by
talos-apply from inside the node's own network namespace (nothing leaves it)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from init.harness import TALOS_INIT, UNSHARE_NODE, NodeRun, probe_pid_namespace

TALOS_APPLY = str(Path(sys.executable).parent / "talos-apply")


@dataclass(frozen=True)
class Material:
    controlplane: Path
    worker: Path
    talosconfig: Path
    foreign_talosconfig: Path  # a client certificate from another cluster's CA


def make_material(directory: Path, endpoint: str = "https://127.0.0.1:6443") -> Material:
    from libtalos import pki
    from libtalos import talosconfig as tc
    from libtalos.config import GenerateInput, encode, generate

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("test", "other"):
        bundle = pki.generate_secrets()
        made = generate(GenerateInput(cluster_name=name, endpoint=endpoint), bundle)
        cp, worker = directory / f"{name}-cp.yaml", directory / f"{name}-worker.yaml"
        cp.write_text(encode(made["controlplane"]))
        worker.write_text(encode(made["join"]))
        admin = pki.admin_client_cert(bundle.talos_ca)
        cfg = tc.for_cluster(name, ["127.0.0.1"], bundle.talos_ca.crt, admin.crt, admin.key)
        cfg.contexts[name].nodes = ["127.0.0.1"]
        path = directory / f"{name}-talosconfig"
        tc.save(cfg, path)
        paths.append((cp, worker, path))
    return Material(paths[0][0], paths[0][1], paths[0][2], paths[1][2])


@pytest.fixture(scope="session")
def pid_namespace() -> None:
    reason = probe_pid_namespace()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return make_material(tmp_path_factory.mktemp("material"))


@pytest.fixture
def start_node(pid_namespace: None, tmp_path: Path) -> Iterator[Any]:
    """``start_node(*extra_args, config=None)`` -> (NodeRun, state dir); killed at teardown."""
    nodes: list[NodeRun] = []

    def start(*extra: str, config: Path | None = None) -> tuple[NodeRun, Path]:
        state = tmp_path / f"node{len(nodes)}"
        state.mkdir()
        argv = [TALOS_INIT, "--mode", "container", "--state-dir", str(state)]
        if config is not None:
            argv += ["--config", str(config)]
        node = NodeRun([*argv, *extra], wrap=UNSHARE_NODE)
        nodes.append(node)
        return node, state

    yield start
    for node in nodes:
        node.kill()


def api(node: NodeRun, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """talos-apply run in the node's network namespace (the node answers on its loopback)."""
    return subprocess.run(
        ["nsenter", f"--net=/proc/{node.pid1}/ns/net", "--", TALOS_APPLY, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
