"""Shared fixtures: paths of the installed console scripts and capability probes.

Run as root, the whole session lives in a private network namespace of its own (entered at
``pytest_configure``, before any thread starts, so every thread and subprocess is in it) with
only ``lo`` up: a cluster's bridge, routes and addresses, and anything else a test does to "this
network namespace", never touch the build machine's.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the .venv's bin: where the console scripts live

# A background job of a non-interactive shell (as CI may start us) inherits SIGINT ignored, and an
# ignored signal stays ignored across exec: the tools under test would never see the Ctrl-C that
# some tests deliver. A handler (unlike SIG_IGN) is reset to the default in every child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


CLONE_NEWNET = 0x40000000


def _private_network_namespace() -> None:
    """unshare(CLONE_NEWNET) for this process (Python 3.11 has no os.unshare), then ``lo`` up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise pytest.UsageError(f"cannot enter a private network namespace: {os.strerror(err)}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)


def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() == 0 and shutil.which("ip") is not None:
        _private_network_namespace()


def script(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"console script {name} is not installed in {BIN}: run bash scripts/setup")
    return str(path)


@pytest.fixture
def run_script():
    """Run an installed console script; returns CompletedProcess (text mode)."""

    def _run(
        name: str,
        *args: str,
        stdin: str | None = None,
        cwd: Path | None = None,
        check: bool = False,
    ):
        return subprocess.run(
            [script(name), *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=cwd,
            check=check,
            timeout=120,
        )

    return _run


@pytest.fixture(scope="session")
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("openssl is required (Debian package openssl; scripts/setup installs it)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _own_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``cluster create`` merges the admin kubeconfig into $KUBECONFIG or ~/.kube/config: the
    run gets a kubeconfig of its own, so no test writes into the real user's file. Session
    scope, so that it is in place before module-scoped fixtures create their clusters."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(tmp_path_factory.mktemp("kube") / "config"))
        yield
