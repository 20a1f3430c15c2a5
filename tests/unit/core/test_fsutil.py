"""Atomic writes: the old or the new file survives, never a partial one; key files are 0600."""

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


@contextlib.contextmanager
def file_attribute(path: Path, flag: str) -> Iterator[None]:
    """Set an ext2-style attribute (``i`` immutable, ``a`` append-only) on ``path``, or skip.

    The flag is probed first: it must take effect on this filesystem (root cannot rename over
    or unlink an immutable file), else the test is skipped with the reason.
    """
    if shutil.which("chattr") is None:
        pytest.skip("chattr (e2fsprogs) is not installed: cannot set file attributes")
    probe = subprocess.run(["chattr", f"+{flag}", str(path)], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"chattr +{flag} does not work on {path.parent}: {probe.stderr.strip()}")
    try:
        listed = subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True)
        if flag not in listed.stdout.split()[0]:
            pytest.skip(f"chattr +{flag} was accepted but lsattr does not show it on {path}")
        yield
    finally:
        subprocess.run(["chattr", f"-{flag}", str(path)], check=True)


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every entry of ``directory``: file bytes, or None for a directory."""
    return {
        p.name: None if p.is_dir() and not p.is_symlink() else p.read_bytes()
        for p in directory.iterdir()
    }


def olds(tmp_path: Path) -> dict[str, bytes | None]:
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(f"old {name}\n".encode())
    return snapshot(tmp_path)


def new_files(tmp_path: Path) -> list[tuple[Path, str, int]]:
    return [(tmp_path / n, f"new {n}\n", 0o600) for n in ("a", "b", "c", "fresh")]


def test_immutable_target_is_refused_before_anything_is_replaced(tmp_path):
    before = olds(tmp_path)
    with file_attribute(tmp_path / "c", "i"):
        with pytest.raises(TalosIOError) as info:
            fsutil.atomic_write_many(new_files(tmp_path))
        assert snapshot(tmp_path) == before  # a and b untouched, no "fresh", no temp files
    assert str(info.value).startswith(f"{tmp_path / 'c'}: cannot write")
    assert "immutable" in str(info.value)
    # negative control: the same call replaces all of them once the flag is gone
    fsutil.atomic_write_many(new_files(tmp_path))
    assert snapshot(tmp_path) == {n: f"new {n}\n".encode() for n in ("a", "b", "c", "fresh")}


def test_append_only_target_is_refused_too(tmp_path):
    before = olds(tmp_path)
    with file_attribute(tmp_path / "b", "a"):
        with pytest.raises(TalosIOError, match=f"^{tmp_path / 'b'}: cannot write"):
            fsutil.atomic_write_many(new_files(tmp_path))
        assert snapshot(tmp_path) == before


def test_directory_in_the_way_is_refused_before_anything_is_replaced(tmp_path):
    olds(tmp_path)
    (tmp_path / "c").unlink()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "inside").write_text("keep")
    before = snapshot(tmp_path)
    with pytest.raises(TalosIOError, match=f"^{tmp_path / 'c'}: cannot write: is a directory"):
        fsutil.atomic_write_many(new_files(tmp_path))
    assert snapshot(tmp_path) == before
    assert (tmp_path / "c" / "inside").read_text() == "keep"


def test_refuses_existing_targets_without_force(tmp_path):
    before = olds(tmp_path)
    with pytest.raises(OutputExistsError, match=f"{tmp_path / 'a'}: file exists"):
        fsutil.atomic_write_many(new_files(tmp_path), force=False)
    assert snapshot(tmp_path) == before


def test_a_rename_failing_midway_puts_back_the_ones_done(tmp_path):
    """Checks pass, then the last rename fails for real: the first two are rolled back."""
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    (first / "a").write_text("old a\n")
    (second / "c").write_text("old c\n")
    files = [
        (first / "a", "new a\n", 0o600),
        (first / "fresh", "new fresh\n", 0o600),
        (second / "c", "new c\n", 0o600),
    ]
    # an append-only directory takes new entries (temp file, link) but no rename over one
    with file_attribute(second, "a"):
        with pytest.raises(TalosIOError, match=f"^{second / 'c'}: cannot write: "):
            fsutil.atomic_write_many(files)
        assert (second / "c").read_text() == "old c\n"
    assert snapshot(first) == {"a": b"old a\n"}  # restored; the new file is gone again
    for leftover in second.iterdir():  # what the append-only directory could not drop
        leftover.unlink()


def test_a_failed_restore_names_where_the_old_contents_are(tmp_path, monkeypatch):
    olds(tmp_path)
    real = os.replace

    def failing(src, dst):
        if Path(dst).name == "c" or (Path(dst).name == "a" and ".old" in Path(src).name):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(TalosIOError) as info:
        fsutil.atomic_write_many(new_files(tmp_path)[:3])
    monkeypatch.undo()
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'c'}: cannot write: Input/output error")
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".a.") and p.name.endswith(".old")]
    assert len(kept) == 1 and kept[0].read_bytes() == b"old a\n"
    assert f"{tmp_path / 'a'}: its old contents are in {kept[0]}" in message
    assert (tmp_path / "b").read_bytes() == b"old b\n"  # restored
    assert (tmp_path / "c").read_bytes() == b"old c\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_failed_rename_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "inside").write_text("keep")
    with pytest.raises(TalosIOError, match="cannot write"):
        fsutil.atomic_write(target, "new")
    assert (target / "inside").read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["d"]


def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(proc.stdout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 0)
        pytest.skip(f"PID {pid} of a reaped child was reused already")
    return pid


def test_stale_temp_files_of_the_target_are_removed_live_ones_kept(tmp_path):
    dead = dead_pid()
    target = tmp_path / "k"
    target.write_text("old")
    stale = [
        tmp_path / f".k.{dead}.tmp",
        tmp_path / f".k.{dead}.0a1b2c3d.tmp",
        tmp_path / f".k.{dead}.0a1b2c3d.old",
    ]
    live = [tmp_path / f".k.{os.getpid()}.tmp", tmp_path / f".k.{os.getppid()}.0a1b2c3d.tmp"]
    others = [
        tmp_path / f".other.{dead}.tmp",  # another target's
        tmp_path / f".k.x.{dead}.tmp",  # target k.x's, not k's
        tmp_path / f".k.{dead}.notes",  # not a temp file
    ]
    for p in stale + live + others:
        p.write_text("key material")
        p.chmod(0o600)
    fsutil.atomic_write(target, "new", mode=0o600)
    assert target.read_text() == "new"
    assert [p for p in stale if p.exists()] == []
    assert all(p.read_text() == "key material" for p in live + others)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["k", *(p.name for p in live + others)]
    )


@pytest.mark.parametrize(
    ("name", "pid"),
    [
        (".k.123.tmp", 123),
        (".k.123.0a1b2c3d.tmp", 123),
        (".k.123.0a1b2c3d.old", 123),
        (".k.123.old", None),  # backups always carry the random part
        (".k.5.12345.tmp", None),  # target k.5's (older form), not k's
        (".k.0.tmp", None),  # kill(0) would mean the process group
        (".k.12345678.tmp", None),  # longer than any PID
        (".k.123.0A1B2C3D.tmp", None),
        (".k.123.tmp.swp", None),
        (".kk.123.tmp", None),
    ],
)
def test_temp_file_names(name, pid):
    assert fsutil._writer_pid("k", name) == pid


def test_gen_config_force_keeps_every_old_file_when_one_cannot_be_replaced(tmp_path, capsys):
    """talos-gen config --force with new secrets: the configs and talosconfig stay a matching set.

    Replacing the configs but not the talosconfig would leave a client whose CA no longer
    matches the nodes'.
    """
    from libtalos import pki
    from talos_gen.cli import main

    out = tmp_path / "out"

    def gen(bundle: str, *extra: str) -> int:
        secrets = tmp_path / "secrets.yaml"
        secrets.write_text(bundle)
        argv = ["config", "demo", "https://10.5.0.2:6443", "--with-secrets", str(secrets)]
        return main([*argv, "-o", str(out), *extra])

    assert gen(pki.generate_secrets().to_yaml()) == 0
    before = snapshot(out)
    assert sorted(before) == ["controlplane.yaml", "init.yaml", "join.yaml", "talosconfig"]
    capsys.readouterr()
    other = pki.generate_secrets().to_yaml()
    with file_attribute(out / "talosconfig", "i"):
        assert gen(other, "--force") == 1
        err = capsys.readouterr().err
        assert snapshot(out) == before
    assert f"{out / 'talosconfig'}: cannot write" in err
    assert "Traceback" not in err
    # negative control: without the flag the same command replaces all four
    assert gen(other, "--force") == 0
    after = snapshot(out)
    assert all(after[name] != before[name] for name in before)


def test_gen_config_force_refuses_a_directory_in_the_way(tmp_path, capsys):
    from libtalos import pki
    from talos_gen.cli import main

    out = tmp_path / "out"
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(pki.generate_secrets().to_yaml())
    argv = ["config", "demo", "https://10.5.0.2:6443", "--with-secrets", str(secrets)]
    assert main([*argv, "-o", str(out)]) == 0
    (out / "join.yaml").unlink()
    (out / "join.yaml").mkdir()
    before = snapshot(out)
    capsys.readouterr()
    assert main([*argv, "-o", str(out), "--force"]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'join.yaml'}: cannot write: is a directory" in err
    assert snapshot(out) == before


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


# -- targets that are not regular files ----------------------------------------------------------


def _char_device(path: Path) -> Path:
    """A node of the null device (1, 3) at ``path``, or skip naming what prevents it."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod of a character device needs CAP_MKNOD")
    path.chmod(0o666)  # mknod honours the umask
    try:
        os.close(os.open(path, os.O_WRONLY))
    except PermissionError:
        pytest.skip(f"{path.parent}'s filesystem is mounted nodev: its device nodes cannot open")
    return path


def test_a_character_device_is_written_to_not_replaced(tmp_path):
    null = _char_device(tmp_path / "null")
    before = null.stat()
    fsutil.atomic_write(null, "secret material", mode=fsutil.SECRET_MODE)
    after = null.stat()
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino
    assert stat.S_IMODE(after.st_mode) == 0o666  # a device keeps its own mode
    assert sorted(os.listdir(tmp_path)) == ["null"]  # no temp file, no backup link
    # negative control: a regular file in the same place is replaced by a new inode
    plain = tmp_path / "plain"
    plain.write_text("old")
    ino = plain.stat().st_ino
    fsutil.atomic_write(plain, "new")
    assert plain.read_text() == "new" and plain.stat().st_ino != ino


def test_write_output_to_a_device_keeps_it(tmp_path):
    null = _char_device(tmp_path / "null")
    fsutil.write_output(str(null), "data\n", mode=fsutil.SECRET_MODE)
    assert stat.S_ISCHR(null.stat().st_mode)
    with pytest.raises(OutputExistsError):  # it exists: without force it is refused as before
        fsutil.write_output(str(null), "data\n", force=False)


def test_a_fifo_gets_the_data_as_a_stream(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there before the writer
    try:
        fsutil.atomic_write(fifo, "through the pipe")
        assert stat.S_ISFIFO(fifo.stat().st_mode)
        assert os.read(fd, 100) == b"through the pipe"
    finally:
        os.close(fd)


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    real = tmp_path / "dotfiles" / "kubeconfig"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "config"
    link.symlink_to(real)
    assert fsutil.atomic_write(link, "new", mode=fsutil.SECRET_MODE) == link
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    # a dangling link: the file is created where it points
    dangling = tmp_path / "later"
    dangling.symlink_to(tmp_path / "dotfiles" / "new-file")
    fsutil.atomic_write(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "dotfiles" / "new-file").read_text() == "made"


def test_a_socket_is_refused_and_left_alone(tmp_path):
    import socket

    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(TalosIOError, match="not a regular file"):
            fsutil.atomic_write(path, "x")
        assert stat.S_ISSOCK(path.stat().st_mode)
