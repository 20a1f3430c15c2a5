"""Fixtures for the config tests: the fixed secrets bundle and golden files.

Set ``TALOS_REGEN_GOLDENS=1`` to rewrite the golden files from the current code (then review
the diff and commit it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from libtalos.secrets import SecretsBundle, load_bundle

DATA = Path(__file__).resolve().parents[2] / "data" / "config"
GOLDEN = DATA / "golden"


@pytest.fixture(scope="session")
def bundle() -> SecretsBundle:
    return load_bundle((DATA / "secrets.yaml").read_text(), "secrets.yaml")


@pytest.fixture
def golden() -> Callable[[str, str], None]:
    """Compare ``text`` with ``tests/data/config/golden/<name>`` (or rewrite it)."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if os.environ.get("TALOS_REGEN_GOLDENS") == "1":
            path.write_text(text)
        assert path.exists(), f"missing golden {path}; run with TALOS_REGEN_GOLDENS=1"
        assert text == path.read_text(), f"{name} differs from its golden file"

    return check
