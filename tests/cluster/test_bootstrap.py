"""The machine API client bootstrap runs: its console script, or, in an environment without
one beside the interpreter, talos-apply's ``main`` run by that interpreter."""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv without console scripts that sees this one's packages: its interpreter."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    (purelib,) = root.glob("lib/python*/site-packages")
    # addsitedir, not a plain path: it also reads the editable installs' .pth files
    lines = [f"import site; site.addsitedir({d!r})\n" for d in site.getsitepackages()]
    (purelib / "outer.pth").write_text("".join(lines))
    python = root / "bin" / "python"
    assert not (root / "bin" / "talos-apply").exists()
    return python


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def test_the_console_script_beside_this_interpreter_is_used() -> None:
    from talos_cluster.bootstrap import _talos_apply

    beside = Path(sys.executable).parent / "talos-apply"
    if not beside.exists():
        pytest.skip(f"{beside} is not installed")
    assert _talos_apply() == [str(beside)]


def test_fallback_client_command_runs_talos_apply(bare_venv: Path) -> None:
    chosen = _run(
        [
            str(bare_venv),
            "-c",
            "import json; from talos_cluster.bootstrap import _talos_apply; "
            "print(json.dumps(_talos_apply()))",
        ]
    )
    assert chosen.returncode == 0, chosen.stderr
    command = json.loads(chosen.stdout)
    assert command[:2] == [str(bare_venv), "-c"]  # no script beside it: the fallback
    version = _run([*command, "--version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("talos-apply ")
    # it is talos-apply's own command line that answers: a usage error is its exit 2
    bogus = _run([*command, "--bogus"])
    assert bogus.returncode == 2
    assert "No such option: --bogus" in bogus.stderr


def test_python_dash_m_talos_apply_does_not_run(bare_venv: Path) -> None:
    """Negative control: the package has no ``__main__``, so ``-m`` is no way to run it."""
    done = _run([str(bare_venv), "-m", "talos_apply", "--version"])
    assert done.returncode != 0
    assert "talos_apply.__main__" in done.stderr
