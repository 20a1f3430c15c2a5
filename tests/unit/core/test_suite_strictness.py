"""The suite's own settings: a leaked resource or an unraisable exception fails the test that
caused it. Each case runs a small test file with the project's pytest configuration."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

LEAKS = {
    "unclosed socket": """
        import gc, socket
        def test_leak():
            socket.socket()
            gc.collect()
    """,
    "unclosed file": """
        import gc
        def test_leak(tmp_path):
            (tmp_path / "f").write_text("x")
            open(tmp_path / "f")
            gc.collect()
    """,
    "exception in __del__": """
        import gc
        class Bad:
            def __del__(self):
                raise AttributeError("'NoneType' object has no attribute '_abort'")
        def test_leak():
            Bad()
            gc.collect()
    """,
}

CLEAN = """
    import socket
    def test_clean():
        with socket.socket():
            pass
"""


def _run(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_case.py"
    test.write_text(textwrap.dedent(body))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(ROOT),
            str(test),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("case", sorted(LEAKS))
def test_a_leak_fails_its_test(tmp_path, case):
    res = _run(tmp_path, LEAKS[case])
    assert res.returncode == 1, res.stdout + res.stderr
    assert "1 failed" in res.stdout, res.stdout


def test_a_clean_test_passes(tmp_path):
    """Negative control: the same harness passes a test that closes what it opens."""
    res = _run(tmp_path, CLEAN)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout
