"""The image built once per session, shared by the image tests.

The pytest session lives in a private network namespace with only ``lo`` (tests/conftest.py);
the build downloads Debian's packages, so it runs in the network namespace pytest was started
from (its parent's), and nothing else of the test runs there. Downloaded .debs go to the
checkout's ``_build/cache/debs``, shared with builds made by hand, so a test run from a warm
cache downloads nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from talos_image import layout
from talos_image.rootfs import RootImage, default_epoch, load

ROOT = Path(__file__).resolve().parent.parent.parent
CACHE = ROOT / layout.DEFAULT_WORK / layout.CACHE_DIR
TOOL = Path(sys.executable).parent / "talos-image"
MIRROR = "http://deb.debian.org/debian/dists/bookworm/InRelease"


def outer_netns() -> list[str]:
    """The prefix that runs a command in the network namespace pytest was started from."""
    return ["nsenter", f"--net=/proc/{os.getppid()}/ns/net", "--"]


def _mirror_unreachable() -> str | None:
    probe = f"import urllib.request; urllib.request.urlopen({MIRROR!r}, timeout=15).read(1)"
    done = subprocess.run(
        [*outer_netns(), "/usr/bin/python3", "-c", probe], capture_output=True, text=True
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"Debian's mirror is not reachable ({MIRROR}): {last}"
    return None


def build_image(base: Path, epoch: int) -> RootImage:
    """``talos-image rootfs`` into ``base/out`` and ``base/work``, with the shared cache."""
    if os.geteuid() != 0:
        pytest.skip("building the image needs root (mmdebstrap's root mode)")
    reason = _mirror_unreachable()
    if reason is not None:
        pytest.skip(reason)
    out, work = base / "out", base / "work"
    argv = [TOOL, "rootfs", "-o", out, "--work", work, "--epoch", str(epoch), "--cache", CACHE]
    done = subprocess.run(
        [*outer_netns(), *map(str, argv)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return load(out, work)


@pytest.fixture(scope="session")
def image_epoch() -> int:
    return default_epoch(ROOT)


@pytest.fixture(scope="session")
def built_root(tmp_path_factory: pytest.TempPathFactory, image_epoch: int) -> RootImage:
    """The root filesystem, its kernel and package list, built once for the session."""
    return build_image(tmp_path_factory.mktemp("image"), image_epoch)


@pytest.fixture(scope="session")
def image_builder() -> Callable[[Path, int], RootImage]:
    """:func:`build_image`, for a test that needs a build of its own."""
    return build_image
