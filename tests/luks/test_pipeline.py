"""The installed console script in a shell-style pipeline: derive a nodeID key, format with it
from stdin, test it from stdin. Keys travel through pipes only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from luks.conftest import FAST

pytestmark = pytest.mark.pipeline

UUID = "5ab9fa8c-6fd4-4c3b-8a4e-2f0c3b6e1d7a"
EXE = str(Path(sys.executable).parent / "talos-luks")


def pipe(producer: list[str], consumer: list[str]) -> tuple[int, int]:
    """``producer | consumer``; both exit codes."""
    read_end, write_end = os.pipe()
    try:
        first = subprocess.run(producer, stdout=write_end, stderr=subprocess.DEVNULL, check=False)
    finally:
        os.close(write_end)
    try:
        second = subprocess.run(
            consumer, stdin=read_end, capture_output=True, timeout=60, check=False
        )
    finally:
        os.close(read_end)
    return first.returncode, second.returncode


def test_derive_format_test_through_pipes(image: Path) -> None:
    derive = [EXE, "derive-key", "nodeid", "--label", "STATE", "--uuid", UUID]
    assert pipe(derive, [EXE, "format", str(image), "--key-file", "-", *FAST]) == (0, 0)
    assert pipe(derive, [EXE, "test-key", str(image), "--key-file", "-"]) == (0, 0)
    other = [EXE, "derive-key", "nodeid", "--label", "EPHEMERAL", "--uuid", UUID]
    assert pipe(other, [EXE, "test-key", str(image), "--key-file", "-"]) == (0, 2)
