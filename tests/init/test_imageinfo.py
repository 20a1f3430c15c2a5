"""The image's manifest in the Version RPC: tag and sha from /etc/talos-image/version.json.

The Version handler runs against a fake stream (the RPC's two calls), with the manifest's path
pointed at a temp file; without a file the reply is talos-init's own, and a broken file never
fails the RPC.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from memory_node import MemoryNode

from libtalos.api import machine_pb2
from talos_init import imageinfo
from talos_init.api.node import VersionInfo
from talos_init.api.service import MachineService
from talos_init.imageinfo import ImageInfo, ImageInfoError

MANIFEST = {
    "commit": "0123456789abcdef0123456789abcdef01234567",
    "kernel": "6.1.0-28-amd64",
    "packages": "ab" * 32,
    "version": "0.1.0",
}


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_manifest_is_read(tmp_path: Path) -> None:
    info = imageinfo.read(_write(tmp_path / "version.json", MANIFEST))
    assert info == ImageInfo("0.1.0", MANIFEST["commit"], "6.1.0-28-amd64", "ab" * 32)
    assert info.tag == "v0.1.0"
    assert ImageInfo("v1.2.3", "x").tag == "v1.2.3"  # a version already in tag form stays


def test_no_manifest_is_none(tmp_path: Path) -> None:
    assert imageinfo.read(tmp_path / "absent.json") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON: Expecting property name enclosed in double quotes (line 1)"),
        ("[1, 2]", "expected a JSON object, got list"),
        ({"commit": "abc"}, "version: missing or empty"),
        ({"version": "0.1.0", "commit": " "}, "commit: missing or empty"),
        ({"version": 1, "commit": "abc"}, "version: expected a string, got int"),
        (b"\xff\xfe{}", "not UTF-8 text"),
        ("{" + " " * imageinfo.MAX_BYTES + "}", f"larger than {imageinfo.MAX_BYTES} bytes"),
    ],
    ids=["syntax", "list", "no-version", "blank-commit", "int-version", "binary", "huge"],
)
def test_bad_manifest_names_the_file_and_the_problem(
    tmp_path: Path, content: object, message: str
) -> None:
    path = tmp_path / "version.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _write(path, content)
    with pytest.raises(ImageInfoError) as info:
        imageinfo.read(path)
    assert info.value.message == f"{path}: {message}"


def test_unreadable_manifest_is_reported(tmp_path: Path) -> None:
    (tmp_path / "version.json").mkdir()  # EISDIR, whatever the user
    with pytest.raises(ImageInfoError, match=r"version\.json: cannot read: Is a directory"):
        imageinfo.read(tmp_path / "version.json")


def test_overlay_replaces_tag_and_sha_only(tmp_path: Path) -> None:
    own = VersionInfo(tag="v9.9.9", runtime="python3.11", arch="x86_64", platform="metal")
    seen = imageinfo.overlay(own, _write(tmp_path / "v.json", MANIFEST))
    assert (seen.tag, seen.sha) == ("v0.1.0", MANIFEST["commit"])
    assert (seen.runtime, seen.arch, seen.platform) == ("python3.11", "x86_64", "metal")


def test_overlay_falls_back_once_warned(tmp_path: Path) -> None:
    own = VersionInfo(tag="v9.9.9")
    warnings: list[str] = []
    path = _write(tmp_path / "v.json", "{")
    assert imageinfo.overlay(own, path, warn=warnings.append) == own
    assert imageinfo.overlay(own, tmp_path / "none.json", warn=warnings.append) == own
    assert warnings == [
        f"{path}: not JSON: Expecting property name enclosed in double quotes (line 1);"
        " Version reports talos-init's own version"
    ]


def test_default_warning_goes_to_the_console_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "v.json", "[]")
    for _ in range(3):
        imageinfo.overlay(VersionInfo(tag="v1"), path)
    err = capsys.readouterr().err
    why = "expected a JSON object, got list; Version reports talos-init's own version"
    assert err == f"[talos] {path}: {why}\n"


class _Stream:
    """The two calls a unary handler makes on grpclib's stream."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def recv_message(self) -> None:
        return None

    async def send_message(self, message: Any) -> None:
        self.sent.append(message)


def _rpc(maintenance: bool) -> machine_pb2.VersionInfo:
    service = MachineService(MemoryNode(), maintenance=maintenance)
    stream = _Stream()
    asyncio.run(service.Version(stream))  # type: ignore[arg-type]
    (reply,) = stream.sent
    assert isinstance(reply, machine_pb2.VersionResponse)
    (message,) = reply.messages
    version = message.version
    assert isinstance(version, machine_pb2.VersionInfo)
    return version


@pytest.mark.parametrize("maintenance", [True, False], ids=["maintenance", "configured"])
def test_version_rpc_reports_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, maintenance: bool
) -> None:
    monkeypatch.setattr(imageinfo, "VERSION_FILE", _write(tmp_path / "v.json", MANIFEST))
    version = _rpc(maintenance)
    assert (version.tag, version.sha) == ("v0.1.0", MANIFEST["commit"])


def test_version_rpc_without_a_manifest_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imageinfo, "VERSION_FILE", tmp_path / "absent.json")
    version = _rpc(False)
    assert (version.tag, version.sha) == (MemoryNode().version().tag, "")


def test_version_rpc_with_a_broken_manifest_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(imageinfo, "VERSION_FILE", _write(tmp_path / "v.json", '{"version": ""}'))
    version = _rpc(True)
    assert (version.tag, version.sha) == (MemoryNode().version().tag, "")
    assert "version: missing or empty; Version reports talos-init's own version" in (
        capsys.readouterr().err
    )
