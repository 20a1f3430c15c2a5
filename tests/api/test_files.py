"""The file methods (List, Read, Copy, DiskUsage, Mounts) and Hostname end to end: talos-apply
over mutual TLS against a server whose node serves a directory as its root, replies decoded
by the independent betterproto client, paths that leave the root refused, and a Read whose
caller goes away stopped on the server."""

from __future__ import annotations

import asyncio
import gzip
import importlib
import io
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from libtalos.api import tls
from libtalos.api.channel import ClosingChannel
from talos_apply.cli import main
from talos_init.api.files import FileAccess

HERE = Path(__file__).resolve().parent / "independent"
CONFIG = "/system/state/config.yaml"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A node root: some files, a config, symlinks inside and out, and a secret outside."""
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "var/log/sub").mkdir(parents=True)
    (r / "system/state").mkdir(parents=True)
    (r / "etc/hostname").write_text("node-a\n")
    (r / "var/log/a.log").write_bytes(b"a" * 3000)
    (r / "var/log/sub/b.log").write_bytes(b"b" * 500)
    (r / "var/empty").write_bytes(b"")
    (tmp_path / "outside-secret").write_text("host secret\n")
    (r / "etc/abs").symlink_to("/etc/hostname")  # absolute: from the node's root
    (r / "var/up").symlink_to("../../outside-secret")  # relative, past the root
    (r / "var/log/deep").symlink_to("../../..")
    (r / "proc").symlink_to("/proc")  # Mounts reads the mount table of the node's /proc
    return r


@pytest.fixture
def env(configured, talosconfig_for, root: Path):
    s, node = configured("init", hostname="n1")
    log: list[str] = []
    (root / "system/state/config.yaml").write_text(node.config_text())
    node.file_access = lambda: FileAccess(str(root), log.append)
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    return s, node, ["--talosconfig", str(tc)], log


def test_ls_long_columns_and_links(env, capsys):
    s, _node, tc, _log = env
    assert main([*tc, "ls", "-l", "/etc"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NODE", "MODE", "SIZE(B)", "LASTMOD", "NAME"]
    rows = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in out[1:]}
    assert rows["."].split()[1] == "drwxr-xr-x"
    assert rows["hostname"].split()[1] == "-rw-r--r--" and rows["hostname"].split()[2] == "7"
    assert rows["abs"].split()[1] == "Lrwxrwxrwx" and rows["abs"].endswith("abs -> /etc/hostname")
    assert all(line.startswith(s.endpoint) for line in out[1:])


def test_ls_recurse_depth_and_types(env, capsys):
    _s, _node, tc, _log = env
    assert main([*tc, "ls", "/var"]) == 0
    names = [line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == [".", "empty", "log", "up"]  # not recursive: the top and its entries
    assert main([*tc, "ls", "-r", "/var"]) == 0
    names = [line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert "log/sub/b.log" in names and "log/deep" in names
    assert main([*tc, "ls", "-r", "-d", "2", "/var"]) == 0
    names = [line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert "log/a.log" in names and "log/sub/b.log" not in names
    assert main([*tc, "ls", "-r", "-t", "f", "/var"]) == 0
    names = [line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["empty", "log/a.log", "log/sub/b.log"]
    assert main([*tc, "ls", "-t", "x", "/var"]) == 2
    assert "invalid file type 'x'" in capsys.readouterr().err


def test_ls_and_usage_refuse_paths_out_of_the_root(env, capsys):
    _s, _node, tc, _log = env
    assert main([*tc, "ls", "/var/up"]) == 1
    assert "outside the node's root" in capsys.readouterr().err
    assert main([*tc, "ls", "/var/../.."]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    assert main([*tc, "usage", "/var/log/deep/x"]) == 0  # per path, as talosctl: on stderr
    captured = capsys.readouterr()
    assert "outside the node's root" in captured.err and "host secret" not in captured.out


def test_ls_humanize(env, capsys):
    _s, _node, tc, _log = env
    assert main([*tc, "ls", "-l", "-H", "/var/log"]) == 0
    out = capsys.readouterr().out
    assert "3.0 kB" in out and ("ago" in out or "now" in out)


def test_read_streams_and_logs_config_reads(env, capsys, admin):
    from cryptography import x509

    _s, _node, tc, log = env
    assert main([*tc, "read", "/etc/hostname"]) == 0
    assert capsys.readouterr().out == "node-a\n"
    assert log == []  # negative control: other files are not logged
    assert main([*tc, "read", CONFIG]) == 0
    assert "machine:" in capsys.readouterr().out
    serial = x509.load_pem_x509_certificate(admin.crt).serial_number
    (line,) = log
    assert line.startswith(f"read of {CONFIG} by the client with certificate serial ")
    assert int(line.rsplit(" ", 1)[1], 16) == serial  # the admin certificate talos-apply sent
    assert main([*tc, "read", "/etc/abs"]) == 0  # an absolute link resolves in the node's root
    assert capsys.readouterr().out == "node-a\n"


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/var/up", "INVALID_ARGUMENT", "outside the node's root"),
        ("/var/log/deep/outside-secret", "INVALID_ARGUMENT", "outside the node's root"),
        ("/../outside-secret", "INVALID_ARGUMENT", "'..' is not allowed"),
        ("/etc/" + "x" * 10_000, "INVALID_ARGUMENT", "the limit is 4096"),
        ("/etc/a\0b", "INVALID_ARGUMENT", "NUL"),
        ("/nope", "NOT_FOUND", "No such file"),
        ("/var/log", "FAILED_PRECONDITION", "not a regular file"),
    ],
)
def test_read_refusals(env, capsys, path, status, words):
    _s, _node, tc, _log = env
    assert main([*tc, "read", path]) == 1
    captured = capsys.readouterr()
    assert status in captured.err and words in captured.err, captured.err
    assert "host secret" not in captured.out + captured.err


def test_copy_to_stdout_and_into_directory(env, capsysbinary, tmp_path):
    _s, _node, tc, _log = env
    assert main([*tc, "cp", "/var/log", "-"]) == 0
    data = capsysbinary.readouterr().out
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        members = {m.name: m for m in tar}
        assert members["a.log"].size == 3000
        assert tar.extractfile(members["sub/b.log"]).read() == b"b" * 500  # type: ignore[union-attr]
        assert members["deep"].issym() and members["deep"].linkname == "../../.."
    dest = tmp_path / "out"
    assert main([*tc, "copy", "/var/log", str(dest)]) == 0
    assert (dest / "sub/b.log").read_bytes() == b"b" * 500
    assert os.readlink(dest / "deep") == "../../.."
    assert main([*tc, "cp", "/var/up", "-"]) == 1  # a link that leaves the root
    assert b"outside the node's root" in capsysbinary.readouterr().err


def test_usage_sizes(env, capsys):
    _s, _node, tc, _log = env
    assert main([*tc, "usage", "/var/log"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["NODE", "SIZE", "NAME"]
    sizes = {r[2]: int(r[1]) for r in rows[1:]}
    assert set(sizes) == {"sub", "."}  # directories only, the top last
    assert rows[-1][2] == "."
    assert sizes["."] >= 3000 + 500 + sizes["sub"] - 500 and sizes["sub"] >= 500
    assert main([*tc, "du", "-a", "-t", "1000", "/var/log"]) == 0
    names = [line.split()[2] for line in capsys.readouterr().out.splitlines()[1:]]
    assert "a.log" in names and "sub/b.log" not in names


def test_mounts(env, capsys):
    _s, _node, tc, _log = env
    assert main([*tc, "mounts"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["NODE", "FILESYSTEM", "SIZE(GB)"] and "MOUNTED ON" in out[0]


def test_without_file_access_refused(configured, talosconfig_for, capsys):
    s, _node = configured("init", hostname="n2")
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    assert main(["--talosconfig", str(tc), "ls", "/"]) == 1
    assert "FAILED_PRECONDITION" in capsys.readouterr().err


# ------------------------------------------------------------------ the independent client


@pytest.fixture(scope="module")
def bp():
    pytest.importorskip("betterproto", reason="betterproto==2.0.0b7 (requirements-dev.txt)")
    sys.path.insert(0, str(HERE))
    try:
        machine = importlib.import_module("_gen.machine")
        pbuf = importlib.import_module("betterproto.lib.google.protobuf")
    finally:
        sys.path.remove(str(HERE))
    return machine, pbuf


def _session(s: Any, cluster: Any, admin: Any, fn: Any) -> Any:
    ctx = tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)

    async def go() -> Any:
        ch = ClosingChannel("127.0.0.1", s.port, ssl=ctx, pins=[])
        try:
            return await fn(ch)
        finally:
            ch.close()

    return asyncio.run(go())


def test_replies_decode_with_independent_client(env, cluster, admin, bp):
    s, _node, _tc, _log = env
    m, pbuf = bp
    md = {"nodes": s.endpoint}

    async def session(ch: Any) -> dict[str, Any]:
        stub = m.MachineServiceStub(ch)
        return {
            "list": [f async for f in stub.list(m.ListRequest(root="/etc"), metadata=md)],
            "du": [
                f async for f in stub.disk_usage(m.DiskUsageRequest(paths=["/var"]), metadata=md)
            ],
            "read": [f async for f in stub.read(m.ReadRequest(path="/etc/hostname"), metadata=md)],
            "copy": [f async for f in stub.copy(m.CopyRequest(root_path="/etc"), metadata=md)],
            "mounts": await stub.mounts(pbuf.Empty(), metadata=md),
            "hostname": await stub.hostname(pbuf.Empty(), metadata=md),
        }

    out = _session(s, cluster, admin, session)
    by_rel = {f.relative_name: f for f in out["list"]}
    assert by_rel["."].is_dir and by_rel["."].name == "/etc"
    assert by_rel["abs"].link == "/etc/hostname" and by_rel["abs"].mode == (1 << 27) | 0o777
    assert by_rel["hostname"].size == 7 and by_rel["hostname"].modified > 1_600_000_000
    assert all(f.metadata.hostname == s.endpoint for f in out["list"])
    assert out["du"][-1].relative_name == "." and out["du"][-1].size >= 3500
    assert b"".join(f.bytes for f in out["read"]) == b"node-a\n"
    archive = io.BytesIO(gzip.decompress(b"".join(f.bytes for f in out["copy"])))
    with tarfile.open(fileobj=archive) as tar:
        assert "hostname" in tar.getnames()
    (mounts,) = out["mounts"].messages
    assert any(st.mounted_on == "/" for st in mounts.stats)
    assert out["hostname"].messages[0].hostname == "n1"


def test_read_stops_when_the_caller_goes_away(env, cluster, admin, bp, root):
    """The caller cancels after the first frame: the server closes the file (its handler
    ended); while the stream is open the file is held (the negative control)."""
    s, _node, _tc, _log = env
    m, _pbuf = bp
    big = root / "var/big"
    big.write_bytes(os.urandom(1 << 20) * 16)  # 16 MiB: far more than one batch of frames

    def held() -> bool:
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == str(big):
                    return True
            except OSError:
                continue
        return False

    async def session(ch: Any) -> tuple[bool, bool]:
        stub = m.MachineServiceStub(ch)
        frames = stub.read(m.ReadRequest(path="/var/big"), metadata={"nodes": s.endpoint})
        first = await frames.__anext__()
        assert len(first.bytes) == 64 * 1024
        open_during = held()
        await frames.aclose()  # the caller goes away
        for _ in range(200):  # bounded wait for the server to notice; no time is asserted
            if not held():
                return open_during, True
            await asyncio.sleep(0.05)
        return open_during, False

    open_during, released = _session(s, cluster, admin, session)
    assert open_during, "the file was not open while the stream was"
    assert released, "the server kept reading after its caller went away"


def test_etcd_membership_replies_decode_with_independent_client(env, cluster, admin, bp):
    """The three etcd replies through the independent client; the node's refusals keep their
    status (the backend's calls are stand-ins here: tests/node runs them against etcd)."""
    from talos_init.api.node import NodeCallError, Status

    s, node, _tc, _log = env
    m, _pbuf = bp
    removed: list[str] = []

    async def leave() -> None:
        raise NodeCallError(Status.FAILED_PRECONDITION, "the only etcd member")

    async def remove(name: str) -> None:
        removed.append(name)

    async def forfeit() -> str:
        return "n2"

    node.etcd_leave, node.etcd_remove_member, node.etcd_forfeit_leadership = leave, remove, forfeit
    md = {"nodes": s.endpoint}

    async def session(ch: Any) -> dict[str, Any]:
        stub = m.MachineServiceStub(ch)
        return {
            "leave": await stub.etcd_leave_cluster(m.EtcdLeaveClusterRequest(), metadata=md),
            "remove": await stub.etcd_remove_member(
                m.EtcdRemoveMemberRequest(member="n3"), metadata=md
            ),
            "bad": await stub.etcd_remove_member(
                m.EtcdRemoveMemberRequest(member="x" * 300), metadata=md
            ),
            "forfeit": await stub.etcd_forfeit_leadership(
                m.EtcdForfeitLeadershipRequest(), metadata=md
            ),
        }

    out = _session(s, cluster, admin, session)
    (leave_msg,) = out["leave"].messages
    assert leave_msg.metadata.status.code == 9 and "only etcd member" in leave_msg.metadata.error
    (remove_msg,) = out["remove"].messages
    assert remove_msg.metadata.hostname == s.endpoint and remove_msg.metadata.error == ""
    (bad_msg,) = out["bad"].messages
    assert bad_msg.metadata.status.code == 3 and "the limit is 253" in bad_msg.metadata.error
    assert removed == ["n3"]  # the bad name never reached the node
    assert out["forfeit"].messages[0].member == "n2"
