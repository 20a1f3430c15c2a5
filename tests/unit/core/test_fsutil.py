"""Atomic writes: the old or the new file survives, never a partial one; key files are 0600."""

import os
import stat

import pytest

from libtalos import fsutil
from libtalos.errors import OutputExistsError, TalosIOError


def test_write_mode_and_content(tmp_path):
    p = fsutil.atomic_write(tmp_path / "k", "secret", mode=fsutil.SECRET_MODE)
    assert p.read_text() == "secret"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["k"]  # no temp file left


def test_umask_does_not_widen_or_narrow(tmp_path):
    old = os.umask(0o077)
    try:
        p = fsutil.atomic_write(tmp_path / "pub", "x", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "f"
    target.write_text("old")
    with pytest.raises(OutputExistsError, match="file exists"):
        fsutil.atomic_write(target, "new", force=False)
    assert target.read_text() == "old"
    fsutil.atomic_write(target, "new", force=True)
    assert target.read_text() == "new"


def test_failed_rename_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "d"
    target.mkdir()  # renaming a file over a directory fails after the temp file was written
    (target / "inside").write_text("keep")
    with pytest.raises(TalosIOError, match="cannot write"):
        fsutil.atomic_write(target, "new")
    assert (target / "inside").read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_read_input_errors_name_the_file(tmp_path):
    with pytest.raises(TalosIOError, match="nope.yaml: no such file"):
        fsutil.read_input(str(tmp_path / "nope.yaml"))
    with pytest.raises(TalosIOError, match="is a directory"):
        fsutil.read_input(str(tmp_path))
