"""Fixtures for talos-luks's tests: sparse image files, key files, an in-process runner.

Header work (format, keys, dump) runs on plain sparse files: no device-mapper, no root needed
beyond reading the files. PBKDF cost is forced low (pbkdf2, 1000 iterations) unless a test is
about the PBKDF itself.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

# tests/ itself, so that the shared VM library imports as ``vmlib`` (pytest does not put it there)
_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

FAST = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]
HEADER_BYTES = 16 << 20  # LUKS2 header + key-slot area with the default layout


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run(capfd: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``talos-luks ARGV`` in-process; returns exit code, stdout and stderr."""
    from talos_luks.cli import main

    def _run(*argv: str) -> Result:
        capfd.readouterr()
        code = main(list(argv))
        out, err = capfd.readouterr()
        return Result(code, out, err)

    return _run


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A 32 MiB sparse file, all zeros."""
    path = tmp_path / "disk.img"
    with path.open("wb") as fh:
        fh.truncate(32 << 20)
    return path


@pytest.fixture
def key(tmp_path: Path) -> Callable[[bytes], str]:
    """Write key bytes to a new 0600 file and return its path."""
    counter = iter(range(1_000_000))

    def _key(data: bytes) -> str:
        path = tmp_path / f"key{next(counter)}"
        path.touch(mode=0o600)
        path.write_bytes(data)
        return str(path)

    return _key


def header_hash(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.sha256(fh.read(HEADER_BYTES)).hexdigest()


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
