"""Shared fixtures: paths of the installed console scripts and capability probes."""

from __future__ import annotations

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
