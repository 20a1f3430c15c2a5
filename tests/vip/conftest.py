"""Fixtures for talos-vip: throwaway namespaces (skipped, naming why, where they cannot exist)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import viplab as vlab


@pytest.fixture(scope="session")
def netns_capable() -> None:
    missing = vlab.probe()
    if missing:
        pytest.skip(f"network namespaces unavailable: {missing}")


@pytest.fixture(scope="session")
def etcd_capable() -> None:
    missing = vlab.etcd_probe()
    if missing:
        pytest.skip(missing)


@pytest.fixture
def bare_lab(netns_capable: None) -> Iterator[vlab.Lab]:
    """Nodes and an observer on a bridge, no etcd."""
    with vlab.Lab(2, with_etcd=False) as lab:
        yield lab
