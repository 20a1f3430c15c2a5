"""The image builds the image tests read, and the boot media made from them.

The tests run offline, in the pytest session's private network namespace (tests/conftest.py):
they do not build the root, which downloads Debian's packages. ``just image-builds`` (run by
``just ci`` and ``just test-image`` before pytest) builds it twice from the same .deb cache:
``_out/`` and ``_build/`` (the build ``just image`` makes, which the boot tests boot), and
``_build/again/`` (the second build, compared byte for byte with the first). A missing build
skips the image tests with that command named; a build older than the checkout's code fails
them, since they would test software that is no longer the checkout's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from talos_image import iso, layout, media, pxe
from talos_image.media import Inputs
from talos_image.rootfs import RootImage, load

ROOT = Path(__file__).resolve().parent.parent.parent
OUT, WORK = ROOT / layout.DEFAULT_OUT, ROOT / layout.DEFAULT_WORK
AGAIN = WORK / "again"
BUILD = "just image-builds"


def _inputs(image: RootImage) -> Inputs:
    root = Path(image.root_dir)
    return Inputs(
        squashfs=Path(image.squashfs),
        kernel=Path(image.kernel),
        modules_dir=layout.modules_dir(root, image.kernel_version),
        manifest=root / layout.VERSION_FILE,
    )


def load_build(out: Path, work: Path) -> RootImage:
    """The build in ``out`` and ``work``: skipped when there is none, failed when stale."""
    if not (
        layout.rootfs(out).is_file() and (layout.root_dir(work) / layout.VERSION_FILE).is_file()
    ):
        pytest.skip(
            f"no image build in {out} and {work}: run `{BUILD}` first (it downloads "
            "Debian's packages; `just ci` and `just test-image` run it)"
        )
    image = load(out, work)
    if media.stale(_inputs(image)):
        built = json.loads((layout.root_dir(work) / layout.VERSION_FILE).read_text())["commit"]
        pytest.fail(
            f"the image in {out} was built from {built}, before the checkout's last "
            f"changes: run `{BUILD}` again"
        )
    return image


@pytest.fixture(scope="session")
def built_root() -> RootImage:
    """The root filesystem, its kernel and package list: ``just image``'s build."""
    return load_build(OUT, WORK)


@pytest.fixture(scope="session")
def again_root() -> RootImage:
    """The second build of ``just image-builds``, from the same packages and commit."""
    return load_build(AGAIN / "out", AGAIN / "work")


MEDIA_EPOCH = 1_700_000_000


@pytest.fixture(scope="session")
def image_inputs(built_root: RootImage) -> Inputs:
    """The session's root as the boot media's inputs (squashfs, kernel, modules, manifest)."""
    return _inputs(built_root)


@pytest.fixture(scope="session")
def boot_media(image_inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the PXE files (``pxe.KERNEL``, ``pxe.INITRAMFS``) and the ISO
    (``iso.ISO_NAME``), built once for the session."""
    reason = iso.missing()
    if reason is not None:
        pytest.skip(f"cannot build the ISO: missing {reason}")
    out = tmp_path_factory.mktemp("boot-media")
    pxe.build(out, image_inputs, epoch=MEDIA_EPOCH)
    iso.build_image(out / iso.ISO_NAME, image_inputs, epoch=MEDIA_EPOCH)
    return out
