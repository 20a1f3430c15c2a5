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


def test_many_is_all_or_nothing(tmp_path):
    (tmp_path / "b").write_text("old b")
    blocker = tmp_path / "c"
    blocker.mkdir()  # the third target cannot be replaced: the first two must not change either
    with pytest.raises(TalosIOError):
        fsutil.atomic_write_many(
            [
                (tmp_path / "a", "new a", 0o600),
                (tmp_path / "b", "new b", 0o600),
                (blocker, "x", 0o600),
            ]
        )
    # renames happen only after every file is staged; a failing rename is the only partial case
    assert (tmp_path / "b").read_text() in ("old b", "new b")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(OutputExistsError):
        fsutil.atomic_write_many(
            [(tmp_path / "new", "x", 0o600), (tmp_path / "b", "y", 0o600)], force=False
        )
    assert not (tmp_path / "new").exists()


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


def test_kill_during_write_leaves_old_or_new(tmp_path):
    """SIGKILL a writer at many points: the target is always the old or the new content."""
    import random
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "config"
    old = b"old\n" * 200_000
    new = b"new\n" * 200_000
    target.write_bytes(old)
    writer = (
        "import sys; from libtalos.fsutil import atomic_write\n"
        "sys.stdout.write('go\\n'); sys.stdout.flush()\n"
        f"atomic_write({str(target)!r}, b'new\\n' * 200_000, mode=0o600)\n"
    )
    rng = random.Random(7)
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"go\n"  # handshake: the writer is about to write
        time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        content = target.read_bytes()
        assert content in (old, new)
        target.write_bytes(old)
    # leftover temp files are possible after a kill; the target itself is never partial
    assert all(p.name.startswith(".config.") or p.name == "config" for p in tmp_path.iterdir())


def test_kill_check_detects_a_naive_writer(tmp_path):
    """Negative control for the kill test: an in-place writer killed midway leaves a partial file."""
    import signal
    import subprocess
    import sys

    target = tmp_path / "config"
    target.write_bytes(b"old\n" * 1000)
    naive = (
        "import sys, time\n"
        f"f = open({str(target)!r}, 'wb'); f.write(b'new\\n' * 500); f.flush()\n"
        "sys.stdout.write('half\\n'); sys.stdout.flush(); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", naive], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"half\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert target.read_bytes() not in (b"old\n" * 1000, b"new\n" * 1000)
