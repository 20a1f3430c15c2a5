"""The installed console script in a shell-style pipeline: derive a nodeID key, format with it
from stdin, test it from stdin. Keys travel through pipes only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from luks.conftest import FAST

pytestmark = pytest.mark.pipeline

UUID = "5ab9fa8c-6fd4-4c3b-8a4e-2f0c3b6e1d7a"
EXE = str(Path(sys.executable).parent / "talos-luks")


def pipe(producer: list[str], consumer: list[str]) -> tuple[int, int, str]:
    first = subprocess.Popen(producer, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = subprocess.run(
        consumer, stdin=first.stdout, capture_output=True, text=True, timeout=60
    )
    assert first.stdout is not None
    first.stdout.close()
    first.wait(timeout=60)
    return first.returncode, second.returncode, second.stderr


def test_derive_format_test_through_pipes(image: Path) -> None:
    derive = [EXE, "derive-key", "nodeid", "--label", "STATE", "--uuid", UUID]
    assert pipe(derive, [EXE, "format", str(image), "--key-file", "-", *FAST])[:2] == (0, 0)
    assert pipe(derive, [EXE, "test-key", str(image), "--key-file", "-"])[:2] == (0, 0)
    other = [EXE, "derive-key", "nodeid", "--label", "EPHEMERAL", "--uuid", UUID]
    assert pipe(other, [EXE, "test-key", str(image), "--key-file", "-"])[:2] == (0, 2)
