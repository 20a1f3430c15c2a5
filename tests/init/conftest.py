"""Fixtures for the talos-init tests (the node runs as a real PID 1 under unshare)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .harness import HELPERS, TALOS_INIT, UNSHARE_NODE, NodeRun, probe_pid_namespace

TESTS = str(Path(__file__).resolve().parents[1])
if TESTS not in sys.path:  # tests/vmlib, the shared VM harness, imported by test_init_metal_vm
    sys.path.insert(0, TESTS)


@pytest.fixture(scope="session")
def pid_namespace() -> None:
    reason = probe_pid_namespace()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def run_node(pid_namespace: None, tmp_path: Path) -> Iterator[Any]:
    """``run_node(*extra_args, services=..., config=..., wrap=...)`` -> NodeRun (killed at teardown)."""
    nodes: list[NodeRun] = []

    def start(
        *extra: str,
        state_dir: Path | None = None,
        services: Path | None = None,
        config: str | None = None,
        wrap: Sequence[str] = UNSHARE_NODE,
        echo: bool = True,
    ) -> NodeRun:
        state = state_dir or tmp_path / "node"
        state.mkdir(exist_ok=True)
        argv = [TALOS_INIT, "--mode", "container", "--state-dir", str(state)]
        if services is not None:
            argv += ["--services-dir", str(services)]
        if config is not None:
            argv += ["--config", config]
        if echo:
            argv.append("--echo-services")
        node = NodeRun([*argv, *extra], wrap=wrap)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.kill()


@pytest.fixture
def services_dir(tmp_path: Path) -> Path:
    d = tmp_path / "services"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def fork_orphans(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The double-forking helper, compiled from C (Python's fork is ~7x slower here)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (gcc) to build helpers/fork_orphans.c")
    out = tmp_path_factory.mktemp("bin") / "fork_orphans"
    subprocess.run([cc, "-O2", "-o", str(out), str(HELPERS / "fork_orphans.c")], check=True)
    return str(out)
